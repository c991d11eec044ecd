//! Pausing and resuming: the v1 freezer's `freezer.state`, or v2's `cgroup.freeze` confirmed
//! by `frozen 1` in `cgroup.events`.

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::hierarchy::Mode;

/// How long a freeze may take before it is undone and reported.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

enum Freezer<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

impl Cgroup {
    fn freezer(&self) -> Result<Freezer<'_>> {
        if self.mode != Mode::Unified {
            if let Some(d) = self.controller_dir("freezer") {
                return Ok(Freezer::V1(d));
            }
        }
        match self.unified() {
            Some(h) => Ok(Freezer::V2(&h.dir)),
            None => Err(Error::Unsupported(
                "no freezer: the v1 freezer controller is not mounted and there is no cgroup2 \
                 hierarchy"
                    .to_owned(),
            )),
        }
    }

    /// Freezes every process of the container and waits until the kernel reports the cgroup
    /// frozen (v1 `FROZEN`, v2 `frozen 1` in `cgroup.events`).
    pub fn freeze(&self) -> Result<()> {
        match self.freezer()? {
            Freezer::V1(d) => freeze_v1(d),
            Freezer::V2(d) => {
                fsutil::write(d, "cgroup.freeze", "1")?;
                if let Err(e) = wait_v2(d, true) {
                    let _ = fsutil::write(d, "cgroup.freeze", "0");
                    return Err(e);
                }
                Ok(())
            }
        }
    }

    /// Thaws the container's processes.
    pub fn thaw(&self) -> Result<()> {
        match self.freezer()? {
            Freezer::V1(d) => fsutil::write(d, "freezer.state", "THAWED"),
            Freezer::V2(d) => {
                fsutil::write(d, "cgroup.freeze", "0")?;
                wait_v2(d, false)
            }
        }
    }

    /// Whether the container is frozen (a v1 freeze still in progress counts as not frozen).
    pub fn is_frozen(&self) -> Result<bool> {
        match self.freezer()? {
            Freezer::V1(d) => Ok(fsutil::read(d, "freezer.state")?.trim() == "FROZEN"),
            Freezer::V2(d) => Ok(fsutil::read(d, "cgroup.freeze")?.trim() == "1"),
        }
    }
}

/// runc's loop: write FROZEN until the state reads FROZEN, thawing now and then in case a
/// task got stuck in FREEZING.
fn freeze_v1(d: &Path) -> Result<()> {
    let start = Instant::now();
    let mut i = 0u32;
    while start.elapsed() < FREEZE_TIMEOUT {
        if i % 50 == 49 {
            fsutil::write(d, "freezer.state", "THAWED")?;
            sleep(Duration::from_millis(10));
        }
        fsutil::write(d, "freezer.state", "FROZEN")?;
        match fsutil::read(d, "freezer.state")?.trim() {
            "FROZEN" => return Ok(()),
            "FREEZING" => sleep(Duration::from_millis(if i < 25 { 1 } else { 10 })),
            other => {
                return Err(Error::Parse {
                    path: d.join("freezer.state"),
                    reason: format!("unexpected state {other:?} after freezing"),
                })
            }
        }
        i += 1;
    }
    let _ = fsutil::write(d, "freezer.state", "THAWED");
    Err(Error::Timeout {
        path: d.to_owned(),
        what: "the freezer to reach FROZEN".to_owned(),
    })
}

/// Waits for `frozen 1` (or 0) in `cgroup.events`.
fn wait_v2(d: &Path, frozen: bool) -> Result<()> {
    let want = u64::from(frozen);
    let start = Instant::now();
    let mut delay = Duration::from_micros(500);
    loop {
        let events = fsutil::read_keyed(d, "cgroup.events")?;
        // Kernels before 5.2 have no "frozen" key and no v2 freezer at all.
        match events.get("frozen") {
            Some(&v) if v == want => return Ok(()),
            None => {
                return Err(Error::Unsupported(format!(
                    "{}: no \"frozen\" in cgroup.events (kernel without the v2 freezer)",
                    d.display()
                )))
            }
            _ => {}
        }
        if start.elapsed() > FREEZE_TIMEOUT {
            return Err(Error::Timeout {
                path: d.to_owned(),
                what: format!("\"frozen {want}\" in cgroup.events"),
            });
        }
        sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}
