//! Host protection against hostile images: berth's own binary never becomes reachable from a
//! container (CVE-2019-5736), and `exec` into a running container sees the same confinement.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{berth_test, poll_until, OutputExt};

/// An image whose entrypoint is `#!/proc/self/exe` gets the sealed exec trampoline as its
/// interpreter, never the host's berth binary, and the container cannot write to it.
#[test]
fn proc_self_exe_interpreter_never_reaches_the_host_binary() {
    berth_test(|b| {
        let evil = b.rootfs.join("evil");
        fs::write(&evil, "#!/proc/self/exe\n").unwrap();
        fs::set_permissions(&evil, fs::Permissions::from_mode(0o755)).unwrap();
        let id = b.id("evil");
        let pid = b.create_and_start(&id, &b.config(&["/evil"]));
        let berth_exe = fs::canonicalize(env!("CARGO_BIN_EXE_berth")).unwrap();
        let mut seen = Vec::new();
        poll_until(Duration::from_millis(300), || {
            if let Ok(target) = fs::read_link(format!("/proc/{pid}/exe")) {
                seen.push(target);
            }
            false
        });
        assert!(!seen.is_empty(), "the container process vanished");
        for target in &seen {
            assert_ne!(
                target, &berth_exe,
                "container process runs the host's berth binary"
            );
            assert!(
                target.to_string_lossy().contains("memfd:berth-exec"),
                "unexpected exe {target:?}"
            );
        }
        // The trampoline is sealed: opening it for writing through /proc fails.
        let write = fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{pid}/exe"));
        if let Ok(mut f) = write {
            use std::io::Write;
            assert!(
                f.write_all(b"owned").is_err(),
                "the trampoline accepted a write"
            );
        }
        b.delete_force(&id);
    });
}

/// Before it execs, the init is not dumpable, so container processes cannot open its exe or
/// ptrace it. In a user namespace the init runs as a mapped uid; the kernel shows a dumpable
/// task's /proc files as owned by that uid and a non-dumpable one's as owned by root.
#[test]
fn waiting_init_is_not_dumpable() {
    use std::os::unix::fs::MetadataExt;
    berth_test(|b| {
        let id = b.id("waiting");
        let mut c = b.config(&["true"]);
        common::user_namespace(&mut c, 300_000);
        let pid = b.create(&id, &c);
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uid_line.contains("300000"),
            "the init should run as the mapped uid: {uid_line}"
        );
        let owner = fs::metadata(format!("/proc/{pid}/environ")).unwrap().uid();
        assert_eq!(
            owner, 0,
            "a dumpable init's /proc files would belong to uid 300000"
        );
        b.delete_force(&id);
    });
}

/// `exec` runs inside the container's namespaces with the container's confinement.
#[test]
fn exec_joins_the_container() {
    berth_test(|b| {
        let id = b.id("execd");
        let mut c = b.config(&["sleep", "30"]);
        c["hostname"] = serde_json::json!("inside");
        let pid = b.create_and_start(&id, &c);
        let out = b.cmd(&[
            "exec",
            &id,
            "sh",
            "-c",
            "hostname; cat /proc/self/status | grep NoNewPrivs; exit 3",
        ]);
        assert_eq!(out.code(), 3, "{}", out.err());
        assert!(out.out().contains("inside"), "{}", out.out());
        let host_ns = fs::read_link("/proc/self/ns/pid").unwrap();
        assert_ne!(
            fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap(),
            host_ns
        );
        let err = b.cmd(&["exec", &id, "no-such-program"]);
        assert_eq!(err.code(), 127, "{}", err.err());
        assert!(
            err.err().contains("executable file not found"),
            "{}",
            err.err()
        );
        let pids = b.ps(&id);
        assert!(pids.contains(&pid), "{pids:?}");
        b.delete_force(&id);
    });
}

