//! berth's kernel plumbing: the one place where raw system calls live.
//!
//! Every other berth crate calls the safe wrappers here instead of `libc::syscall`, so each
//! system call has one definition (one struct layout, one flag set, one `// SAFETY:` argument)
//! and one place to review. A workspace clippy rule (`disallowed-methods` in `clippy.toml`)
//! keeps raw syscalls out of the other crates. Calls go through [rustix] where it covers them;
//! what rustix lacks (or cannot express, such as an arbitrary signal number) is issued here
//! through `libc::syscall`.
//!
//! Wrappers return [`std::io::Error`] with the kernel's errno preserved
//! ([`std::io::Error::raw_os_error`]); callers add their own context.
//!
//! | module | what |
//! |---|---|
//! | [`in_root`] | path resolution confined to a root directory (`openat2(RESOLVE_IN_ROOT)`), creating paths inside it |
//! | [`mountinfo`] | the one `/proc/<pid>/mountinfo` parser (never panics) |
//! | [`mount`] | `mount_setattr`, detached trees (`open_tree`) and `move_mount` |
//! | [`process`] | `clone3` (into a cgroup), pidfds, `execveat`, `close_range`, `personality` |
//! | [`sched`] | I/O priority and `sched_setattr` |
//! | [`mem`] | NUMA memory policy (`set_mempolicy`) |
//! | [`security`] | capability sets (`capset`) and seccomp filter installation |
//! | [`keyring`] | session keyrings (`keyctl`) |
//! | [`bpf`] | the `bpf(2)` call |
//! | [`fs`] | the one atomic file write (`write_atomic`, two durability policies); listing a directory that may be missing |
//! | [`lock`] | the one advisory file lock (`flock`, RAII) |
//! | [`landlock`] | Landlock self-confinement of filesystem writes |
//! | [`errno`] | turning raw syscall results into [`std::io::Error`]s, and wording them as runc does |
//! | [`proc_info`] | `/proc/<pid>/stat` readers (start time, zombie) that tell a live process from a reused pid |
//! | [`failpoint`] | crash points for tests (`BERTH_FAILPOINT`, debug builds only): a leaf every crate can call |
//!
//! [rustix]: https://docs.rs/rustix

// The one crate allowed to issue raw system calls (see the workspace clippy.toml).
#![allow(clippy::disallowed_methods)]

pub mod bpf;
pub mod errno;
pub mod failpoint;
pub mod fs;
pub mod in_root;
pub mod keyring;
pub mod landlock;
pub mod lock;
pub mod mem;
pub mod mount;
pub mod mountinfo;
pub mod proc_info;
pub mod process;
pub mod sched;
pub mod security;
#[cfg(test)]
mod testutil;
