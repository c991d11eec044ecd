//! The seccomp profiles real engines send, compiled and evaluated.

mod common;

use berth_seccomp::Filter;
use common::*;

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

fn sys(nr: libc::c_long) -> u32 {
    nr as u32
}

/// The seccomp profile an engine sent, compiled and validated.
fn engine_filter(engine: &str) -> Filter {
    let profile =
        engine_profile(engine).unwrap_or_else(|| panic!("{engine} config has linux.seccomp"));
    let filter = Filter::compile(&profile).unwrap();
    validate(filter.program()).unwrap();
    filter
}

fn docker() -> Filter {
    engine_filter("docker")
}

/// Asserts that `program` decides `want` for each x86_64 syscall of `nrs`, made without
/// arguments.
fn assert_each(program: &[libc::sock_filter], nrs: &[libc::c_long], want: u32) {
    for &nr in nrs {
        assert_eq!(
            run(program, &Data::x86_64(sys(nr), &[])),
            want,
            "syscall {nr}"
        );
    }
}

#[test]
fn docker_basic_decisions() {
    let f = docker();
    let p = f.program();
    let x = |nr: libc::c_long, args: &[u64]| run(p, &Data::x86_64(sys(nr), args));

    let allowed = [
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_openat,
        libc::SYS_exit_group,
        libc::SYS_getpid,
        libc::SYS_socket,
        libc::SYS_faccessat2,
        libc::SYS_ptrace,
        libc::SYS_arch_prctl,
        libc::SYS_chroot,
    ];
    assert_each(p, &allowed, ALLOW);
    // Not in the profile: the default action, SCMP_ACT_ERRNO without errnoRet = EPERM.
    let denied = [
        libc::SYS_unshare,
        libc::SYS_mount,
        libc::SYS_keyctl,
        libc::SYS_setns,
        libc::SYS_bpf,
        libc::SYS_umount2,
        libc::SYS_reboot,
        libc::SYS_open_by_handle_at,
    ];
    assert_each(p, &denied, errno(EPERM));
    // Explicit errnoRet.
    assert_eq!(x(libc::SYS_clone3, &[]), errno(ENOSYS));
    // Newer than anything the profile names (its highest is futex_waitv, 449): ENOSYS.
    assert_eq!(x(452, &[]), errno(ENOSYS)); // fchmodat2
    assert_eq!(x(450, &[]), errno(ENOSYS));
    assert_eq!(x(1000, &[]), errno(ENOSYS));
    assert_eq!(x(449, &[]), ALLOW);
}

#[test]
fn docker_argument_rules() {
    let f = docker();
    let p = f.program();
    let x = |nr: libc::c_long, args: &[u64]| run(p, &Data::x86_64(sys(nr), args));

    // personality: only 0, 8, 0x20000, 0x20008, 0xffffffff.
    for ok in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
        assert_eq!(x(libc::SYS_personality, &[ok]), ALLOW, "{ok:#x}");
    }
    for bad in [
        1u64,
        9,
        0x20001,
        0x1_ffff_ffff,
        0x1_0000_0000,
        u64::MAX,
        0xffff_fffe,
    ] {
        assert_eq!(x(libc::SYS_personality, &[bad]), errno(EPERM), "{bad:#x}");
    }
    // clone: allowed unless a namespace flag (mask 0x7e020000) is set.
    let pthread_flags = 0x003d_0f00;
    assert_eq!(x(libc::SYS_clone, &[pthread_flags]), ALLOW);
    assert_eq!(
        x(libc::SYS_clone, &[u64::from(libc::SIGCHLD as u32)]),
        ALLOW
    );
    for ns in [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWCGROUP,
    ] {
        let flags = pthread_flags | ns as u64;
        assert_eq!(x(libc::SYS_clone, &[flags]), errno(EPERM), "{flags:#x}");
    }
    // High-word bits are outside the mask: still allowed (libseccomp compares 64 bits).
    assert_eq!(
        x(libc::SYS_clone, &[0xffff_ffff_0000_0000 | pthread_flags]),
        ALLOW
    );
}