/// CVE-2019-5736 with CAP_SYS_PTRACE: a privileged container (no user namespace) opens
/// `/proc/<pid>/exe` of a later container's init that joins its pid namespace (non-dumpable
/// does not stop CAP_SYS_PTRACE), keeps the descriptor, and writes through it once berth has
/// exited. berth runs from a read-only copy, so the write fails and the binary is intact.
/// The berth used for the victim is a copy of the test binary: a failure harms only the copy.
#[test]
fn a_ptrace_capable_container_cannot_write_back_to_berth() {
    berth_test(|b| {
        let copy = b.path().join("berth-copy");
        fs::copy(common::BERTH, &copy).unwrap();
        let original = fs::read(&copy).unwrap();
        let out = b.dir("out/attack");
        let racer = r#"
        while true; do
          for p in /proc/[0-9]*; do
            t=$(readlink $p/exe 2>/dev/null) || continue
            case "$t" in /bin/busybox|"") continue;; esac
            if exec 3<$p/exe; then echo "$t" > /out/held; break 2; fi
          done
        done
        while [ ! -e /out/go ]; do sleep 0.05; done
        if echo PWNED >> /proc/self/fd/3 2>/out/err; then echo wrote > /out/result; else echo refused > /out/result; fi
        sleep 30
    "#;
        let mut c = b.config(&["sh", "-c", racer]);
        common::add_capability(&mut c, "CAP_SYS_PTRACE");
        common::bind_mount(&mut c, &out, "/out");
        let attacker = b.id("ptracer");
        let attacker_pid = b.create_and_start(&attacker, &c);

        // The victim: a container whose init joins the attacker's pid namespace and waits there,
        // made and deleted by the copy of berth.
        let victim = b.id("victim");
        let mut v = b.config(&["sleep", "30"]);
        for ns in v["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "pid" {
                ns["path"] = serde_json::json!(format!("/proc/{attacker_pid}/ns/pid"));
            }
        }
        let bundle = b.bundle(&victim, &v);
        let root = b.path().join("state");
        let err_file = b.path().join("out").join("copy.stderr");
        let by_copy = |args: &[&str]| {
            // stdio to files, not pipes: the victim's init keeps what `create` was given.
            let status = std::process::Command::new(&copy)
                .arg("--root")
                .arg(&root)
                .args(args)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(fs::File::create(&err_file).unwrap())
                .status()
                .unwrap();
            (status, fs::read_to_string(&err_file).unwrap_or_default())
        };
        let created = by_copy(&["create", "--bundle", bundle.to_str().unwrap(), &victim]);
        assert!(created.0.success(), "{}", created.1);
        b.track(&victim);
        let held = out.join("held");
        assert!(
            poll_until(Duration::from_secs(20), || held.exists()),
            "the racer never opened the victim init's exe"
        );
        let victim_state: serde_json::Value = serde_json::from_slice(
            &fs::read(root.join(&victim).join("state.json")).unwrap_or_default(),
        )
        .unwrap_or_default();
        let deleted = by_copy(&["delete", "--force", &victim]);
        assert!(deleted.0.success(), "{}", deleted.1);
        fs::write(out.join("go"), "").unwrap();
        let result = out.join("result");
        assert!(poll_until(Duration::from_secs(10), || result.exists()));
        let what = fs::read_to_string(&result).unwrap();
        let held_target = fs::read_to_string(&held).unwrap();
        assert_eq!(
            what.trim(),
            "refused",
            "the container wrote through {held_target}: {}",
            fs::read_to_string(out.join("err")).unwrap_or_default()
        );
        assert_ne!(
            Path::new(held_target.trim()),
            copy,
            "the init ran from the writable binary"
        );
        assert!(
            fs::read(&copy).unwrap() == original,
            "berth's binary changed"
        );
        // The victim's init was reparented to us (the subreaper): reaped, or the attacker's pid
        // namespace cannot end.
        if let Some(pid) = victim_state["pid"].as_i64() {
            assert!(poll_until(Duration::from_secs(10), || common::reap(
                pid as i32
            )));
        }
        b.delete_force(&attacker);
    });
}

/// CVE-2025-31133: masked files are bind mounts of the null device. A container (here a
/// createContainer hook standing in for a racer sharing the rootfs) that replaces its
/// `/dev/null` with a symlink to a procfs file must not make a masked path show that file:
/// berth masks from the host's null device, opened before pivot and checked to be 1:3.
#[test]
fn masked_paths_use_the_real_null_device() {
    berth_test(|b| {
        let rootfs = b.new_rootfs("swapped-null");
        let null = rootfs.join("dev/null");
        let mut c = b.config(&["sh", "-c", "head -c 64 /proc/kcore | wc -c"]);
        c["root"]["path"] = serde_json::json!(rootfs);
        c["hooks"] = serde_json::json!({"createContainer": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("rm -f {0} && ln -s /proc/timer_list {0}", null.display())],
        }]});
        let masked = c["linux"]["maskedPaths"].as_array().unwrap();
        assert!(masked.contains(&serde_json::json!("/proc/kcore")));
        let out = b.run(&b.id("swapped-null"), &c);
        // Either the mask holds (the null device berth opened before the swap) or the container
        // fails naming the mask; it never runs with the masked file showing content.
        if out.code() == 0 {
            assert_eq!(out.out().trim(), "0", "a masked file showed content");
        } else {
            assert!(out.err().contains("linux.maskedPaths"), "{}", out.err());
            assert!(out.out().is_empty(), "{}", out.out());
        }
    });
}

