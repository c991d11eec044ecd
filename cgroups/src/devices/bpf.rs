//! The v2 device filter: a `BPF_PROG_TYPE_CGROUP_DEVICE` program emitted instruction by
//! instruction from a [`DeviceState`] (no libbpf, no compiler). The context is
//! `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`, where
//! `access_type` is `(access << 16) | type`; the program returns 1 to allow, 0 to deny.

use super::rules::{DevKind, DeviceState, Rule, RWM};

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    pub regs: u8,
    /// Jump offset or memory offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

// Opcode parts (linux/bpf_common.h, linux/bpf.h).
const BPF_LDX: u8 = 0x01;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_JEQ: u8 = 0x10;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

/// `BPF_DEVCG_DEV_BLOCK` / `BPF_DEVCG_DEV_CHAR`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

// Registers: r1 = ctx; r2 = type, r3 = access, r4 = major, r5 = minor; r1 is then scratch.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
    insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
}

fn alu32_k(op: u8, dst: u8, imm: i32) -> Insn {
    insn(BPF_ALU | op | BPF_K, dst, 0, 0, imm)
}

fn mov32_x(dst: u8, src: u8) -> Insn {
    insn(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)
}

fn exit() -> Insn {
    insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
}

/// One step of a rule's block: a plain instruction, or a conditional jump past the block's
/// end (its offset is known once the block is complete).
enum Step {
    Ins(Insn),
    SkipIfNeK(u8, i32),
    SkipIfNeX(u8, u8),
    SkipIfEqK(u8, i32),
}

/// The instructions testing one exception: fall through to "return verdict" when the request
/// matches, jump past it otherwise.
fn block(rule: &Rule, verdict: bool) -> Vec<Insn> {
    let mut steps = Vec::new();
    match rule.kind {
        DevKind::All => {}
        DevKind::Char => steps.push(Step::SkipIfNeK(R2, DEV_CHAR)),
        DevKind::Block => steps.push(Step::SkipIfNeK(R2, DEV_BLOCK)),
    }
    if rule.access != RWM {
        steps.push(Step::Ins(mov32_x(R1, R3)));
        steps.push(Step::Ins(alu32_k(BPF_AND, R1, i32::from(rule.access))));
        steps.push(if verdict {
            // An allow exception must grant every requested bit.
            Step::SkipIfNeX(R1, R3)
        } else {
            // A deny exception hits when it shares any requested bit.
            Step::SkipIfEqK(R1, 0)
        });
    }
    if let Some(m) = rule.major {
        steps.push(Step::SkipIfNeK(R4, m as i32));
    }
    if let Some(m) = rule.minor {
        steps.push(Step::SkipIfNeK(R5, m as i32));
    }
    // The block is the steps, then "mov r0, verdict; exit": a skip at i jumps to len.
    let len = steps.len() + 2;
    let mut out: Vec<Insn> = steps
        .into_iter()
        .enumerate()
        .map(|(i, step)| {
            let off = (len - i - 1) as i16;
            match step {
                Step::Ins(ins) => ins,
                Step::SkipIfNeK(r, k) => insn(BPF_JMP | BPF_JNE | BPF_K, r, 0, off, k),
                Step::SkipIfNeX(d, s) => insn(BPF_JMP | BPF_JNE | BPF_X, d, s, off, 0),
                Step::SkipIfEqK(r, k) => insn(BPF_JMP | BPF_JEQ | BPF_K, r, 0, off, k),
            }
        })
        .collect();
    out.push(alu32_k(BPF_MOV, R0, i32::from(verdict)));
    out.push(exit());
    out
}

/// The program for `state`: load the context, one block per exception (returning the
/// exception's verdict when it matches), then the default verdict.
pub fn program(state: &DeviceState) -> Vec<Insn> {
    let mut p = vec![
        ldx_w(R2, R1, 0),
        alu32_k(BPF_AND, R2, 0xffff),
        ldx_w(R3, R1, 0),
        alu32_k(BPF_RSH, R3, 16),
        ldx_w(R4, R1, 4),
        ldx_w(R5, R1, 8),
    ];
    for e in &state.exceptions {
        p.extend(block(e, !state.default_allow));
    }
    p.push(alu32_k(BPF_MOV, R0, i32::from(state.default_allow)));
    p.push(exit());
    p
}

