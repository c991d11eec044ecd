//! Property: for random small profiles, the compiled program decides exactly what
//! a direct reading of the profile (the reference evaluator) decides.

mod common;

use berth_seccomp::{CompileOptions, Filter};
use common::*;
use oci_spec::runtime::LinuxSeccomp;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Every action a profile may name: the library's own list (also what `berth features`
/// reports), so a new action is generated here as soon as it is supported.
fn actions() -> &'static [&'static str] {
    berth_seccomp::supported_actions()
}
/// Every comparison operator: the library's own list, like [`actions`].
fn ops() -> &'static [&'static str] {
    berth_seccomp::supported_operators()
}
const ARCHS: &[&str] = &[
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_AARCH64",
];

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(0xffff_ffff),
        Just(0x1_0000_0000),
        Just(0x1_0000_0001),
        Just(0x8000_0000_0000_0000),
        Just(u64::MAX),
        0u64..8,
        any::<u64>(),
    ]
}

/// An action with an errno only where allowed.
fn action(allow_notify: bool) -> impl Strategy<Value = (String, Option<u32>)> {
    let names: Vec<&'static str> = actions()
        .iter()
        .copied()
        .filter(|&name| allow_notify || name != "SCMP_ACT_NOTIFY")
        .collect();
    (
        0..names.len(),
        prop::option::of(prop_oneof![Just(0u32), Just(1), Just(38), 2u32..100]),
    )
        .prop_map(move |(i, errno)| {
            let name = names[i];
            let takes_errno = matches!(name, "SCMP_ACT_ERRNO" | "SCMP_ACT_TRACE");
            (name.to_owned(), errno.filter(|_| takes_errno))
        })
}

fn arg() -> impl Strategy<Value = Value> {
    (
        0usize..3,
        0..ops().len(),
        value(),
        prop::option::of(value()),
    )
        .prop_map(|(index, op, v, v2)| {
            let mut a = json!({"index": index, "value": v, "op": ops()[op]});
            if let Some(v2) = v2 {
                a["valueTwo"] = json!(v2);
            }
            a
        })
}

fn entry() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(
            prop::sample::select(REF_SYSCALLS.iter().map(|e| e.0).collect::<Vec<_>>()),
            1..4,
        ),
        action(true),
        prop::collection::vec(arg(), 0..3),
    )
        .prop_map(|(names, (action, errno), args)| {
            let mut e = json!({"names": names, "action": action});
            if let Some(errno) = errno {
                e["errnoRet"] = json!(errno);
            }
            if !args.is_empty() {
                e["args"] = json!(args);
            }
            e
        })
}

fn profile_strategy() -> impl Strategy<Value = LinuxSeccomp> {
    (
        action(false),
        prop::collection::vec(prop::sample::select(ARCHS.to_vec()), 0..4),
        prop::collection::vec(entry(), 0..8),
    )
        .prop_map(|((default, errno), archs, syscalls)| {
            let mut p = json!({"defaultAction": default, "syscalls": syscalls});
            if let Some(errno) = errno {
                p["defaultErrnoRet"] = json!(errno);
            }
            if !archs.is_empty() {
                p["architectures"] = json!(archs);
            }
            serde_json::from_value(p).unwrap()
        })
}

/// Argument values around every value the profile mentions.
fn interesting_args(p: &LinuxSeccomp) -> Vec<u64> {
    let mut out = vec![0, 1, u64::MAX, 0xffff_ffff, 1 << 32];
    for sc in p.syscalls().iter().flatten() {
        for a in sc.args().iter().flatten() {
            for v in [
                a.value(),
                a.value_two().unwrap_or(0),
                a.value() & a.value_two().unwrap_or(0),
            ] {
                out.extend([
                    v,
                    v.wrapping_add(1),
                    v.wrapping_sub(1),
                    v ^ (1 << 32),
                    v & 0xffff_ffff,
                    v | 0xffff_ffff_0000_0000,
                    v.rotate_left(32),
                ]);
            }
        }
    }
    out
}

/// Syscall numbers worth probing on each arch value.
fn probes() -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for &(_, x64, x86, x32) in REF_SYSCALLS {
        out.extend(x64.map(|n| (AUDIT_ARCH_X86_64, n)));
        out.extend(x86.map(|n| (AUDIT_ARCH_I386, n)));
        out.extend(x32.map(|n| (AUDIT_ARCH_X86_64, n)));
    }
    for nr in [2, 500, 1000, 0x3fff_ffff] {
        out.push((AUDIT_ARCH_X86_64, nr));
        out.push((AUDIT_ARCH_I386, nr));
    }
    out.extend([
        (AUDIT_ARCH_X86_64, X32 + 2),
        (AUDIT_ARCH_X86_64, X32 + 1000),
        (AUDIT_ARCH_X86_64, u32::MAX),
        (AUDIT_ARCH_AARCH64, 0),
        (0, 0),
    ]);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn program_matches_reference(
        p in profile_strategy(),
        enosys in any::<bool>(),
        random_args in prop::collection::vec(prop::array::uniform6(any::<u64>()), 4),
    ) {
        let mut opts = CompileOptions::default();
        opts.enosys_for_unknown_syscalls = enosys;
        let f = Filter::compile_with(&p, &opts).unwrap();
        validate(f.program()).map_err(TestCaseError::fail)?;

        let vals = interesting_args(&p);
        let mut arg_sets: Vec<[u64; 6]> = random_args;
        for (i, &v) in vals.iter().enumerate() {
            // Vary which argument gets which value.
            let w = vals[(i * 7 + 3) % vals.len()];
            arg_sets.push([v, w, v, w, v, w]);
            arg_sets.push([w, v, w, v, w, v]);
        }
        for (arch, nr) in probes() {
            for args in &arg_sets {
                let d = Data { nr, arch, ip: 0, args: *args };
                let got = run(f.program(), &d);
                let want = reference(&p, &d, enosys);
                prop_assert_eq!(got, want, "data {:?}\nprofile {}", d, serde_json::to_string(&p).unwrap());
            }
        }
    }
}
