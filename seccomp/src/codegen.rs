//! [`Policy`] → classic BPF.
//!
//! Program layout (in execution order):
//!
//! ```text
//!     ld  seccomp_data.arch
//!     jeq AUDIT_ARCH_X86_64 → X86_64, else next
//!     jeq AUDIT_ARCH_I386   → I386,   else BAD_ARCH     (only if SCMP_ARCH_X86 is listed)
//!     ret BAD_ARCH                                       (SECCOMP_RET_KILL_PROCESS)
//! X86_64:
//!     ld  seccomp_data.nr
//!     binary search over number intervals → ret ACTION | argument block
//! I386:
//!     ld  seccomp_data.nr
//!     binary search ...
//! ```
//!
//! The syscall numbers of an ABI are partitioned into intervals with the same
//! outcome (a `ret`, or an argument-checking block for one syscall); gaps get the
//! default action. The x86-64 search also covers `nr >= __X32_SYSCALL_BIT`: those
//! intervals hold the x32 rules when `SCMP_ARCH_X32` is listed and `BAD_ARCH`
//! otherwise. A lookup therefore costs about log2(intervals) jumps, and the
//! program has roughly one instruction per interval plus the argument blocks.
//!
//! Arguments are compared as libseccomp does on 64-bit ABIs: high word first, then
//! the low word (see [`emit_cond`]).

use libc::sock_filter;

use crate::bpf::{
    off_arg_hi, off_arg_lo, Emitter, Target, ALU_AND_K, JMP_JEQ_K, JMP_JGE_K, JMP_JGT_K, LD_W_ABS,
    MAX_INSNS, OFF_ARCH, OFF_NR,
};
use crate::policy::{Action, Cond, Op, Policy, Rule, SyscallRules};
use crate::syscalls::{Abi, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use crate::Error;

/// What a syscall from an ABI the profile does not list gets.
pub(crate) const BAD_ARCH: Action = Action::KillProcess;

/// The outcome for a range of syscall numbers.
#[derive(Clone, Copy, Debug)]
enum Outcome<'a> {
    Ret(u32),
    Rules(&'a [Rule]),
}

/// Intervals `(first_nr, outcome)`, sorted, the first starting at 0; each runs
/// up to the next one's start.
struct Intervals<'a>(Vec<(u32, Outcome<'a>)>);

impl<'a> Intervals<'a> {
    fn new(default: u32) -> Self {
        let mut v = Vec::with_capacity(256);
        v.push((0, Outcome::Ret(default)));
        Intervals(v)
    }

    /// Starts a new interval at `start` (>= every start so far).
    fn push(&mut self, start: u32, outcome: Outcome<'a>) {
        let v = &mut self.0;
        if v.last().is_some_and(|&(s, _)| s == start) {
            v.pop();
        }
        if let (Some(&(_, Outcome::Ret(prev))), Outcome::Ret(new)) = (v.last(), outcome) {
            if prev == new {
                return;
            }
        }
        v.push((start, outcome));
    }

    /// Adds the rules of one ABI; every number must be >= `base`.
    fn add_abi(&mut self, policy: &'a Policy, abi: Abi, base: u32) {
        let rules = &policy.abis[abi.index()];
        let default = policy.default.ret();
        self.push(base, Outcome::Ret(default));
        for (&nr, r) in &rules.syscalls {
            let outcome = match r {
                SyscallRules::Always(a) => Outcome::Ret(a.ret()),
                SyscallRules::Conditional(rules) => Outcome::Rules(rules),
            };
            self.push(nr, outcome);
            self.push(nr + 1, Outcome::Ret(default));
        }
        if let (Some(max), Some(unknown)) = (rules.max_named, policy.unknown_syscall) {
            self.push(max + 1, Outcome::Ret(unknown.ret()));
        }
    }
}

/// Compiles `policy` to a BPF program.
pub(crate) fn generate(policy: &Policy) -> Result<Vec<sock_filter>, Error> {
    let bad_arch = Target::Ret(BAD_ARCH.ret());
    let mut em = Emitter::new();

    let i386 = if policy.abis[Abi::X86.index()].enabled {
        let mut iv = Intervals::new(policy.default.ret());
        iv.add_abi(policy, Abi::X86, 0);
        abi_entry(&mut em, &iv, Abi::X86.wide_args(), policy)
    } else {
        bad_arch
    };

    let mut iv = Intervals::new(policy.default.ret());
    iv.add_abi(policy, Abi::X86_64, 0);
    if policy.abis[Abi::X32.index()].enabled {
        iv.add_abi(policy, Abi::X32, X32_SYSCALL_BIT);
    } else {
        iv.push(X32_SYSCALL_BIT, Outcome::Ret(BAD_ARCH.ret()));
    }
    let x86_64 = abi_entry(&mut em, &iv, Abi::X86_64.wide_args(), policy);

    let not_x86_64 = em.jump(JMP_JEQ_K, AUDIT_ARCH_I386, i386, bad_arch);
    let dispatch = em.jump(JMP_JEQ_K, AUDIT_ARCH_X86_64, x86_64, not_x86_64);
    let entry = em.stmt(LD_W_ABS, OFF_ARCH, dispatch);

    let program = em.finish(entry);
    if program.len() > MAX_INSNS {
        return Err(Error::TooLarge {
            len: program.len(),
            max: MAX_INSNS,
        });
    }
    Ok(program)
}

/// Emits the number search for one arch value; returns its entry point.
fn abi_entry(em: &mut Emitter, iv: &Intervals<'_>, wide: bool, policy: &Policy) -> Target {
    let root = search(em, &iv.0, wide, policy.default.ret());
    match root {
        Target::Ret(_) => root,
        Target::At(_) => em.stmt(LD_W_ABS, OFF_NR, root),
    }
}

