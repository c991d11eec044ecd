//! The seccomp section of config.json into the BPF compiler: no panic, every program passes
//! the kernel's checks, and on every probe the program decides exactly what the profile says
//! (checked against the seccomp crate's independent reference evaluator and BPF interpreter).
#![no_main]

#[allow(dead_code, clippy::all)]
#[path = "../../seccomp/tests/common/mod.rs"]
mod common;

use berth_seccomp::{CompileOptions, Filter};
use common::{reference, run, validate, Data, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, REF_SYSCALLS};
use oci_spec::runtime::LinuxSeccomp;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(mut profile) = serde_json::from_slice::<LinuxSeccomp>(data) else {
        return;
    };
    // The reference evaluator knows a fixed set of syscalls; keep only rules it can judge.
    if let Some(rules) = profile.syscalls().clone() {
        let known: Vec<_> = rules
            .into_iter()
            .filter(|r| {
                r.names()
                    .iter()
                    .all(|n| REF_SYSCALLS.iter().any(|(k, ..)| k == n))
            })
            .collect();
        profile.set_syscalls(Some(known));
    }
    for enosys in [false, true] {
        let mut opts = CompileOptions::default();
        opts.enosys_for_unknown_syscalls = enosys;
        let Ok(filter) = Filter::compile_with(&profile, &opts) else {
            continue;
        };
        validate(filter.program()).expect("kernel would reject the program");
        for &(_, x64, x86, x32) in REF_SYSCALLS {
            let probes = [
                (AUDIT_ARCH_X86_64, x64),
                (AUDIT_ARCH_I386, x86),
                (AUDIT_ARCH_X86_64, x32),
            ];
            for (arch, nr) in probes.into_iter().filter_map(|(a, n)| Some((a, n?))) {
                for args in [[0u64; 6], [u64::MAX; 6], [1, 2, 3, 0x1_0000_0000, 5, 6]] {
                    let d = Data {
                        nr,
                        arch,
                        ip: 0,
                        args,
                    };
                    assert_eq!(
                        run(filter.program(), &d),
                        reference(&profile, &d, enosys),
                        "{d:?}"
                    );
                }
            }
        }
    }
});
