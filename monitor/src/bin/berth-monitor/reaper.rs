//! Reaping: as a child subreaper the monitor inherits the container's process (and any
//! orphan below it), so every SIGCHLD is answered with `waitpid(-1, WNOHANG)` until nothing
//! is left to reap.

use std::collections::HashMap;
use std::time::SystemTime;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Killed(i32),
}

impl Status {
    /// The exit record of a process that ended so.
    pub fn record(self, started: SystemTime, finished: SystemTime) -> berth_monitor::ExitRecord {
        match self {
            Status::Exited(code) => berth_monitor::ExitRecord::exited(code, started, finished),
            Status::Killed(sig) => berth_monitor::ExitRecord::killed(sig, started, finished),
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Exited(c) => write!(f, "exit status {c}"),
            Status::Killed(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// Every child that has ended, with when it was reaped; remembered so a pid learnt later
/// (the pid file is read after the runtime exits) finds its status.
#[derive(Default)]
pub struct Reaped(HashMap<i32, (Status, SystemTime)>);

impl Reaped {
    /// Reaps every child that has ended.
    pub fn reap_all(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    self.0
                        .insert(pid.as_raw(), (Status::Exited(code), SystemTime::now()));
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.0.insert(
                        pid.as_raw(),
                        (Status::Killed(sig as i32), SystemTime::now()),
                    );
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// How `pid` ended, if it has been reaped.
    pub fn get(&self, pid: i32) -> Option<(Status, SystemTime)> {
        self.0.get(&pid).copied()
    }

    /// Forgets every child but `keep` (the map would otherwise grow with each orphan).
    pub fn forget_others(&mut self, keep: i32) {
        self.0.retain(|&pid, _| pid == keep);
    }
}
