//! Helpers shared by the integration tests of the cli (`berth`), the daemon (`berthd`) and the
//! CRI test. A crate of its own, a dev-dependency only, so that each test tree does not keep
//! its own copy.

use std::time::{Duration, Instant};

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
