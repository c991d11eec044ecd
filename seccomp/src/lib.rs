//! OCI seccomp profiles compiled to classic BPF in pure Rust (no libseccomp).
//!
//! [`Filter::compile`] turns the `linux.seccomp` section of a runtime config into a
//! seccomp BPF program and [`Filter::install`] loads it with seccomp(2).
//!
//! # Why not seccompiler
//!
//! seccompiler 0.5 gives a filter one match action and one mismatch action, has no
//! `SECCOMP_RET_USER_NOTIF`, checks only the native arch value (so x32 syscalls,
//! which arrive as `AUDIT_ARCH_X86_64` with bit 30 set in the number, would be
//! matched against the x86-64 table), and keeps its syscall table private. OCI
//! profiles need a different action per rule, per-rule errno values, NOTIFY,
//! several ABIs and 64-bit argument compares. Post-processing its output would
//! cost more code than the small emitter here, so this crate emits BPF itself (the
//! `bpf` module builds programs back to front, so long jumps are handled in one pass;
//! `codegen` turns rules into a binary search over syscall-number intervals).
//!
//! # Semantics
//!
//! - **Actions**: `SCMP_ACT_KILL` (= `KILL_THREAD`), `KILL_PROCESS`, `KILL_THREAD`,
//!   `TRAP`, `ERRNO` (`errnoRet`, default `EPERM`), `TRACE` (`errnoRet` is the
//!   trace data, default `EPERM`), `ALLOW`, `LOG`, `NOTIFY`. `errnoRet` or
//!   `defaultErrnoRet` on any other action is an error, as the spec requires.
//!   `SCMP_ACT_NOTIFY` cannot be the default action.
//! - **Operators**: `SCMP_CMP_NE`, `LT`, `LE`, `EQ`, `GE`, `GT` compare the full
//!   64-bit argument; `SCMP_CMP_MASKED_EQ` is `(arg & value) == (valueTwo & value)`.
//!   The conditions of one `syscalls[]` entry must all hold.
//! - **Rule merging** follows runc + libseccomp; see the `policy` module.
//! - **Syscall names** unknown on every compiled ABI are skipped (`tracing::debug!`).
//! - **Architectures**: rule tables are compiled for x86-64 (always, as libseccomp
//!   always includes the native arch), plus i386 (`SCMP_ARCH_X86`) and x32
//!   (`SCMP_ARCH_X32`) when listed. A syscall from any other ABI, including an
//!   x32 or i386 syscall when that ABI is not listed, gets `SECCOMP_RET_KILL_PROCESS`.
//!   Other architectures in the list (ARM, MIPS, ...) are accepted and ignored:
//!   an x86-64 kernel never reports them. On i386 only the low 32 bits of
//!   arguments and values are compared (as libseccomp does); x32 compares all 64
//!   bits, since x32 syscalls run with 64-bit registers (libseccomp: low word only).
//! - **Unknown syscalls get `ENOSYS`** (like runc): when the default action denies
//!   (`ERRNO` with an errno other than `ENOSYS`, `KILL*`, `TRAP`), syscall numbers
//!   above the highest one the profile names on that ABI return `ENOSYS`, so a new
//!   libc can fall back from syscalls the profile predates (e.g. `fchmodat2`,
//!   `clone3`). Turn it off with [`CompileOptions::enosys_for_unknown_syscalls`].
//! - **Flags**: the profile's `SECCOMP_FILTER_FLAG_*`; `NEW_LISTENER` is added when
//!   a NOTIFY rule made it into the program, `TSYNC_ESRCH` when `TSYNC` and
//!   `NEW_LISTENER` are combined (the kernel refuses the pair otherwise), and
//!   `WAIT_KILLABLE_RECV` is dropped without `NEW_LISTENER` (the kernel refuses it).

mod bpf;
mod codegen;
mod error;
mod install;
mod policy;
mod syscalls;

use std::os::fd::OwnedFd;

pub mod cache;
pub use error::Error;
pub use libc::sock_filter;
use oci_spec::runtime::LinuxSeccomp;

/// Knobs for [`Filter::compile_with`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct CompileOptions {
    /// Return `ENOSYS` for syscall numbers above every syscall the profile names,
    /// when the default action denies (runc's behaviour). Default: `true`.
    pub enosys_for_unknown_syscalls: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            enosys_for_unknown_syscalls: true,
        }
    }
}

