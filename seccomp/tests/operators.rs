//! Each operator at its edges, including differences only in the high word.

mod common;

use berth_seccomp::Filter;
use common::*;

const GETPID: u32 = 39;
const HIT: u32 = errno(7);

/// `getpid` with one condition on argument 2 → ERRNO 7, default ALLOW.
fn filter(op: &str, value: u64, value_two: Option<u64>, archs: &str) -> Filter {
    let two = value_two.map_or(String::new(), |v| format!(r#", "valueTwo": {v}"#));
    let p = profile(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW", "architectures": [{archs}],
            "syscalls": [{{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7,
            "args": [{{"index": 2, "value": {value}{two}, "op": "{op}"}}]}}]}}"#
    ));
    let f = Filter::compile(&p).unwrap();
    validate(f.program()).unwrap();
    f
}

fn check(op: &str, value: u64, value_two: Option<u64>, cases: &[(u64, bool)]) {
    let f = filter(op, value, value_two, r#""SCMP_ARCH_X86_64""#);
    for &(arg, hit) in cases {
        let got = run(f.program(), &Data::x86_64(GETPID, &[0, 0, arg]));
        let want = if hit { HIT } else { ALLOW };
        assert_eq!(got, want, "{op} {value:#x} {value_two:?} on {arg:#x}");
        // Other arguments do not matter.
        let other = run(
            f.program(),
            &Data::x86_64(GETPID, &[arg, arg, arg, arg, arg, arg]),
        );
        assert_eq!(other, want);
        // Other syscalls are unaffected.
        assert_eq!(
            run(f.program(), &Data::x86_64(GETPID + 1, &[0, 0, arg])),
            ALLOW
        );
    }
}

const V: u64 = 0x0000_0001_8000_0000;

#[test]
fn eq() {
    check(
        "SCMP_CMP_EQ",
        V,
        None,
        &[
            (V, true),
            (0x8000_0000, false),           // same low word, high word differs
            (0x0000_0002_8000_0000, false), // high word differs by one
            (0x0000_0001_8000_0001, false), // low word differs
            (0, false),
            (u64::MAX, false),
        ],
    );
    check(
        "SCMP_CMP_EQ",
        0,
        None,
        &[(0, true), (1 << 32, false), (1, false)],
    );
    check(
        "SCMP_CMP_EQ",
        u64::MAX,
        None,
        &[(u64::MAX, true), (0xffff_ffff, false)],
    );
}

#[test]
fn ne() {
    check(
        "SCMP_CMP_NE",
        V,
        None,
        &[
            (V, false),
            (0x8000_0000, true),
            (0x0000_0001_8000_0001, true),
            (0x0000_0002_8000_0000, true),
        ],
    );
}

#[test]
fn gt_ge_lt_le() {
    let below = [
        0,
        0x8000_0000,
        0xffff_ffff,
        0x0000_0001_7fff_ffff,
        0x0000_0000_ffff_ffff,
    ];
    let above = [
        0x0000_0001_8000_0001,
        0x0000_0001_ffff_ffff,
        0x0000_0002_0000_0000,
        u64::MAX,
    ];
    let mk = |lt: bool, eq: bool, gt: bool| {
        let mut v: Vec<(u64, bool)> = below.iter().map(|&a| (a, lt)).collect();
        v.push((V, eq));
        v.extend(above.iter().map(|&a| (a, gt)));
        v
    };
    check("SCMP_CMP_GT", V, None, &mk(false, false, true));
    check("SCMP_CMP_GE", V, None, &mk(false, true, true));
    check("SCMP_CMP_LT", V, None, &mk(true, false, false));
    check("SCMP_CMP_LE", V, None, &mk(true, true, false));
}

#[test]
fn ordering_extremes() {
    check(
        "SCMP_CMP_GT",
        u64::MAX,
        None,
        &[(u64::MAX, false), (0, false)],
    );
    check("SCMP_CMP_GE", 0, None, &[(0, true), (u64::MAX, true)]);
    check("SCMP_CMP_LT", 0, None, &[(0, false), (u64::MAX, false)]);
    check(
        "SCMP_CMP_LE",
        u64::MAX,
        None,
        &[(0, true), (u64::MAX, true)],
    );
    check(
        "SCMP_CMP_LT",
        1 << 32,
        None,
        &[(0xffff_ffff, true), (1 << 32, false)],
    );
    check(
        "SCMP_CMP_GT",
        0xffff_ffff,
        None,
        &[(0xffff_ffff, false), (1 << 32, true)],
    );
}

#[test]
fn masked_eq() {
    // value = mask, valueTwo = datum.
    let mask = 0xff00_0000_0000_00ff;
    check(
        "SCMP_CMP_MASKED_EQ",
        mask,
        Some(0x1200_0000_0000_0034),
        &[
            (0x1234_5678_9abc_de34, true),
            (0x1200_0000_0000_0034, true),
            (0x1300_0000_0000_0034, false), // high word differs under the mask
            (0x1200_0000_0000_0035, false), // low word differs under the mask
            (0x0000_0000_0000_0034, false),
        ],
    );
    // Datum bits outside the mask are ignored (the datum is masked too).
    check(
        "SCMP_CMP_MASKED_EQ",
        0xf0,
        Some(0x3f),
        &[(0x30, true), (0x3f, true), (0x40, false)],
    );
    // Low-word-only and high-word-only masks.
    check(
        "SCMP_CMP_MASKED_EQ",
        0x7e02_0000,
        Some(0),
        &[
            (0x3d_0f00, true),
            (0x3d_0f00 | 0x1000_0000, false),
            (u64::MAX << 32, true),
        ],
    );
    check(
        "SCMP_CMP_MASKED_EQ",
        0xffff_ffff_0000_0000,
        Some(5 << 32),
        &[(5 << 32 | 0xffff_ffff, true), (6 << 32, false)],
    );
    // A zero mask always matches; valueTwo defaults to 0.
    check(
        "SCMP_CMP_MASKED_EQ",
        0,
        Some(1),
        &[(0, true), (u64::MAX, true)],
    );
    check("SCMP_CMP_MASKED_EQ", 1, None, &[(2, true), (3, false)]);
}

#[test]
fn i386_compares_low_words_only() {
    let f = filter(
        "SCMP_CMP_EQ",
        0x0000_0005_0000_0002,
        None,
        r#""SCMP_ARCH_X86""#,
    );
    let p = f.program();
    let i386 = |arg: u64| run(p, &Data::new(AUDIT_ARCH_I386, 20, &[0, 0, arg]));
    assert_eq!(i386(2), HIT);
    assert_eq!(i386(3), ALLOW);
    // The same rule on x86_64 compares both words.
    assert_eq!(run(p, &Data::x86_64(GETPID, &[0, 0, 2])), ALLOW);
    assert_eq!(
        run(p, &Data::x86_64(GETPID, &[0, 0, 0x0000_0005_0000_0002])),
        HIT
    );

    let f = filter(
        "SCMP_CMP_GT",
        0x0000_0001_0000_0010,
        None,
        r#""SCMP_ARCH_X86""#,
    );
    let i386 = |arg: u64| run(f.program(), &Data::new(AUDIT_ARCH_I386, 20, &[0, 0, arg]));
    assert_eq!(i386(0x11), HIT);
    assert_eq!(i386(0x10), ALLOW);
}

#[test]
fn x32_compares_full_words() {
    let f = filter("SCMP_CMP_EQ", V, None, r#""SCMP_ARCH_X32""#);
    let x32 = |arg: u64| run(f.program(), &Data::x86_64(X32 + GETPID, &[0, 0, arg]));
    assert_eq!(x32(V), HIT);
    assert_eq!(x32(V & 0xffff_ffff), ALLOW);
}

#[test]
fn conditions_in_one_entry_are_anded() {
    let p = profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getpid"],
            "action": "SCMP_ACT_KILL_PROCESS", "args": [
              {"index": 0, "value": 10, "op": "SCMP_CMP_GE"},
              {"index": 0, "value": 20, "op": "SCMP_CMP_LE"},
              {"index": 1, "value": 4, "valueTwo": 4, "op": "SCMP_CMP_MASKED_EQ"}]}]}"#,
    );
    let f = Filter::compile(&p).unwrap();
    let r = |a0: u64, a1: u64| run(f.program(), &Data::x86_64(GETPID, &[a0, a1]));
    assert_eq!(r(10, 4), KILL_PROCESS);
    assert_eq!(r(20, 0xfff), KILL_PROCESS);
    assert_eq!(r(15, 0), ALLOW);
    assert_eq!(r(9, 4), ALLOW);
    assert_eq!(r(21, 4), ALLOW);
    assert_eq!(r(15 | 1 << 32, 4), ALLOW);
}

