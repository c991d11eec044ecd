//! Seccomp observed from inside real containers: every action (ERRNO returns its errno, KILL
//! and KILL_PROCESS kill, TRAP delivers SIGSYS, LOG and ALLOW allow, TRACE without a tracer
//! fails with ENOSYS, NOTIFY reaches an agent written here that fakes the result), argument
//! comparisons with every operator, and the engines' default profiles blocking what they block.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};

use common::{berth_test, engine_fixture, Berth, OutputExt};
use serde_json::{json, Value};

/// `config(args)` with a seccomp profile allowing everything except `rules`.
fn with_profile(b: &Berth, args: &[&str], rules: &Value) -> Value {
    let mut c = b.config(args);
    c["linux"]["seccomp"] = json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules });
    c
}

/// Runs `mkdir /tmp/probe` under an action on mkdir/mkdirat; returns (exit code, output).
fn mkdir_under(b: &Berth, name: &str, action: &Value) -> (i32, String) {
    let mut rule = json!({ "names": ["mkdir", "mkdirat"] });
    rule.as_object_mut()
        .unwrap()
        .extend(action.as_object().unwrap().clone());
    let c = with_profile(
        b,
        &["sh", "-c", "mkdir /dev/shm/probe 2>&1; echo rc=$?"],
        &json!([rule]),
    );
    let out = b.run(&b.id(name), &c);
    (out.code(), out.out() + &out.err())
}

#[test]
fn every_action_as_seen_from_inside() {
    berth_test(|b| {
        let (code, out) = mkdir_under(
            b,
            "errno",
            &json!({"action": "SCMP_ACT_ERRNO", "errnoRet": 13}),
        );
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("Permission denied") && out.contains("rc=1"),
            "{out}"
        );
        let (code, out) = mkdir_under(b, "errnodef", &json!({"action": "SCMP_ACT_ERRNO"}));
        assert!(
            code == 0 && out.contains("Operation not permitted"),
            "{out}"
        );
        // The shell forks mkdir; the killed child shows as 128+SIGSYS in the shell's $?.
        for action in [
            "SCMP_ACT_KILL",
            "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_KILL_THREAD",
            "SCMP_ACT_TRAP",
        ] {
            let (code, out) = mkdir_under(
                b,
                &action.to_lowercase().replace('_', "-"),
                &json!({"action": action}),
            );
            assert_eq!(code, 0, "{action}: {out}");
            assert!(
                out.contains("rc=159"),
                "{action}: expected death by SIGSYS: {out}"
            );
        }
        for action in ["SCMP_ACT_LOG", "SCMP_ACT_ALLOW"] {
            let (_, out) = mkdir_under(
                b,
                &action.to_lowercase().replace('_', "-"),
                &json!({"action": action}),
            );
            assert!(out.contains("rc=0"), "{action}: {out}");
        }
        let (_, out) = mkdir_under(
            b,
            "trace",
            &json!({"action": "SCMP_ACT_TRACE", "errnoRet": 1}),
        );
        assert!(
            out.contains("Function not implemented") || out.contains("rc=1"),
            "{out}"
        );
    });
}

/// `kill -N 999999` makes busybox call kill(999999, N): argument 1 is N. The rule answers
/// EACCES, told apart from the ESRCH of an allowed call by its message.
fn kill_blocked(b: &Berth, name: &str, op: &str, value: u64, value_two: u64, n: u32) -> bool {
    let rule = json!({
        "names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
        "args": [{"index": 1, "value": value, "valueTwo": value_two, "op": op}],
    });
    let cmd = format!("kill -{n} 999999 2>&1; true");
    let out = b.run(
        &b.id(name),
        &with_profile(b, &["sh", "-c", &cmd], &json!([rule])),
    );
    let text = out.out();
    assert!(
        text.contains("Permission denied") || text.contains("No such process"),
        "{text} {}",
        out.err()
    );
    text.contains("Permission denied")
}

#[test]
fn argument_comparisons_of_every_operator() {
    berth_test(|b| {
        /// Operator, value, valueTwo, and (signal, blocked?) probes.
        type Case<'a> = (&'a str, u64, u64, &'a [(u32, bool)]);
        let cases: &[Case] = &[
            ("SCMP_CMP_EQ", 5, 0, &[(5, true), (4, false)]),
            ("SCMP_CMP_NE", 5, 0, &[(5, false), (4, true)]),
            ("SCMP_CMP_LT", 5, 0, &[(4, true), (5, false)]),
            ("SCMP_CMP_LE", 5, 0, &[(5, true), (6, false)]),
            ("SCMP_CMP_GT", 5, 0, &[(6, true), (5, false)]),
            ("SCMP_CMP_GE", 5, 0, &[(5, true), (4, false)]),
            ("SCMP_CMP_MASKED_EQ", 0b100, 0b100, &[(5, true), (2, false)]),
        ];
        for (i, (op, value, two, probes)) in cases.iter().enumerate() {
            for (j, (n, want)) in probes.iter().enumerate() {
                let got = kill_blocked(b, &format!("op{i}-{j}"), op, *value, *two, *n);
                assert_eq!(got, *want, "{op} value={value} valueTwo={two}: kill -{n}");
            }
        }
    });
}