/// Whether process `pid` runs from a binary nothing can write (a read-only mount or a sealed
/// memfd).
fn runs_sealed(pid: i32) -> bool {
    let exe = fs::File::open(format!("/proc/{pid}/exe")).unwrap();
    let sealed = berth_runtime::sealed_exe::is_sealed(&exe).unwrap();
    if sealed {
        let write = fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{pid}/exe"));
        assert!(write.is_err(), "{pid}'s binary opened for writing");
    }
    sealed
}

/// The copy is used where a container could reach berth's processes, and skipped where a
/// new pid namespace keeps the waiting init out of reach (saving the re-exec). Such an init is
/// recorded as exposed until it starts: exec into it, and a container joining its pid
/// namespace, are refused until then.
#[test]
fn the_read_only_copy_runs_the_inits_that_need_it() {
    berth_test(|b| {
        let plain = b.id("plain-init");
        let pid = b.create(&plain, &b.config(&["sleep", "30"]));
        assert!(!runs_sealed(pid), "the init was re-executed needlessly");
        assert_eq!(b.state(&plain)["status"], "created");
        let out = b.cmd(&["exec", &plain, "true"]);
        assert!(
            !out.status.success(),
            "exec into an exposed init was allowed"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("has not started"), "{err}");
        let joiner = b.id("joins-early");
        let mut j = b.config(&["sleep", "30"]);
        for ns in j["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "pid" {
                ns["path"] = serde_json::json!(format!("/proc/{pid}/ns/pid"));
            }
        }
        b.assert_create_fails(&joiner, &j, "has not started yet");
        b.start(&plain);
        let out = b.cmd(&["exec", &plain, "true"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Joining a running container's pid namespace: this init needs the read-only view.
        let pid = b.create(&joiner, &j);
        assert!(
            runs_sealed(pid),
            "the joining init runs from the writable binary"
        );
        b.delete_force(&joiner);
        b.delete_force(&plain);
    });
}

/// CVE-2019-19921 / 2023-27561 / 2025-52881 class: a mount inside /proc (directly, or through
/// a symlink in the image) would put the masks and sysctl writes on a decoy. Refused by the
/// filesystem the target resolves to; binds over the files lxcfs serves still work.
#[test]
fn mounts_inside_proc_are_refused() {
    berth_test(|b| {
        let decoy = b.path().join("decoy");
        fs::create_dir_all(decoy.join("sys/kernel")).unwrap();
        let mut c = b.config(&["true"]);
        common::bind_mount(&mut c, &decoy, "/proc/self");
        b.try_create(&b.id("proc-self"), &c)
            .fails_with("lies inside /proc");
        // Through a symlink planted in the image: /a -> /proc.
        let rootfs = b.new_rootfs("proc-link");
        std::os::unix::fs::symlink("/proc", rootfs.join("a")).unwrap();
        let mut c = b.config(&["true"]);
        c["root"]["path"] = serde_json::json!(rootfs);
        common::add_mount(
            &mut c,
            serde_json::json!({"destination": "/a/sys", "type": "tmpfs", "source": "tmpfs", "options": []}),
        );
        b.try_create(&b.id("proc-link"), &c)
            .fails_with("lies inside /proc");
        // What runc allows for lxcfs: a bind over /proc/uptime.
        let uptime = b.path().join("uptime");
        fs::write(&uptime, "42.00 1.00\n").unwrap();
        let mut c = b.config(&["cat", "/proc/uptime"]);
        common::add_mount(
            &mut c,
            serde_json::json!({"destination": "/proc/uptime", "type": "bind", "source": uptime, "options": ["bind"]}),
        );
        let out = b.run_ok("lxcfs-like", &c);
        assert_eq!(out.out().trim(), "42.00 1.00");
        // Sysctls still go to the real procfs.
        let mut c = b.config(&["cat", "/proc/sys/kernel/domainname"]);
        c["linux"]["sysctl"] = serde_json::json!({"kernel.domainname": "inside"});
        assert_eq!(b.run_ok("sysctl", &c).out().trim(), "inside");
    });
}