#[test]
fn docker_architectures() {
    let f = docker();
    let p = f.program();
    // Unlisted architectures are killed.
    assert_eq!(
        run(p, &Data::new(AUDIT_ARCH_AARCH64, 63, &[])),
        KILL_PROCESS
    );
    assert_eq!(run(p, &Data::new(0, 0, &[])), KILL_PROCESS);
    // i386 and x32 are listed and have their own numbers.
    assert_eq!(run(p, &Data::new(AUDIT_ARCH_I386, 20, &[])), ALLOW); // getpid
    assert_eq!(run(p, &Data::new(AUDIT_ARCH_I386, 140, &[])), ALLOW); // _llseek
    assert_eq!(run(p, &Data::new(AUDIT_ARCH_I386, 102, &[])), ALLOW); // socketcall
    assert_eq!(run(p, &Data::new(AUDIT_ARCH_I386, 21, &[])), errno(EPERM)); // mount
    assert_eq!(run(p, &Data::new(AUDIT_ARCH_I386, 310, &[])), errno(EPERM)); // unshare
                                                                             // i386 personality compares the low word only.
    assert_eq!(
        run(p, &Data::new(AUDIT_ARCH_I386, 136, &[0xffff_ffff])),
        ALLOW
    );
    assert_eq!(run(p, &Data::new(AUDIT_ARCH_I386, 136, &[7])), errno(EPERM));
    assert_eq!(run(p, &Data::x86_64(X32 + 39, &[])), ALLOW); // x32 getpid
    assert_eq!(run(p, &Data::x86_64(X32 + 514, &[])), ALLOW); // x32 ioctl
    assert_eq!(run(p, &Data::x86_64(X32 + 16, &[])), errno(EPERM)); // x86_64-only ioctl number
    assert_eq!(run(p, &Data::x86_64(X32 + 272, &[])), errno(EPERM)); // x32 unshare
    assert_eq!(run(p, &Data::x86_64(X32 + 0x1000, &[])), errno(ENOSYS));
}

#[test]
fn docker_profile_without_x32_kills_x32() {
    let mut profile = engine_profile("docker").unwrap();
    profile.set_architectures(Some(vec![oci_spec::runtime::Arch::ScmpArchX86_64]));
    let f = Filter::compile(&profile).unwrap();
    let p = f.program();
    assert_eq!(run(p, &Data::x86_64(X32 + 39, &[])), KILL_PROCESS);
    assert_eq!(run(p, &Data::x86_64(u32::MAX, &[])), KILL_PROCESS);
    assert_eq!(run(p, &Data::new(AUDIT_ARCH_I386, 20, &[])), KILL_PROCESS);
    assert_eq!(run(p, &Data::x86_64(39, &[])), ALLOW);
}

#[test]
fn docker_without_enosys_option_uses_default() {
    let profile = engine_profile("docker").unwrap();
    let mut opts = berth_seccomp::CompileOptions::default();
    opts.enosys_for_unknown_syscalls = false;
    let f = Filter::compile_with(&profile, &opts).unwrap();
    assert_eq!(run(f.program(), &Data::x86_64(452, &[])), errno(EPERM));
    assert_eq!(
        run(f.program(), &Data::x86_64(libc::SYS_clone3 as u32, &[])),
        errno(ENOSYS)
    );
}

#[test]
fn docker_program_shape() {
    let f = docker();
    assert_eq!(f.flags(), 0);
    assert!(!f.needs_notify());
    let p = f.program();
    println!("docker profile: {} BPF instructions", p.len());
    assert!(p.len() < 700, "{} instructions", p.len());
    // Binary search: every x86_64 decision takes few instructions.
    let cost = |nr: u32| steps(p, &Data::x86_64(nr, &[0x003d_0f00]));
    let (personality, clone) = (sys(libc::SYS_personality), sys(libc::SYS_clone));
    let worst = (0..500u32)
        .filter(|&nr| nr != personality && nr != clone)
        .map(cost)
        .max()
        .unwrap();
    println!(
        "docker profile: at most {worst} instructions per x86_64 syscall without argument rules"
    );
    assert!(worst <= 16, "{worst}");
    // personality's five rules are tried in order.
    assert!(cost(personality) <= 40, "{}", cost(personality));
}

