//! The OCI profile validated and resolved into per-ABI rule tables.
//!
//! Rule-merging follows what runc does on top of libseccomp, so profiles behave
//! the same under berth:
//!
//! - A rule whose action equals the default action is dropped (libseccomp rejects
//!   it; runc skips it). Its syscalls still count for the `ENOSYS` cut-off.
//! - Per syscall, an unconditional rule wins over everything: the first one seen
//!   replaces earlier conditional rules, and later rules for that syscall are
//!   ignored (libseccomp's `db_rule_add`).
//! - Conditional rules for one syscall are tried in profile order and the first
//!   whose conditions all hold decides.
//!   libseccomp merges them into a decision tree instead; the two agree unless
//!   rules with different actions overlap.

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

use crate::syscalls::Abi;
use crate::Error;

/// `EPERM`: the errno (and trace data) when a profile gives none.
const DEFAULT_ERRNO: u16 = 1;
/// `ENOSYS`.
pub(crate) const ENOSYS: u16 = 38;

/// A resolved seccomp action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    KillThread,
    KillProcess,
    Trap,
    Errno(u16),
    Trace(u16),
    Allow,
    Log,
    Notify,
}

impl Action {
    /// The `SECCOMP_RET_*` value returned by the filter.
    pub(crate) fn ret(self) -> u32 {
        match self {
            Action::KillThread => libc::SECCOMP_RET_KILL_THREAD,
            Action::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
            Action::Trap => libc::SECCOMP_RET_TRAP,
            Action::Errno(e) => libc::SECCOMP_RET_ERRNO | u32::from(e),
            Action::Trace(d) => libc::SECCOMP_RET_TRACE | u32::from(d),
            Action::Allow => libc::SECCOMP_RET_ALLOW,
            Action::Log => libc::SECCOMP_RET_LOG,
            Action::Notify => libc::SECCOMP_RET_USER_NOTIF,
        }
    }

    /// Whether the action lets the syscall run (or hands it to a tracer/agent that may).
    fn is_permissive(self) -> bool {
        matches!(
            self,
            Action::Allow | Action::Log | Action::Trace(_) | Action::Notify
        )
    }
}

/// The libseccomp name of an action.
pub(crate) fn action_name(a: LinuxSeccompAction) -> &'static str {
    match a {
        LinuxSeccompAction::ScmpActKill => "SCMP_ACT_KILL",
        LinuxSeccompAction::ScmpActKillThread => "SCMP_ACT_KILL_THREAD",
        LinuxSeccompAction::ScmpActKillProcess => "SCMP_ACT_KILL_PROCESS",
        LinuxSeccompAction::ScmpActTrap => "SCMP_ACT_TRAP",
        LinuxSeccompAction::ScmpActErrno => "SCMP_ACT_ERRNO",
        LinuxSeccompAction::ScmpActNotify => "SCMP_ACT_NOTIFY",
        LinuxSeccompAction::ScmpActTrace => "SCMP_ACT_TRACE",
        LinuxSeccompAction::ScmpActLog => "SCMP_ACT_LOG",
        LinuxSeccompAction::ScmpActAllow => "SCMP_ACT_ALLOW",
    }
}

/// Resolves `action` with its optional errno; `errno_field` names the errno field.
fn resolve_action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    errno_field: impl Fn() -> String,
) -> Result<Action, Error> {
    let data = match errno_ret {
        None => DEFAULT_ERRNO,
        Some(v) => match action {
            LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace => u16::try_from(v)
                .map_err(|_| Error::ErrnoOutOfRange {
                    field: errno_field(),
                    value: v,
                })?,
            other => {
                return Err(Error::ErrnoNotSupported {
                    field: errno_field(),
                    action: action_name(other),
                })
            }
        },
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            Action::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => Action::KillProcess,
        LinuxSeccompAction::ScmpActTrap => Action::Trap,
        LinuxSeccompAction::ScmpActErrno => Action::Errno(data),
        LinuxSeccompAction::ScmpActTrace => Action::Trace(data),
        LinuxSeccompAction::ScmpActAllow => Action::Allow,
        LinuxSeccompAction::ScmpActLog => Action::Log,
        LinuxSeccompAction::ScmpActNotify => Action::Notify,
    })
}

