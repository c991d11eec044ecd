//! The berth command line, as two binaries over one library.
//!
//! - `berth` (src/main.rs) is what engines call once per container operation: runc's commands
//!   (`create start state kill delete run exec ps pause resume update events list spec
//!   features`). It links only the runtime (no image store, registry, network or build code,
//!   no TLS), statically where the toolchain allows (see build.rs), so that each call pays for
//!   little more than the work itself. Everything else it hands to `berth-tools` by `execve`,
//!   with the same arguments.
//! - `berth-tools` (src/tools) serves every command, the runtime's too: images, registries,
//!   networks, builds and `run IMAGE`, over `berth_engine`.
//!
//! This library holds what both share: the runtime commands ([`runc`]), logging ([`log`]),
//! the start-up steps ([`startup`]), the hand-over ([`handover`]) and the terminal relay of
//! `exec -t` and `run IMAGE -t` without a console socket ([`console`]).

pub mod console;
pub mod handover;
pub mod log;
pub mod runc;
pub mod startup;
