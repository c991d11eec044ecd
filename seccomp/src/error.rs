//! Errors from compiling and installing a profile.

/// Why a profile could not be compiled or installed.
///
/// Compile errors name the offending field with its JSON path in `config.json`,
/// e.g. `linux.seccomp.syscalls[3].errnoRet`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `errnoRet`/`defaultErrnoRet` was given for an action that takes no errno
    /// (only `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` do).
    #[error("{field}: errno return is not supported with action {action}")]
    ErrnoNotSupported {
        /// JSON path of the field.
        field: String,
        /// The action name, e.g. `SCMP_ACT_ALLOW`.
        action: &'static str,
    },
    /// `errnoRet`/`defaultErrnoRet` does not fit the 16-bit `SECCOMP_RET_DATA` field.
    #[error("{field}: errno return {value} out of range (max 65535)")]
    ErrnoOutOfRange {
        /// JSON path of the field.
        field: String,
        /// The value given.
        value: u32,
    },
    /// An argument index outside 0..=5.
    #[error("{field}: argument index {index} out of range (syscalls have 6 arguments, 0-5)")]
    ArgIndexOutOfRange {
        /// JSON path of the field.
        field: String,
        /// The index given.
        index: usize,
    },
    /// A `syscalls[]` entry with an empty `names` list.
    #[error("{field}: must contain at least one syscall name")]
    EmptyNames {
        /// JSON path of the field.
        field: String,
    },
    /// An action that cannot be used where it was given.
    #[error("{field}: unsupported action {action}: {reason}")]
    UnsupportedAction {
        /// JSON path of the field.
        field: String,
        /// The action name.
        action: &'static str,
        /// Why it is not supported there.
        reason: &'static str,
    },
    /// The compiled program exceeds the kernel's `BPF_MAXINSNS`.
    #[error("linux.seccomp: compiled filter has {len} BPF instructions, the kernel allows {max}")]
    TooLarge {
        /// Instructions generated.
        len: usize,
        /// The kernel limit.
        max: usize,
    },
    /// `seccomp(SECCOMP_SET_MODE_FILTER)` failed.
    #[error("seccomp(SECCOMP_SET_MODE_FILTER, flags={flags:#x}): {source}")]
    Install {
        /// Flags passed to seccomp(2).
        flags: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `SECCOMP_FILTER_FLAG_TSYNC`: another thread could not be synchronized.
    #[error("seccomp: SECCOMP_FILTER_FLAG_TSYNC failed: thread {tid} cannot be synchronized")]
    TsyncFailed {
        /// The thread that could not be synchronized.
        tid: i64,
    },
    /// Filters are x86-family programs; installing on another host architecture is refused.
    #[error("seccomp: installing filters is only supported on x86_64 hosts")]
    UnsupportedHost,
}