/// A comparison on one syscall argument (64-bit values, as in the profile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Ne(u64),
    Lt(u64),
    Le(u64),
    Eq(u64),
    Ge(u64),
    Gt(u64),
    /// `(arg & mask) == (datum & mask)`.
    MaskedEq {
        mask: u64,
        datum: u64,
    },
}

/// One argument condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cond {
    /// Argument index, 0..=5.
    pub(crate) arg: u8,
    pub(crate) op: Op,
}

fn resolve_cond(a: &LinuxSeccompArg, field: &str) -> Result<Cond, Error> {
    let arg = u8::try_from(a.index())
        .ok()
        .filter(|&i| i < 6)
        .ok_or_else(|| Error::ArgIndexOutOfRange {
            field: format!("{field}.index"),
            index: a.index(),
        })?;
    let v = a.value();
    let op = match a.op() {
        LinuxSeccompOperator::ScmpCmpNe => Op::Ne(v),
        LinuxSeccompOperator::ScmpCmpLt => Op::Lt(v),
        LinuxSeccompOperator::ScmpCmpLe => Op::Le(v),
        LinuxSeccompOperator::ScmpCmpEq => Op::Eq(v),
        LinuxSeccompOperator::ScmpCmpGe => Op::Ge(v),
        LinuxSeccompOperator::ScmpCmpGt => Op::Gt(v),
        LinuxSeccompOperator::ScmpCmpMaskedEq => Op::MaskedEq {
            mask: v,
            datum: a.value_two().unwrap_or(0),
        },
    };
    Ok(Cond { arg, op })
}

/// A conditional rule: all `conds` hold → `action`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) conds: Vec<Cond>,
    pub(crate) action: Action,
}

/// What the filter does for one syscall number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SyscallRules {
    /// Always this action.
    Always(Action),
    /// The first matching rule's action, else the default action.
    Conditional(Vec<Rule>),
}

/// Rules for one ABI.
#[derive(Debug, Default)]
pub(crate) struct AbiRules {
    /// Whether the profile lists this ABI (x86-64 is always enabled).
    pub(crate) enabled: bool,
    /// Rules by syscall number.
    pub(crate) syscalls: BTreeMap<u32, SyscallRules>,
    /// The highest syscall number the profile names on this ABI (any action).
    pub(crate) max_named: Option<u32>,
}

/// A validated profile.
#[derive(Debug)]
pub(crate) struct Policy {
    pub(crate) default: Action,
    /// Indexed by [`Abi::index`].
    pub(crate) abis: [AbiRules; 3],
    /// `SECCOMP_FILTER_FLAG_*` bits requested by the profile.
    pub(crate) flags: u32,
    /// Returned for syscall numbers above every syscall the profile names
    /// (runc's `-ENOSYS` stub), if enabled and the default action denies.
    pub(crate) unknown_syscall: Option<Action>,
}

