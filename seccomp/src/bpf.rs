//! A small classic-BPF emitter that builds programs back to front.
//!
//! Classic BPF only jumps forward, and conditional jumps reach at most 255
//! instructions. Emitting the program in reverse makes every jump target known
//! before the jump itself is written: when a target is out of reach, the emitter
//! first writes a trampoline next to the jump (a copy of the `ret` for return
//! targets, a `ja` with a 32-bit offset otherwise) and jumps to that instead.
//! `ret` instructions are shared between all jumps within reach.

use libc::sock_filter;

/// `BPF_LD | BPF_W | BPF_ABS`: `A = *(u32 *)(data + k)`.
pub(crate) const LD_W_ABS: u16 = 0x20;
/// `BPF_ALU | BPF_AND | BPF_K`: `A &= k`.
pub(crate) const ALU_AND_K: u16 = 0x54;
/// `BPF_JMP | BPF_JA`.
pub(crate) const JMP_JA: u16 = 0x05;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
pub(crate) const JMP_JEQ_K: u16 = 0x15;
/// `BPF_JMP | BPF_JGT | BPF_K`.
pub(crate) const JMP_JGT_K: u16 = 0x25;
/// `BPF_JMP | BPF_JGE | BPF_K`.
pub(crate) const JMP_JGE_K: u16 = 0x35;
/// `BPF_RET | BPF_K`.
pub(crate) const RET_K: u16 = 0x06;

/// `BPF_MAXINSNS`: the kernel rejects longer programs.
pub(crate) const MAX_INSNS: usize = 4096;

/// Offset of `seccomp_data.nr`.
pub(crate) const OFF_NR: u32 = 0;
/// Offset of `seccomp_data.arch`.
pub(crate) const OFF_ARCH: u32 = 4;
/// Offset of the low 32 bits of `seccomp_data.args[i]` (little endian).
pub(crate) fn off_arg_lo(i: u8) -> u32 {
    16 + 8 * u32::from(i)
}
/// Offset of the high 32 bits of `seccomp_data.args[i]` (little endian).
pub(crate) fn off_arg_hi(i: u8) -> u32 {
    off_arg_lo(i) + 4
}

/// Where control goes: a `ret` with the given value, or an already emitted instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `ret k` (shared or copied as needed).
    Ret(u32),
    /// The instruction at this index of the reversed program.
    At(usize),
}

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// Builds a program back to front; see the module docs.
pub(crate) struct Emitter {
    /// Instructions in reverse order: index 0 is the last instruction of the program.
    rev: Vec<sock_filter>,
    /// The most recently emitted `ret` for each return value.
    rets: Vec<(u32, usize)>,
}

impl Emitter {
    pub(crate) fn new() -> Self {
        Emitter {
            rev: Vec::with_capacity(512),
            rets: Vec::with_capacity(8),
        }
    }

    /// Distance (the jump offset) from the next instruction to be emitted to `at`.
    fn distance(&self, at: usize) -> usize {
        self.rev.len() - at - 1
    }

    fn push(&mut self, i: sock_filter) -> usize {
        self.rev.push(i);
        self.rev.len() - 1
    }

    /// Emits `ret value`.
    pub(crate) fn ret(&mut self, value: u32) -> Target {
        let at = self.push(insn(RET_K, 0, 0, value));
        match self.rets.iter_mut().find(|(v, _)| *v == value) {
            Some(slot) => slot.1 = at,
            None => self.rets.push((value, at)),
        }
        Target::At(at)
    }

    /// An instruction index for `target` that the next instruction can reach
    /// with a conditional jump, emitting a trampoline if needed.
    fn reachable(&mut self, target: Target) -> usize {
        match target {
            Target::Ret(value) => match self.rets.iter().find(|(v, _)| *v == value) {
                Some(&(_, at)) if self.distance(at) <= 255 => at,
                _ => self.bridge(target),
            },
            Target::At(at) if self.distance(at) <= 255 => at,
            Target::At(_) => self.bridge(target),
        }
    }

    /// Emits a one-instruction hop to `target` right here.
    fn bridge(&mut self, target: Target) -> usize {
        match target {
            Target::Ret(value) => match self.ret(value) {
                Target::At(at) => at,
                Target::Ret(_) => unreachable!("ret() returns an emitted instruction"),
            },
            Target::At(at) => {
                let off = u32::try_from(self.distance(at)).expect("program length fits in u32");
                self.push(insn(JMP_JA, 0, 0, off))
            }
        }
    }

    /// Makes the next emitted instruction fall through to `next`: if `next` is not
    /// the instruction emitted last, a hop to it is emitted first.
    fn fall_through_to(&mut self, next: Target) {
        let adjacent = matches!(next, Target::At(at) if at + 1 == self.rev.len());
        if !adjacent {
            self.bridge(next);
        }
    }

    /// Emits a non-jump statement (`code`, `k`) that continues at `next`.
    pub(crate) fn stmt(&mut self, code: u16, k: u32, next: Target) -> Target {
        self.fall_through_to(next);
        Target::At(self.push(insn(code, 0, 0, k)))
    }

    /// Emits a conditional jump `code` with constant `k`. If both branches go to the
    /// same place, nothing is emitted and that place is returned.
    pub(crate) fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) -> Target {
        if jt == jf {
            return jt;
        }
        let mut t = self.reachable(jt);
        let mut f = self.reachable(jf);
        // Emitting a trampoline for one side moves the other one a step further away.
        loop {
            if self.distance(t) > 255 {
                t = self.bridge(jt);
            } else if self.distance(f) > 255 {
                f = self.bridge(jf);
            } else {
                break;
            }
        }
        let (dt, df) = (self.distance(t) as u8, self.distance(f) as u8);
        Target::At(self.push(insn(code, dt, df, k)))
    }

    /// The program in execution order, with `entry` as its first instruction.
    pub(crate) fn finish(mut self, entry: Target) -> Vec<sock_filter> {
        self.fall_through_to(entry);
        self.rev.reverse();
        self.rev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Follows the program for a given accumulator value (no loads in these tests).
    fn run(prog: &[sock_filter], a: u32) -> u32 {
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                RET_K => return i.k,
                JMP_JA => pc += i.k as usize,
                JMP_JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                JMP_JGE_K => pc += usize::from(if a >= i.k { i.jt } else { i.jf }),
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn far_targets_get_trampolines() {
        let mut e = Emitter::new();
        let far = e.ret(7);
        // 600 distinct jumps between the entry and `far`.
        let mut next = Target::Ret(1);
        for k in 0..600u32 {
            next = e.jump(JMP_JEQ_K, k + 1000, Target::Ret(k + 10_000), next);
        }
        let entry = e.jump(JMP_JEQ_K, 5, far, next);
        let prog = e.finish(entry);
        assert!(prog.len() < 2000);
        assert_eq!(run(&prog, 5), 7);
        assert_eq!(run(&prog, 1000), 10_000);
        assert_eq!(run(&prog, 1599), 10_599);
        assert_eq!(run(&prog, 3), 1);
    }

    #[test]
    fn equal_branches_emit_nothing() {
        let mut e = Emitter::new();
        let t = e.jump(JMP_JEQ_K, 1, Target::Ret(3), Target::Ret(3));
        assert_eq!(t, Target::Ret(3));
        assert!(e.rev.is_empty());
        let prog = e.finish(t);
        assert_eq!(prog.len(), 1);
        assert_eq!(run(&prog, 0), 3);
    }
}