#[test]
fn docker_compile_time() {
    let profile = engine_profile("docker").unwrap();
    Filter::compile(&profile).unwrap();
    let runs = 200u32;
    let start = std::time::Instant::now();
    for _ in 0..runs {
        std::hint::black_box(Filter::compile(std::hint::black_box(&profile)).unwrap());
    }
    let each = start.elapsed() / runs;
    println!("docker profile: compile takes {each:?}");
    // Generous bound for unoptimized test builds; release builds take far less.
    assert!(each < std::time::Duration::from_millis(5), "{each:?}");
}

#[test]
fn podman_decisions() {
    let f = engine_filter("podman");
    let p = f.program();
    let x = |nr: libc::c_long, args: &[u64]| run(p, &Data::x86_64(sys(nr), args));

    let allowed = [
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_mount,
        libc::SYS_unshare,
        libc::SYS_keyctl,
        libc::SYS_clone3,
        libc::SYS_socket,
        // In the allow list before an ERRNO rule: the first unconditional rule wins.
        libc::SYS_setns,
    ];
    assert_each(p, &allowed, ALLOW);
    let denied = [
        libc::SYS_bpf,
        libc::SYS_open_by_handle_at,
        libc::SYS_kexec_load,
        libc::SYS_init_module,
        libc::SYS_acct,
        libc::SYS_iopl,
        libc::SYS_settimeofday,
        libc::SYS_vhangup,
        libc::SYS_perf_event_open,
    ];
    assert_each(p, &denied, errno(EPERM));
    // defaultErrnoRet is ENOSYS.
    assert_eq!(x(libc::SYS_io_uring_setup, &[]), errno(ENOSYS));
    assert_eq!(x(452, &[]), errno(ENOSYS));
    assert_eq!(x(libc::SYS_personality, &[8]), ALLOW);
    assert_eq!(x(libc::SYS_personality, &[9]), errno(ENOSYS));
    assert_eq!(run(p, &Data::new(AUDIT_ARCH_AARCH64, 0, &[])), KILL_PROCESS);
    assert_eq!(run(p, &Data::new(AUDIT_ARCH_I386, 20, &[])), ALLOW);
}

#[test]
fn containerd_config_has_no_seccomp() {
    // containerd (driven by ctr) sent no linux.seccomp section: nothing to compile.
    assert!(engine_profile("containerd").is_none());
}

#[test]
fn engine_profiles_match_reference_for_known_syscalls() {
    for engine in ["docker", "podman"] {
        // The reference only knows a few syscall numbers, so it cannot place the
        // ENOSYS cut-off: compare without it.
        let profile = engine_profile(engine).unwrap();
        let mut opts = berth_seccomp::CompileOptions::default();
        opts.enosys_for_unknown_syscalls = false;
        let f = Filter::compile_with(&profile, &opts).unwrap();
        for &(_, x64, x86, x32) in REF_SYSCALLS {
            for (arch, nr) in [
                (AUDIT_ARCH_X86_64, x64),
                (AUDIT_ARCH_I386, x86),
                (AUDIT_ARCH_X86_64, x32),
            ] {
                let Some(nr) = nr else { continue };
                for arg in [0u64, 8, 0x2000_0000, 0xffff_ffff, 0x1_0000_0000] {
                    let d = Data::new(arch, nr, &[arg]);
                    assert_eq!(
                        run(f.program(), &d),
                        reference(&profile, &d, false),
                        "{engine} {d:?}"
                    );
                }
            }
        }
    }
}