impl Policy {
    /// Validates `profile` and resolves syscall names for the listed ABIs.
    pub(crate) fn new(profile: &LinuxSeccomp, enosys_for_unknown: bool) -> Result<Self, Error> {
        let default = resolve_action(
            profile.default_action(),
            profile.default_errno_ret(),
            || "linux.seccomp.defaultErrnoRet".to_owned(),
        )?;
        if default == Action::Notify {
            return Err(Error::UnsupportedAction {
                field: "linux.seccomp.defaultAction".into(),
                action: "SCMP_ACT_NOTIFY",
                reason: "it cannot be the default action",
            });
        }

        let mut abis: [AbiRules; 3] = Default::default();
        abis[Abi::X86_64.index()].enabled = true;
        for arch in profile.architectures().iter().flatten() {
            match arch {
                Arch::ScmpArchNative | Arch::ScmpArchX86_64 => {}
                Arch::ScmpArchX86 => abis[Abi::X86.index()].enabled = true,
                Arch::ScmpArchX32 => abis[Abi::X32.index()].enabled = true,
                other => tracing::debug!(
                    arch = %other,
                    "seccomp: architecture cannot occur on an x86_64 host; ignored"
                ),
            }
        }

        let mut flags = 0;
        for flag in profile.flags().iter().flatten() {
            flags |= flag_bit(*flag);
        }

        for (i, sc) in profile.syscalls().iter().flatten().enumerate() {
            let field = format!("linux.seccomp.syscalls[{i}]");
            if sc.names().is_empty() {
                return Err(Error::EmptyNames {
                    field: format!("{field}.names"),
                });
            }
            let action =
                resolve_action(sc.action(), sc.errno_ret(), || format!("{field}.errnoRet"))?;
            let conds = sc
                .args()
                .iter()
                .flatten()
                .enumerate()
                .map(|(j, a)| resolve_cond(a, &format!("{field}.args[{j}]")))
                .collect::<Result<Vec<_>, _>>()?;
            // runc skips rules that repeat the default action.
            let keep = action.ret() != default.ret();

            for name in sc.names() {
                let mut known = false;
                for abi in Abi::ALL {
                    let rules = &mut abis[abi.index()];
                    if !rules.enabled {
                        continue;
                    }
                    let Some(nr) = abi.syscall_nr(name) else {
                        continue;
                    };
                    known = true;
                    rules.max_named = Some(rules.max_named.map_or(nr, |m| m.max(nr)));
                    if keep {
                        add_rule(&mut rules.syscalls, nr, &conds, action);
                    }
                }
                if !known {
                    tracing::debug!(syscall = %name, "seccomp: unknown syscall skipped");
                }
            }
        }

        let unknown_syscall =
            (enosys_for_unknown && !default.is_permissive() && default != Action::Errno(ENOSYS))
                .then_some(Action::Errno(ENOSYS));

        Ok(Policy {
            default,
            abis,
            flags,
            unknown_syscall,
        })
    }

    /// Whether any rule that made it into the tables returns `SECCOMP_RET_USER_NOTIF`.
    pub(crate) fn uses_notify(&self) -> bool {
        self.abis
            .iter()
            .filter(|a| a.enabled)
            .flat_map(|a| a.syscalls.values())
            .any(|r| match r {
                SyscallRules::Always(a) => *a == Action::Notify,
                SyscallRules::Conditional(rules) => {
                    rules.iter().any(|r| r.action == Action::Notify)
                }
            })
    }
}

/// Adds one rule for `nr` with libseccomp's merging (see the module docs).
fn add_rule(map: &mut BTreeMap<u32, SyscallRules>, nr: u32, conds: &[Cond], action: Action) {
    use std::collections::btree_map::Entry;
    match map.entry(nr) {
        Entry::Vacant(v) => {
            v.insert(if conds.is_empty() {
                SyscallRules::Always(action)
            } else {
                SyscallRules::Conditional(vec![Rule {
                    conds: conds.to_vec(),
                    action,
                }])
            });
        }
        Entry::Occupied(mut o) => match o.get_mut() {
            SyscallRules::Always(_) => {}
            SyscallRules::Conditional(rules) => {
                if conds.is_empty() {
                    *o.get_mut() = SyscallRules::Always(action);
                } else {
                    rules.push(Rule {
                        conds: conds.to_vec(),
                        action,
                    });
                }
            }
        },
    }
}

/// The `SECCOMP_FILTER_FLAG_*` bit for a profile flag.
pub(crate) fn flag_bit(flag: LinuxSeccompFilterFlag) -> u32 {
    let bit = match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
            libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
        }
    };
    bit as u32
}
