//! Test helpers: a classic-BPF interpreter for seccomp programs, a kernel-like
//! program checker, a reference evaluator of OCI profiles, and fixtures.
#![allow(dead_code)]

use libc::sock_filter;
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
pub const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
pub const X32: u32 = 0x4000_0000;

pub const ALLOW: u32 = 0x7fff_0000;
pub const KILL_PROCESS: u32 = 0x8000_0000;
pub const KILL_THREAD: u32 = 0;
pub const TRAP: u32 = 0x0003_0000;
pub const LOG: u32 = 0x7ffc_0000;
pub const NOTIFY: u32 = 0x7fc0_0000;
pub const fn errno(e: u32) -> u32 {
    0x0005_0000 | e
}
pub const fn trace(d: u32) -> u32 {
    0x7ff0_0000 | d
}

/// `struct seccomp_data`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Data {
    pub nr: u32,
    pub arch: u32,
    pub ip: u64,
    pub args: [u64; 6],
}

impl Data {
    pub fn x86_64(nr: u32, args: &[u64]) -> Data {
        Data::new(AUDIT_ARCH_X86_64, nr, args)
    }

    pub fn new(arch: u32, nr: u32, args: &[u64]) -> Data {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        Data {
            nr,
            arch,
            ip: 0x40_1000,
            args: a,
        }
    }

    fn bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..4].copy_from_slice(&self.nr.to_le_bytes());
        b[4..8].copy_from_slice(&self.arch.to_le_bytes());
        b[8..16].copy_from_slice(&self.ip.to_le_bytes());
        for (i, a) in self.args.iter().enumerate() {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        b
    }
}

// Opcode fields.
const CLASS_LD: u16 = 0x00;
const CLASS_LDX: u16 = 0x01;
const CLASS_ST: u16 = 0x02;
const CLASS_STX: u16 = 0x03;
const CLASS_ALU: u16 = 0x04;
const CLASS_JMP: u16 = 0x05;
const CLASS_RET: u16 = 0x06;
const CLASS_MISC: u16 = 0x07;

/// Rejects what the kernel's `bpf_check_classic` + `seccomp_check_filter` reject.
pub fn validate(prog: &[sock_filter]) -> Result<(), String> {
    if prog.is_empty() || prog.len() > 4096 {
        return Err(format!("bad length {}", prog.len()));
    }
    let n = prog.len();
    for (pc, i) in prog.iter().enumerate() {
        let code = i.code;
        let ok = match code {
            // ld w abs: aligned loads inside seccomp_data only.
            0x20 => i.k % 4 == 0 && i.k < 64,
            // ld/ldx w len, ld/ldx imm, ret k, ret a, tax, txa
            0x80 | 0x81 | 0x00 | 0x01 | 0x06 | 0x16 | 0x07 | 0x87 => true,
            // ld/ldx mem, st/stx: scratch slots 0-15
            0x60 | 0x61 | 0x02 | 0x03 => i.k < 16,
            c if c & 0x07 == CLASS_ALU => {
                let op = c & 0xf0;
                let x = c & 0x08 != 0;
                op <= 0xa0 && !(matches!(op, 0x30 | 0x90) && !x && i.k == 0)
            }
            c if c & 0x07 == CLASS_JMP => {
                let op = c & 0xf0;
                if op == 0x00 {
                    (pc + 1).checked_add(i.k as usize).is_some_and(|t| t < n)
                } else {
                    op <= 0x40 && pc + 1 + usize::from(i.jt) < n && pc + 1 + usize::from(i.jf) < n
                }
            }
            _ => false,
        };
        if !ok {
            return Err(format!(
                "invalid instruction {pc}: {i:?}",
                i = (code, i.jt, i.jf, i.k)
            ));
        }
    }
    let last = prog[n - 1].code;
    if last & 0x07 != CLASS_RET {
        return Err("last instruction is not a ret".into());
    }
    Ok(())
}

/// Runs a seccomp BPF program on `data`; returns the filter's return value.
pub fn run(prog: &[sock_filter], data: &Data) -> u32 {
    exec(prog, data).0
}

/// Number of instructions executed to reach a decision (for cost checks).
pub fn steps(prog: &[sock_filter], data: &Data) -> usize {
    exec(prog, data).1
}

