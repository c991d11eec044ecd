//! Crash points for tests: a debug build of berth kills itself with SIGKILL at the point named
//! by `BERTH_FAILPOINT`, so tests can reproduce a `kill -9` at an awkward moment exactly.
//! Release builds compile every point to nothing.

/// Kills the calling process with SIGKILL if `BERTH_FAILPOINT` names `point` (debug builds
/// only).
pub fn hit(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("BERTH_FAILPOINT").is_some_and(|v| v == point) {
        // SAFETY: raise has no memory-safety preconditions; SIGKILL ends the process.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}
