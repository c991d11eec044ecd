//! Control groups for berth containers: resource limits end to end.
//!
//! cgroup v2 is the primary target; cgroup v1 is supported on legacy and hybrid hosts (v1
//! controllers each in their own mount, plus an empty cgroup2 hierarchy that containers also
//! join, as runc does). The layout is found from `/proc/self/mountinfo` and
//! `/proc/self/cgroup`.
//!
//! # API
//!
//! Everything goes through [`Cgroup`], which is serialisable so that later commands rebuild
//! it from the container's state file:
//!
//! | call | does |
//! | --- | --- |
//! | [`Cgroup::resolve`]`(cgroups_path, id)` | interpret `linux.cgroupsPath` (absolute; relative to berth's own cgroup, placed as runc's cgroupfs drivers do; `None` is `/berth/<id>`; systemd `slice:prefix:name` is a relative path, as runc takes it without `--systemd-cgroup`) |
//! | [`Cgroup::create`] | mkdir the cgroup and missing parents (remembered as ours); v2: enable controllers in each parent's `cgroup.subtree_control`; v1: fill new cpusets from their parent |
//! | [`Cgroup::apply`]`(&LinuxResources)` | write every `linux.resources` field (create and `update`) |
//! | [`Cgroup::add_pid`] | move a process into every hierarchy |
//! | [`Cgroup::unified_dir_fd`] | `O_PATH` fd of the v2 directory for clone3 `CLONE_INTO_CGROUP` |
//! | [`Cgroup::freeze`] / [`Cgroup::thaw`] / [`Cgroup::is_frozen`] | pause / resume |
//! | [`Cgroup::pids`] | the container's processes |
//! | [`Cgroup::signal_all`] | `kill --all` (v2 `cgroup.kill` for SIGKILL) |
//! | [`Cgroup::stats`] / [`Cgroup::oom_kills`] | `events --stats` / OOM events |
//! | [`Cgroup::destroy`] | kill, wait, rmdir the leaf and the parents we created |
//!
//! The runtime's sequence (the state file keeps the `Cgroup` as JSON between commands):
//!
//! ```no_run
//! # fn main() -> berth_cgroups::Result<()> {
//! # let spec: oci_spec::runtime::LinuxResources = Default::default();
//! # let init_pid = 1;
//! use berth_cgroups::Cgroup;
//! // create
//! let mut cg = Cgroup::resolve(None, "mycontainer")?; // /berth/mycontainer
//! cg.create()?;
//! cg.apply(&spec)?;
//! let fd = cg.unified_dir_fd()?; // clone3(CLONE_INTO_CGROUP) with it, where possible
//! cg.add_pid(init_pid)?; // always: joins the v1 hierarchies too
//! let state = serde_json::to_string(&cg).expect("serialisable");
//! // pause / kill --all / events --stats / delete, in later commands
//! let cg: Cgroup = serde_json::from_str(&state).expect("state");
//! cg.freeze()?;
//! cg.thaw()?;
//! cg.signal_all(libc::SIGTERM)?;
//! let stats = cg.stats()?;
//! cg.destroy()?;
//! # drop((fd, stats));
//! # Ok(())
//! # }
//! ```
//!
//! # Mapping of `linux.resources`
//!
//! As runc and crun: on v2, `cpu.shares` becomes `cpu.weight` ([`convert::shares_to_weight`]),
//! quota/period become `cpu.max`, `memory.swap` (memory+swap) becomes `memory.swap.max`
//! (swap alone, [`convert::swap_to_v2`]), `memory.reservation` becomes `memory.low`, blkio
//! throttles become `io.max` lines and weights `io.weight`/`io.bfq.weight`, devices become a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program built by [`devices::bpf`], and `unified` keys are
//! written last. On v1 each field goes to its controller's hierarchy. A field this host cannot
//! honour (controller not mounted, no blkio weight files, realtime on v2, ...) is an
//! [`Error::UnsupportedResource`] naming the field; fields runc and crun ignore on v2
//! (swappiness, kernelTCP, disableOOMKiller, leafWeight) only log a warning.
//!
//! Devices: [`Cgroup::apply`] with `devices: Some(list)` sets deny-all, then the list, then
//! [`devices::rules::default_rules`] (runc's `AllowedDevices`); `None` leaves the device rules
//! as they are, so at create the runtime should pass `Some(vec![])` when the config has no
//! list (runc treats a missing list as empty).

pub mod cgroup;
pub mod convert;
pub mod devices;
mod error;
mod freezer;
mod fsutil;
pub mod hierarchy;
mod kill;
mod path;
mod resources;
pub mod stats;

pub use cgroup::Cgroup;
pub use error::{Error, Result};
pub use hierarchy::Mode;
pub use path::DEFAULT_PARENT;
pub use stats::Stats;