// The names mirror the BPF machine: A, X, K, instruction i.
#[allow(clippy::many_single_char_names)]
fn exec(prog: &[sock_filter], data: &Data) -> (u32, usize) {
    let bytes = data.bytes();
    let word = |k: u32| {
        let k = k as usize;
        u32::from_le_bytes(bytes[k..k + 4].try_into().unwrap())
    };
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; 16];
    let mut pc = 0usize;
    for steps in 1..=prog.len() {
        let i = prog[pc];
        pc += 1;
        let k = i.k;
        match i.code & 0x07 {
            CLASS_LD => match i.code {
                0x20 => a = word(k),
                0x80 => a = 64,
                0x00 => a = k,
                0x60 => a = mem[k as usize],
                c => panic!("unsupported ld {c:#x}"),
            },
            CLASS_LDX => match i.code {
                0x81 => x = 64,
                0x01 => x = k,
                0x61 => x = mem[k as usize],
                c => panic!("unsupported ldx {c:#x}"),
            },
            CLASS_ST => mem[k as usize] = a,
            CLASS_STX => mem[k as usize] = x,
            CLASS_ALU => {
                let src = if i.code & 0x08 != 0 { x } else { k };
                a = match i.code & 0xf0 {
                    0x00 => a.wrapping_add(src),
                    0x10 => a.wrapping_sub(src),
                    0x20 => a.wrapping_mul(src),
                    0x30 => a.checked_div(src).unwrap_or(0),
                    0x40 => a | src,
                    0x50 => a & src,
                    0x60 => a.checked_shl(src).unwrap_or(0),
                    0x70 => a.checked_shr(src).unwrap_or(0),
                    0x80 => a.wrapping_neg(),
                    0x90 => a.checked_rem(src).unwrap_or(0),
                    0xa0 => a ^ src,
                    c => panic!("unsupported alu {c:#x}"),
                };
            }
            CLASS_JMP => {
                let src = if i.code & 0x08 != 0 { x } else { k };
                let taken = match i.code & 0xf0 {
                    0x00 => {
                        pc += k as usize;
                        continue;
                    }
                    0x10 => a == src,
                    0x20 => a > src,
                    0x30 => a >= src,
                    0x40 => a & src != 0,
                    c => panic!("unsupported jmp {c:#x}"),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            CLASS_RET => return (if i.code & 0x10 != 0 { a } else { k }, steps),
            CLASS_MISC => {
                if i.code & 0xf8 == 0 {
                    x = a;
                } else {
                    a = x;
                }
            }
            _ => unreachable!(),
        }
    }
    panic!("program did not return (forward jumps only: impossible)");
}

/// Reads `linux.seccomp` from an engine's example config in the repository's fixtures,
/// `tests/fixtures/engines` at the workspace root (this file is also compiled into `fuzz/`,
/// which sits at the same depth as `seccomp/`).
pub fn engine_profile(engine: &str) -> Option<LinuxSeccomp> {
    let path = format!(
        "{}/../tests/fixtures/engines/{engine}.example.config.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    let seccomp = config.get("linux")?.get("seccomp")?;
    Some(serde_json::from_value(seccomp.clone()).unwrap())
}

/// Builds a profile from JSON text.
pub fn profile(json: &str) -> LinuxSeccomp {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("bad test profile: {e}\n{json}"))
}

/// A syscall's name and its numbers on x86-64, i386 and x32.
pub type RefSyscall = (&'static str, Option<u32>, Option<u32>, Option<u32>);

/// Syscalls the reference evaluator knows: name, x86-64, i386, x32 numbers.
/// Written independently of the crate's generated tables.
pub const REF_SYSCALLS: &[RefSyscall] = &[
    ("read", Some(0), Some(3), Some(X32)),
    ("write", Some(1), Some(4), Some(X32 + 1)),
    ("rt_sigaction", Some(13), Some(174), Some(X32 + 512)),
    ("ioctl", Some(16), Some(54), Some(X32 + 514)),
    ("getpid", Some(39), Some(20), Some(X32 + 39)),
    ("socket", Some(41), Some(359), Some(X32 + 41)),
    ("clone", Some(56), Some(120), Some(X32 + 56)),
    ("personality", Some(135), Some(136), Some(X32 + 135)),
    ("_llseek", None, Some(140), None),
    ("socketcall", None, Some(102), None),
    ("fchmodat2", Some(452), Some(452), Some(X32 + 452)),
    ("map_shadow_stack", Some(453), None, None),
    ("not_a_syscall", None, None, None),
];

fn action_ret(a: LinuxSeccompAction, errno_ret: Option<u32>) -> u32 {
    let data = errno_ret.unwrap_or(1);
    match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => TRAP,
        LinuxSeccompAction::ScmpActErrno => errno(data),
        LinuxSeccompAction::ScmpActTrace => trace(data),
        LinuxSeccompAction::ScmpActAllow => ALLOW,
        LinuxSeccompAction::ScmpActLog => LOG,
        LinuxSeccompAction::ScmpActNotify => NOTIFY,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum RefAbi {
    X86_64,
    X86,
    X32,
}

/// What the documented semantics say `profile` returns for `data`: a direct
/// reading of the crate docs, no BPF involved.
pub fn reference(profile: &LinuxSeccomp, data: &Data, enosys: bool) -> u32 {
    let archs = profile.architectures().clone().unwrap_or_default();
    let default = action_ret(profile.default_action(), profile.default_errno_ret());
    let abi = match data.arch {
        AUDIT_ARCH_X86_64 if data.nr >= X32 && archs.contains(&Arch::ScmpArchX32) => RefAbi::X32,
        AUDIT_ARCH_X86_64 if data.nr >= X32 => return KILL_PROCESS,
        AUDIT_ARCH_X86_64 => RefAbi::X86_64,
        AUDIT_ARCH_I386 if archs.contains(&Arch::ScmpArchX86) => RefAbi::X86,
        _ => return KILL_PROCESS,
    };
    let number = |name: &str| {
        let e = REF_SYSCALLS.iter().find(|e| e.0 == name)?;
        match abi {
            RefAbi::X86_64 => e.1,
            RefAbi::X86 => e.2,
            RefAbi::X32 => e.3,
        }
    };
    let narrow = abi == RefAbi::X86;
    let holds = |op: LinuxSeccompOperator, arg: u64, v: u64, v2: u64| {
        let (arg, v, v2) = if narrow {
            (arg & 0xffff_ffff, v & 0xffff_ffff, v2 & 0xffff_ffff)
        } else {
            (arg, v, v2)
        };
        match op {
            LinuxSeccompOperator::ScmpCmpNe => arg != v,
            LinuxSeccompOperator::ScmpCmpLt => arg < v,
            LinuxSeccompOperator::ScmpCmpLe => arg <= v,
            LinuxSeccompOperator::ScmpCmpEq => arg == v,
            LinuxSeccompOperator::ScmpCmpGe => arg >= v,
            LinuxSeccompOperator::ScmpCmpGt => arg > v,
            LinuxSeccompOperator::ScmpCmpMaskedEq => arg & v == v2 & v,
        }
    };

    let mut unconditional = None;
    let mut first_match = None;
    let mut max_named: Option<u32> = None;
    for sc in profile.syscalls().iter().flatten() {
        let action = action_ret(sc.action(), sc.errno_ret());
        for name in sc.names() {
            let Some(nr) = number(name) else { continue };
            max_named = Some(max_named.map_or(nr, |m| m.max(nr)));
            if nr != data.nr || action == default {
                continue;
            }
            let args = sc.args().clone().unwrap_or_default();
            if args.is_empty() {
                unconditional.get_or_insert(action);
            } else if first_match.is_none()
                && args.iter().all(|a| {
                    holds(
                        a.op(),
                        data.args[a.index()],
                        a.value(),
                        a.value_two().unwrap_or(0),
                    )
                })
            {
                first_match = Some(action);
            }
        }
    }
    if let Some(a) = unconditional.or(first_match) {
        return a;
    }
    let permissive = matches!(default, ALLOW | LOG | NOTIFY) || default & 0xffff_0000 == trace(0);
    if enosys && !permissive && default != errno(38) && max_named.is_some_and(|m| data.nr > m) {
        return errno(38);
    }
    default
}
