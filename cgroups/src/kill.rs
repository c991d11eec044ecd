//! Signalling every process of the container: `cgroup.kill` for SIGKILL where the kernel has it,
//! else each pid of `cgroup.procs` with the cgroup frozen meanwhile, so nothing forks past us.

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::fsutil;

impl Cgroup {
    /// Sends `sig` to every process of the container. SIGKILL goes through v2 `cgroup.kill`
    /// (also on hybrid hosts, where every process joins the unified cgroup) when present.
    /// Otherwise the cgroup is frozen, every pid signalled and the freeze undone; a container
    /// that was paused stays paused, except for SIGKILL, which thaws it so the processes die.
    pub fn signal_all(&self, sig: i32) -> Result<()> {
        let was_frozen = self.is_frozen().unwrap_or(false);
        if sig == libc::SIGKILL {
            if let Some(u) = self.unified() {
                if fsutil::exists(&u.dir, "cgroup.kill") {
                    fsutil::write(&u.dir, "cgroup.kill", "1")?;
                    // A process that joined only v1 hierarchies (a create that failed half
                    // way) is not reached by cgroup.kill.
                    let strays = self.stray_pids()?;
                    let result = signal_pids(&strays, sig);
                    if was_frozen {
                        self.thaw()?;
                    }
                    return result;
                }
            }
        }
        let froze = !was_frozen && self.freeze().is_ok();
        let result = self.pids().and_then(|p| signal_pids(&p, sig));
        if (was_frozen && sig == libc::SIGKILL) || froze {
            if let Err(e) = self.thaw() {
                tracing::warn!("{e}");
            }
        }
        result
    }
}

/// Signals each pid; a process already gone is not an error.
fn signal_pids(pids: &[i32], sig: i32) -> Result<()> {
    let mut first_err = None;
    for &pid in pids.iter().filter(|&&p| p > 0) {
        if let Err(source) = kill(pid, sig) {
            if source.raw_os_error() != Some(libc::ESRCH) {
                first_err.get_or_insert(Error::Signal {
                    pid,
                    signal: sig,
                    source,
                });
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// kill(2) for one process.
fn kill(pid: i32, sig: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) has no memory effects; callers pass positive pids from cgroup.procs.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
