//! Validation errors, flags and notify detection.

mod common;

use berth_seccomp::{Error, Filter};
use common::*;

fn err(json: &str) -> Error {
    Filter::compile(&profile(json)).unwrap_err()
}

#[test]
fn errno_on_action_without_errno_names_the_field() {
    let e = err(r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["write"], "action": "SCMP_ACT_ALLOW", "errnoRet": 5}]}"#);
    assert!(matches!(e, Error::ErrnoNotSupported { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "linux.seccomp.syscalls[1].errnoRet: errno return is not supported with action SCMP_ACT_ALLOW"
    );

    let e = err(r#"{"defaultAction": "SCMP_ACT_KILL_PROCESS", "defaultErrnoRet": 1}"#);
    assert_eq!(
        e.to_string(),
        "linux.seccomp.defaultErrnoRet: errno return is not supported with action SCMP_ACT_KILL_PROCESS"
    );
}

#[test]
fn errno_out_of_range() {
    let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_TRACE", "errnoRet": 65536}]}"#);
    assert_eq!(
        e.to_string(),
        "linux.seccomp.syscalls[0].errnoRet: errno return 65536 out of range (max 65535)"
    );
}

#[test]
fn bad_argument_index() {
    let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#);
    assert!(
        matches!(e, Error::ArgIndexOutOfRange { index: 6, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("linux.seccomp.syscalls[0].args[1].index: "),
        "{e}"
    );
}

#[test]
fn empty_names() {
    let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO"}, {"names": [], "action": "SCMP_ACT_ERRNO"}]}"#);
    assert_eq!(
        e.to_string(),
        "linux.seccomp.syscalls[1].names: must contain at least one syscall name"
    );
}

#[test]
fn notify_cannot_be_default() {
    let e = err(r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#);
    assert_eq!(
        e.to_string(),
        "linux.seccomp.defaultAction: unsupported action SCMP_ACT_NOTIFY: it cannot be the default action"
    );
}

#[test]
fn unknown_names_are_rejected_by_the_config_parser() {
    // Actions, operators, architectures and flags are enums in oci-spec: an unknown
    // name fails deserialization of the config before the compiler sees it.
    for bad in [
        r#"{"defaultAction": "SCMP_ACT_FOO"}"#,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}"#,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FOO"]}"#,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
            "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_FOO"}]}]}"#,
    ] {
        assert!(
            serde_json::from_str::<oci_spec::runtime::LinuxSeccomp>(bad).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn unknown_syscall_names_are_skipped() {
    let f = Filter::compile(&profile(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["no_such_syscall", "getpid", "_llseek"], "action": "SCMP_ACT_ALLOW"}]}"#,
    ))
    .unwrap();
    assert_eq!(run(f.program(), &Data::x86_64(39, &[])), ALLOW);
    assert_eq!(run(f.program(), &Data::x86_64(0, &[])), errno(1));
}

#[test]
fn supported_names_parse() {
    use oci_spec::runtime::{
        Arch, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
    };
    let parse = |s: &str| serde_json::Value::String(s.to_owned());
    for a in berth_seccomp::supported_actions() {
        serde_json::from_value::<LinuxSeccompAction>(parse(a)).unwrap();
    }
    for o in berth_seccomp::supported_operators() {
        serde_json::from_value::<LinuxSeccompOperator>(parse(o)).unwrap();
    }
    for a in berth_seccomp::supported_archs() {
        serde_json::from_value::<Arch>(parse(a)).unwrap();
    }
    for f in berth_seccomp::supported_flags() {
        serde_json::from_value::<LinuxSeccompFilterFlag>(parse(f)).unwrap();
    }
    assert_eq!(berth_seccomp::supported_actions().len(), 9);
    assert_eq!(berth_seccomp::supported_operators().len(), 7);
    assert_eq!(berth_seccomp::supported_flags().len(), 4);
}

const TSYNC: u32 = 1;
const LOG_FLAG: u32 = 2;
const SPEC_ALLOW: u32 = 4;
const NEW_LISTENER: u32 = 8;
const TSYNC_ESRCH: u32 = 16;
const WAIT_KILLABLE_RECV: u32 = 32;

#[test]
fn flags() {
    let f = Filter::compile(&profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_TSYNC",
            "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}"#,
    ))
    .unwrap();
    // WAIT_KILLABLE_RECV is meaningless (and refused by the kernel) without a listener.
    assert_eq!(f.flags(), TSYNC | LOG_FLAG | SPEC_ALLOW);
    assert!(!f.needs_notify());

    let f = Filter::compile(&profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_TSYNC",
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]}"#,
    ))
    .unwrap();
    assert!(f.needs_notify());
    assert_eq!(
        f.flags(),
        TSYNC | NEW_LISTENER | TSYNC_ESRCH | WAIT_KILLABLE_RECV
    );
    assert_eq!(run(f.program(), &Data::x86_64(110, &[])), NOTIFY);
}