/// Binary search over `iv` (the accumulator holds `nr`).
fn search(em: &mut Emitter, iv: &[(u32, Outcome<'_>)], wide: bool, default: u32) -> Target {
    if let [(_, outcome)] = iv {
        return match *outcome {
            Outcome::Ret(v) => Target::Ret(v),
            Outcome::Rules(rules) => emit_rules(em, rules, wide, default),
        };
    }
    let mid = iv.len() / 2;
    // Back to front: the upper half ends up after the lower half.
    let upper = search(em, &iv[mid..], wide, default);
    let lower = search(em, &iv[..mid], wide, default);
    em.jump(JMP_JGE_K, iv[mid].0, upper, lower)
}

/// First matching rule wins; no match → `default`.
fn emit_rules(em: &mut Emitter, rules: &[Rule], wide: bool, default: u32) -> Target {
    let mut next = Target::Ret(default);
    for rule in rules.iter().rev() {
        let mut on_match = Target::Ret(rule.action.ret());
        for cond in rule.conds.iter().rev() {
            on_match = emit_cond(em, *cond, wide, on_match, next);
        }
        next = on_match;
    }
    next
}

fn hi(v: u64) -> u32 {
    (v >> 32) as u32
}

fn lo(v: u64) -> u32 {
    v as u32
}

/// `ld word; jop k → yes | no`.
fn cmp_word(em: &mut Emitter, off: u32, jop: u16, k: u32, yes: Target, no: Target) -> Target {
    if yes == no {
        return yes;
    }
    let j = em.jump(jop, k, yes, no);
    em.stmt(LD_W_ABS, off, j)
}

/// `ld word; and mask; jeq k → yes | no`.
fn masked_word(em: &mut Emitter, off: u32, mask: u32, k: u32, yes: Target, no: Target) -> Target {
    if yes == no {
        return yes;
    }
    let j = em.jump(JMP_JEQ_K, k, yes, no);
    let and = em.stmt(ALU_AND_K, mask, j);
    em.stmt(LD_W_ABS, off, and)
}

/// 64-bit `arg > v` (`jop` = `jgt`) or `arg >= v` (`jop` = `jge`):
///
/// ```text
///     ld  hi;  jgt hi(v) → yes | next;  jeq hi(v) → next | no
///     ld  lo;  jop lo(v) → yes | no
/// ```
fn gt_ge64(em: &mut Emitter, arg: u8, jop: u16, v: u64, yes: Target, no: Target) -> Target {
    if yes == no {
        return yes;
    }
    let low = cmp_word(em, off_arg_lo(arg), jop, lo(v), yes, no);
    let hi_eq = em.jump(JMP_JEQ_K, hi(v), low, no);
    let hi_gt = em.jump(JMP_JGT_K, hi(v), yes, hi_eq);
    em.stmt(LD_W_ABS, off_arg_hi(arg), hi_gt)
}

/// Emits the check of `cond`, continuing at `yes` if it holds and at `no` if not.
///
/// On 64-bit ABIs (`wide`) both words are compared: EQ/NE need both words equal;
/// GT/GE decide on the high word unless it is equal, then on the low word; LT and
/// LE are the negations of GE and GT; `MASKED_EQ` checks each word under its half of
/// the mask, skipping a word whose mask half is zero. On i386 only the low words
/// of the argument and of the values are compared.
fn emit_cond(em: &mut Emitter, cond: Cond, wide: bool, yes: Target, no: Target) -> Target {
    let a = cond.arg;
    let (lo_off, hi_off) = (off_arg_lo(a), off_arg_hi(a));
    if !wide {
        return match cond.op {
            Op::Eq(v) => cmp_word(em, lo_off, JMP_JEQ_K, lo(v), yes, no),
            Op::Ne(v) => cmp_word(em, lo_off, JMP_JEQ_K, lo(v), no, yes),
            Op::Gt(v) => cmp_word(em, lo_off, JMP_JGT_K, lo(v), yes, no),
            Op::Ge(v) => cmp_word(em, lo_off, JMP_JGE_K, lo(v), yes, no),
            Op::Lt(v) => cmp_word(em, lo_off, JMP_JGE_K, lo(v), no, yes),
            Op::Le(v) => cmp_word(em, lo_off, JMP_JGT_K, lo(v), no, yes),
            Op::MaskedEq { mask, datum } => {
                if lo(mask) == 0 {
                    yes
                } else {
                    masked_word(em, lo_off, lo(mask), lo(datum & mask), yes, no)
                }
            }
        };
    }
    match cond.op {
        Op::Eq(v) => {
            let low = cmp_word(em, lo_off, JMP_JEQ_K, lo(v), yes, no);
            cmp_word(em, hi_off, JMP_JEQ_K, hi(v), low, no)
        }
        Op::Ne(v) => {
            let low = cmp_word(em, lo_off, JMP_JEQ_K, lo(v), no, yes);
            cmp_word(em, hi_off, JMP_JEQ_K, hi(v), low, yes)
        }
        Op::Gt(v) => gt_ge64(em, a, JMP_JGT_K, v, yes, no),
        Op::Ge(v) => gt_ge64(em, a, JMP_JGE_K, v, yes, no),
        Op::Lt(v) => gt_ge64(em, a, JMP_JGE_K, v, no, yes),
        Op::Le(v) => gt_ge64(em, a, JMP_JGT_K, v, no, yes),
        Op::MaskedEq { mask, datum } => {
            let want = datum & mask;
            let low = if lo(mask) == 0 {
                yes
            } else {
                masked_word(em, lo_off, lo(mask), lo(want), yes, no)
            };
            if hi(mask) == 0 {
                low
            } else {
                masked_word(em, hi_off, hi(mask), hi(want), low, no)
            }
        }
    }
}