#[test]
fn many_argument_rules_need_long_jumps() {
    // Enough rules on one syscall that jumps exceed the 255-instruction BPF limit.
    let entries: Vec<String> = (0..150u64)
        .map(|i| {
            format!(
                r#"{{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": {e},
                    "args": [{{"index": 1, "value": {v}, "op": "SCMP_CMP_EQ"}},
                             {{"index": 3, "value": {w}, "op": "SCMP_CMP_LT"}}]}}"#,
                e = i + 1,
                v = i << 32 | i,
                w = 1000 + i,
            )
        })
        .collect();
    let p = profile(&format!(
        r#"{{"defaultAction": "SCMP_ACT_LOG", "syscalls": [{}, {{"names": ["read"], "action": "SCMP_ACT_TRAP"}}]}}"#,
        entries.join(",")
    ));
    let f = Filter::compile(&p).unwrap();
    validate(f.program()).unwrap();
    assert!(f.program().len() > 1000);
    let p = f.program();
    for i in 0..150u64 {
        let d = Data::x86_64(GETPID, &[0, i << 32 | i, 0, 999]);
        assert_eq!(run(p, &d), errno(i as u32 + 1));
        let d = Data::x86_64(GETPID, &[0, i << 32 | i, 0, 1000 + i]);
        assert_eq!(run(p, &d), LOG);
        let d = Data::x86_64(GETPID, &[0, i, 0, 0]);
        assert_eq!(run(p, &d), if i == 0 { errno(1) } else { LOG });
    }
    assert_eq!(run(p, &Data::x86_64(0, &[])), TRAP);
    assert_eq!(run(p, &Data::x86_64(1, &[])), LOG);
}