#[test]
fn notify_only_counts_when_it_reaches_the_program() {
    // Unknown syscall, and a syscall whose first unconditional rule is ALLOW.
    let f = Filter::compile(&profile(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["no_such_syscall", "getppid"], "action": "SCMP_ACT_NOTIFY"}]}"#,
    ))
    .unwrap();
    assert!(!f.needs_notify());
    assert_eq!(f.flags() & NEW_LISTENER, 0);
}

#[test]
fn rule_merging_follows_libseccomp() {
    let f = Filter::compile(&profile(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_TRAP", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getpid"], "action": "SCMP_ACT_LOG"},
            {"names": ["getpid"], "action": "SCMP_ACT_KILL"},
            {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_LT"}]},
            {"names": ["read"], "action": "SCMP_ACT_TRACE", "errnoRet": 9, "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_LT"}]}
        ]}"#,
    ))
    .unwrap();
    let p = f.program();
    // A later unconditional rule replaces conditional ones; the first unconditional stays.
    assert_eq!(run(p, &Data::x86_64(39, &[1])), LOG);
    assert_eq!(run(p, &Data::x86_64(39, &[0])), LOG);
    // The rule repeating the default action is dropped, so arg 1 reaches the ALLOW rule;
    // among the others the first match wins.
    assert_eq!(run(p, &Data::x86_64(0, &[1])), ALLOW);
    assert_eq!(run(p, &Data::x86_64(0, &[2])), ALLOW);
    assert_eq!(run(p, &Data::x86_64(0, &[7])), errno(1));
}

#[test]
fn every_action_encodes() {
    for (action, extra, want) in [
        ("SCMP_ACT_KILL", "", KILL_THREAD),
        ("SCMP_ACT_KILL_THREAD", "", KILL_THREAD),
        ("SCMP_ACT_KILL_PROCESS", "", KILL_PROCESS),
        ("SCMP_ACT_TRAP", "", TRAP),
        ("SCMP_ACT_ERRNO", "", errno(1)),
        ("SCMP_ACT_ERRNO", r#", "errnoRet": 0"#, errno(0)),
        ("SCMP_ACT_ERRNO", r#", "errnoRet": 4095"#, errno(4095)),
        ("SCMP_ACT_TRACE", "", trace(1)),
        ("SCMP_ACT_TRACE", r#", "errnoRet": 65535"#, trace(65535)),
        ("SCMP_ACT_LOG", "", LOG),
        ("SCMP_ACT_NOTIFY", "", NOTIFY),
    ] {
        let f = Filter::compile(&profile(&format!(
            r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{{"names": ["getpid"], "action": "{action}"{extra}}}]}}"#
        )))
        .unwrap();
        assert_eq!(
            run(f.program(), &Data::x86_64(39, &[])),
            want,
            "{action}{extra}"
        );
        // And as the default action.
        if action != "SCMP_ACT_NOTIFY" {
            let extra = extra.replace("errnoRet", "defaultErrnoRet");
            let p = profile(&format!(
                r#"{{"defaultAction": "{action}"{extra}, "syscalls": [{{"names": ["write"], "action": "SCMP_ACT_ALLOW"}}]}}"#
            ));
            let f = Filter::compile(&p).unwrap();
            assert_eq!(run(f.program(), &Data::x86_64(1, &[])), ALLOW, "{action}");
            // Below the highest named syscall: the default action itself.
            assert_eq!(run(f.program(), &Data::x86_64(0, &[])), want, "{action}");
            // Above it: ENOSYS when the default action denies.
            let above = Data::x86_64(2, &[]);
            assert_eq!(
                run(f.program(), &above),
                reference(&p, &above, true),
                "{action}"
            );
        }
    }
}

#[test]
fn empty_profile() {
    let f = Filter::compile(&profile(r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#)).unwrap();
    validate(f.program()).unwrap();
    assert_eq!(run(f.program(), &Data::x86_64(0, &[])), ALLOW);
    assert_eq!(run(f.program(), &Data::x86_64(X32, &[])), KILL_PROCESS);
    assert_eq!(
        run(f.program(), &Data::new(AUDIT_ARCH_I386, 0, &[])),
        KILL_PROCESS
    );
    let f = Filter::compile(&profile(r#"{"defaultAction": "SCMP_ACT_KILL"}"#)).unwrap();
    assert_eq!(run(f.program(), &Data::x86_64(0, &[])), KILL_THREAD);
}