/// A compiled seccomp filter, ready to install.
#[derive(Clone)]
pub struct Filter {
    program: Vec<sock_filter>,
    flags: u32,
    notify: bool,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("instructions", &self.program.len())
            .field("flags", &format_args!("{:#x}", self.flags))
            .field("notify", &self.notify)
            .finish()
    }
}

impl Filter {
    /// Compiles `profile` with the default [`CompileOptions`].
    ///
    /// Unknown syscall names are skipped with `tracing::debug!`; invalid fields are
    /// an [`Error`] naming the field, e.g. `linux.seccomp.syscalls[3].errnoRet`.
    pub fn compile(profile: &LinuxSeccomp) -> Result<Filter, Error> {
        Self::compile_with(profile, &CompileOptions::default())
    }

    /// Compiles `profile` with explicit options.
    pub fn compile_with(profile: &LinuxSeccomp, options: &CompileOptions) -> Result<Filter, Error> {
        let policy = policy::Policy::new(profile, options.enosys_for_unknown_syscalls)?;
        let program = codegen::generate(&policy)?;
        let notify = policy.uses_notify();
        let mut flags = policy.flags;
        let new_listener = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32;
        let tsync = libc::SECCOMP_FILTER_FLAG_TSYNC as u32;
        if notify {
            flags |= new_listener;
            if flags & tsync != 0 {
                flags |= libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH as u32;
            }
        } else {
            flags &= !(libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV as u32);
        }
        tracing::trace!(
            instructions = program.len(),
            flags,
            notify,
            "seccomp: filter compiled"
        );
        Ok(Filter {
            program,
            flags,
            notify,
        })
    }

    /// The BPF instructions, in execution order.
    pub fn program(&self) -> &[sock_filter] {
        &self.program
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits [`install`](Self::install) passes to seccomp(2):
    /// the profile's flags (`TSYNC`, `LOG`, `SPEC_ALLOW`, `WAIT_KILLABLE_RECV`) plus
    /// `NEW_LISTENER` (and `TSYNC_ESRCH` with `TSYNC`) when [`needs_notify`](Self::needs_notify).
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Whether the program returns `SECCOMP_RET_USER_NOTIF` for some syscall; then
    /// [`install`](Self::install) returns the listener fd. `SCMP_ACT_NOTIFY` rules whose
    /// syscalls are unknown (or shadowed by another rule) do not count.
    pub fn needs_notify(&self) -> bool {
        self.notify
    }

    /// Installs the filter on the calling thread (all threads with `TSYNC`) with
    /// `seccomp(SECCOMP_SET_MODE_FILTER, flags(), prog)`.
    ///
    /// Returns the notification listener fd when `NEW_LISTENER` is among the flags.
    /// The caller must have set `PR_SET_NO_NEW_PRIVS` or hold `CAP_SYS_ADMIN`; this
    /// function does not. It does not allocate, lock or log, so it can run between
    /// `fork` and `exec`.
    pub fn install(&self) -> Result<Option<OwnedFd>, Error> {
        install::load(&self.program, self.flags)
    }
}

/// Action names accepted in profiles (for `berth features`).
pub fn supported_actions() -> &'static [&'static str] {
    &[
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    ]
}

/// Operator names accepted in profiles (for `berth features`).
pub fn supported_operators() -> &'static [&'static str] {
    &[
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    ]
}

/// Architecture names accepted in profiles (for `berth features`).
///
/// All libseccomp names are recognized; rule tables exist for `SCMP_ARCH_X86_64`,
/// `SCMP_ARCH_X86` and `SCMP_ARCH_X32`, and the others cannot occur on an x86-64
/// kernel (see the crate docs).
pub fn supported_archs() -> &'static [&'static str] {
    &[
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_ARM",
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_MIPS",
        "SCMP_ARCH_MIPS64",
        "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_MIPSEL",
        "SCMP_ARCH_MIPSEL64",
        "SCMP_ARCH_MIPSEL64N32",
        "SCMP_ARCH_PPC",
        "SCMP_ARCH_PPC64",
        "SCMP_ARCH_PPC64LE",
        "SCMP_ARCH_S390",
        "SCMP_ARCH_S390X",
        "SCMP_ARCH_PARISC",
        "SCMP_ARCH_PARISC64",
        "SCMP_ARCH_RISCV64",
        "SCMP_ARCH_LOONGARCH64",
        "SCMP_ARCH_M68K",
        "SCMP_ARCH_SH",
        "SCMP_ARCH_SHEB",
    ]
}

/// Filter flag names accepted in profiles (for `berth features`).
pub fn supported_flags() -> &'static [&'static str] {
    &[
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    ]
}
