//! Control groups for berth containers.
//!
//! This crate will own resource limits end to end: cgroup v2 (the primary target, every
//! controller, freeze via `cgroup.freeze`, kill via `cgroup.kill`, a device-filter BPF program
//! built without libbpf) and cgroup v1 for hybrid hosts. The runtime calls it for create,
//! update, pause/resume, `kill --all`, stats and delete.
//!
//! Nothing is implemented yet: the runtime core does not apply `linux.resources` and says so.