/// Runs `prog` on a device context (the subset of eBPF [`program`] emits), for tests.
#[cfg(test)]
pub fn run(prog: &[Insn], access_type: u32, major: u32, minor: u32) -> u64 {
    let mut r = [0u64; 11];
    let ctx = [access_type, major, minor];
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        let (dst, src) = (usize::from(i.regs & 0xf), usize::from(i.regs >> 4));
        let imm = i64::from(i.imm) as u64;
        pc += 1;
        match i.code {
            0x61 => {
                assert_eq!(src, 1, "loads only from ctx");
                r[dst] = u64::from(ctx[(i.off / 4) as usize]);
            }
            0x54 => r[dst] = (r[dst] as u32 & i.imm as u32).into(),
            0x74 => r[dst] = ((r[dst] as u32) >> i.imm).into(),
            0xb4 => r[dst] = u64::from(i.imm as u32),
            0xbc => r[dst] = u64::from(r[src] as u32),
            0x55 => {
                if r[dst] != imm {
                    pc += i.off as usize;
                }
            }
            0x15 => {
                if r[dst] == imm {
                    pc += i.off as usize;
                }
            }
            0x5d => {
                if r[dst] != r[src] {
                    pc += i.off as usize;
                }
            }
            0x95 => return r[0],
            c => panic!("unexpected opcode {c:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::rules::{Access, MKNOD, READ, WRITE};
    use super::*;
    use proptest::prelude::*;

    fn ctx(kind: DevKind, access: Access) -> u32 {
        let t = match kind {
            DevKind::Block => 1,
            _ => 2,
        };
        (u32::from(access) << 16) | t
    }

    #[test]
    fn deny_all_but_null() {
        let s = DeviceState::from_rules(&[
            Rule::parse_v1("a *:* rwm")
                .map(|r| Rule { allow: false, ..r })
                .unwrap(),
            Rule::parse_v1("c 1:3 rw").unwrap(),
        ]);
        let p = program(&s);
        assert_eq!(run(&p, ctx(DevKind::Char, READ | WRITE), 1, 3), 1);
        assert_eq!(run(&p, ctx(DevKind::Char, MKNOD), 1, 3), 0);
        assert_eq!(run(&p, ctx(DevKind::Block, READ), 1, 3), 0);
        assert_eq!(run(&p, ctx(DevKind::Block, READ), 8, 0), 0);
    }

    fn arb_rule() -> impl Strategy<Value = Rule> {
        (
            any::<bool>(),
            prop_oneof![1 => Just(DevKind::All), 4 => Just(DevKind::Char), 4 => Just(DevKind::Block)],
            prop::option::of(0u32..4),
            prop::option::of(0u32..4),
            1u8..=7,
        )
            .prop_map(|(allow, kind, major, minor, access)| Rule {
                allow,
                kind,
                major,
                minor,
                access,
            })
    }

    proptest! {
        /// The program decides exactly as the folded rule list (and so as the v1 kernel).
        #[test]
        fn program_matches_rules(rules in prop::collection::vec(arb_rule(), 0..12),
                                 kind in prop_oneof![Just(DevKind::Char), Just(DevKind::Block)],
                                 major in 0u32..5, minor in 0u32..5, access in 1u8..=7) {
            let s = DeviceState::from_rules(&rules);
            let p = program(&s);
            let got = run(&p, ctx(kind, access), major, minor) == 1;
            prop_assert_eq!(got, s.allows(kind, major, minor, access));
        }

        /// Jumps stay inside the program and every path ends in exit.
        #[test]
        fn jumps_in_bounds(rules in prop::collection::vec(arb_rule(), 0..20)) {
            let p = program(&DeviceState::from_rules(&rules));
            for (i, ins) in p.iter().enumerate() {
                if matches!(ins.code, 0x55 | 0x15 | 0x5d) {
                    let target = i as i64 + 1 + i64::from(ins.off);
                    prop_assert!(target > i as i64 && (target as usize) < p.len());
                }
            }
            prop_assert_eq!(p.last().unwrap().code, 0x95);
        }
    }
}
