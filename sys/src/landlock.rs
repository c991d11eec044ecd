//! Landlock self-confinement for code that handles hostile input on the host, such as the layer
//! extractor: after [`writes_beneath`], the calling thread (and what it spawns later) may read
//! anywhere but write only beneath one directory, so even a path-resolution bug cannot write
//! elsewhere. Older kernels get what their Landlock ABI offers, and the status says so.

use std::io;
use std::path::Path;

use landlock::{
    Access, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    ABI,
};

/// How completely the confinement is enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confinement {
    /// Every filesystem right of the latest ABI berth knows is enforced.
    Full,
    /// The kernel's Landlock lacks some rights (named); the rest is enforced.
    Partial(String),
    /// Landlock is unavailable (kernel or LSM disabled): nothing is enforced.
    Unavailable,
}

/// The ABI berth asks for; the crate degrades to what the kernel has.
const ABI_WANTED: ABI = ABI::V5;

/// Confines the calling thread's filesystem writes to `dir` (reads stay allowed everywhere).
/// Sets `no_new_privs` as Landlock requires. An error's text starts with `landlock: `.
pub fn writes_beneath(dir: &Path) -> io::Result<Confinement> {
    let all = AccessFs::from_all(ABI_WANTED);
    let read = AccessFs::from_read(ABI_WANTED);
    let err = |e: &dyn std::fmt::Display| io::Error::other(format!("landlock: {e}"));
    let root = PathFd::new("/").map_err(|e| err(&e))?;
    let dest = PathFd::new(dir).map_err(|e| err(&e))?;
    let status = Ruleset::default()
        .handle_access(all)
        .map_err(|e| err(&e))?
        .create()
        .map_err(|e| err(&e))?
        .add_rule(PathBeneath::new(root, read))
        .map_err(|e| err(&e))?
        .add_rule(PathBeneath::new(dest, all))
        .map_err(|e| err(&e))?
        .restrict_self()
        .map_err(|e| err(&e))?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Confinement::Full,
        RulesetStatus::PartiallyEnforced => Confinement::Partial(format!(
            "the kernel's Landlock ABI is older than {ABI_WANTED:?}; rights it lacks are not enforced"
        )),
        RulesetStatus::NotEnforced => Confinement::Unavailable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::scratch_dirs;

    #[test]
    fn writes_outside_are_denied() {
        let (_tmp, [inside, outside]) = scratch_dirs(["in", "out"]);
        // Confine a separate thread so the test harness stays unconfined.
        let (i, o) = (inside.clone(), outside.clone());
        let result = std::thread::spawn(move || {
            let c = writes_beneath(&i).unwrap();
            let ok_in = std::fs::write(i.join("f"), b"x").is_ok();
            let ok_out = std::fs::write(o.join("f"), b"x").is_ok();
            let can_read = std::fs::read_to_string("/proc/self/status").is_ok();
            (c, ok_in, ok_out, can_read)
        })
        .join()
        .unwrap();
        assert!(result.1 && result.3);
        if result.0 != Confinement::Unavailable {
            assert!(!result.2, "write outside the confinement succeeded");
            assert!(!outside.join("f").exists());
        }
    }
}