/// The engines' profiles (with CAP_SYS_ADMIN granted, so only seccomp can refuse) block what
/// they block: docker's `sethostname`, `unshare` and `mount`; podman's `sethostname` (podman
/// leaves `unshare` and `mount` to capabilities). Without the profile all three succeed.
#[test]
fn engine_profiles_block_what_they_block() {
    berth_test(|b| {
        let script =
            "hostname other 2>&1; echo hostname=$?; unshare -n true 2>&1; echo unshare=$?; \
                      mount -t tmpfs none /dev/shm 2>&1; echo mount=$?";
        for (engine, blocked) in [
            ("docker", &["hostname", "unshare", "mount"][..]),
            ("podman", &["hostname"][..]),
        ] {
            let path = engine_fixture(engine, "config");
            let fixture: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            for with_seccomp in [true, false] {
                let mut c = b.config(&["sh", "-c", script]);
                for set in ["bounding", "effective", "permitted"] {
                    c["process"]["capabilities"][set]
                        .as_array_mut()
                        .unwrap()
                        .push(json!("CAP_SYS_ADMIN"));
                }
                if with_seccomp {
                    c["linux"]["seccomp"] = fixture["linux"]["seccomp"].clone();
                }
                let out = b.run(&b.id(&format!("{engine}-{with_seccomp}")), &c);
                let text = out.out();
                for call in ["hostname", "unshare", "mount"] {
                    let ok = text.contains(&format!("{call}=0"));
                    let want_ok = !(with_seccomp && blocked.contains(&call));
                    assert_eq!(
                        ok, want_ok,
                        "{engine} seccomp={with_seccomp} {call}: {text}"
                    );
                }
            }
        }
    });
}

/// A seccomp agent written here: receives the listener and the container process state over
/// `listenerPath`, then answers the first notification with a fake success.
#[test]
fn notify_reaches_an_agent_that_fakes_the_result() {
    berth_test(|b| {
        let sock = b.path().join("agent.sock");
        let agent = common::spawn_seccomp_agent(&sock, |fd, state| {
            answer_one(&fd.expect("no seccomp fd"));
            state
        });
        let mut c = with_profile(b, &["sh", "-c", "mkdir /dev/shm/faked; echo rc=$?; test -d /dev/shm/faked && echo exists || echo absent"], &json!([
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}
        ]));
        c["linux"]["seccomp"]["listenerPath"] = json!(sock);
        c["linux"]["seccomp"]["listenerMetadata"] = json!("from-the-test");
        let id = b.id("notify");
        let out = b.run(&id, &c);
        let state = agent.join().unwrap();
        assert_eq!(state["fds"], json!(["seccompFd"]));
        assert_eq!(state["metadata"], "from-the-test");
        assert_eq!(state["state"]["id"], json!(id));
        // The agent said "success" without creating anything.
        assert!(
            out.out().contains("rc=0") && out.out().contains("absent"),
            "{} {}",
            out.out(),
            out.err()
        );
    });
}

/// Receives one notification on `fd` and answers it with return value 0.
fn answer_one(fd: &OwnedFd) {
    #[repr(C)]
    #[derive(Default)]
    struct Notif {
        id: u64,
        pid: u32,
        flags: u32,
        nr: i32,
        arch: u32,
        ip: u64,
        args: [u64; 6],
    }
    #[repr(C)]
    struct Resp {
        id: u64,
        val: i64,
        error: i32,
        flags: u32,
    }
    const RECV: libc::c_ulong = 0xc050_2100;
    const SEND: libc::c_ulong = 0xc018_2101;
    let mut n = Notif::default();
    // SAFETY: SECCOMP_IOCTL_NOTIF_RECV fills a struct seccomp_notif we own.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), RECV, &raw mut n) };
    assert_eq!(rc, 0, "NOTIF_RECV: {}", std::io::Error::last_os_error());
    let mut r = Resp {
        id: n.id,
        val: 0,
        error: 0,
        flags: 0,
    };
    // SAFETY: SECCOMP_IOCTL_NOTIF_SEND reads a struct seccomp_notif_resp we own.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), SEND, &raw mut r) };
    assert_eq!(rc, 0, "NOTIF_SEND: {}", std::io::Error::last_os_error());
}
