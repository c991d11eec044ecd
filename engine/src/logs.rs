//! The output of a detached run (`berth logs`): a container run with `-d` and no terminal
//! writes its standard output and error to `container.log` in its bundle (readable by its
//! owner only), which goes with the bundle. The init inherits them from berth, so berth's
//! own are pointed at the file for the create and start, then put back: a warning berth
//! logs meanwhile lands in the container's log too (stdio fields on the runtime's
//! `CreateOptions` would avoid swapping the process's own).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::{names, Engine};

/// The log's file name in the bundle directory.
pub const LOG_FILE: &str = "container.log";

fn dup(fd: i32) -> io::Result<OwnedFd> {
    let new = nix::unistd::dup(fd)?;
    // SAFETY: `dup` just returned this descriptor, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Runs `f` with standard output and error appended to `log` (created 0600), so that a
/// container created meanwhile inherits them; they are put back before this returns.
pub(crate) fn with_output_to<T>(log: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let file: File = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .map_err(|e| Error::io("creating", log, e))?;
    // Berth's own, put back afterwards.
    let out = dup(1).map_err(|e| Error::io("saving stdout for", log, e))?;
    let err = dup(2).map_err(|e| Error::io("saving stderr for", log, e))?;
    let point = |fd: i32, to: i32| {
        nix::unistd::dup2(fd, to)
            .map(drop)
            .map_err(|e| Error::io("redirecting output to", log, e.into()))
    };
    let res = point(file.as_raw_fd(), 1)
        .and_then(|()| point(file.as_raw_fd(), 2))
        .and_then(|()| f());
    let back = point(out.as_raw_fd(), 1).and_then(|()| point(err.as_raw_fd(), 2));
    let value = res?;
    back?;
    Ok(value)
}

impl Engine {
    /// The log of container `id` if the engine ran it detached without a terminal.
    pub fn log_path(&self, id: &str) -> Option<PathBuf> {
        names::validate(id).ok()?;
        let p = names::bundle_dir(self.store_root(), id).join(LOG_FILE);
        p.is_file().then_some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_goes_to_the_log_and_comes_back() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join(LOG_FILE);
        let before = std::fs::metadata("/proc/self/fd/1").ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        });
        with_output_to(&log, || {
            let st = std::process::Command::new("sh")
                .args(["-c", "echo out; echo err >&2"])
                .status()
                .unwrap();
            assert!(st.success());
            Ok(())
        })
        .unwrap();
        let after = std::fs::metadata("/proc/self/fd/1").ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        });
        assert_eq!(before, after, "stdout put back");
        // (The test harness may write its own lines meanwhile.)
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("out\n") && text.contains("err\n"), "{text}");
    }
}
