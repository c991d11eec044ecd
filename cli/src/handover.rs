//! The lean `berth` hands what it does not serve to `berth-tools` by `execve`, with the same
//! arguments (`argv[0]` included, so that messages still name `berth`).
//!
//! `berth-tools` is looked for beside the running `berth` (`/proc/self/exe`'s directory), or
//! where `$BERTH_TOOLS` says.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// The name of the binary that serves every command.
pub const TOOLS: &str = "berth-tools";

/// Where `berth-tools` is: `$BERTH_TOOLS`, else beside this binary.
pub fn tools_path() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_TOOLS") {
        return PathBuf::from(p);
    }
    std::fs::read_link("/proc/self/exe")
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(TOOLS)))
        .unwrap_or_else(|| PathBuf::from(TOOLS))
}

/// Replaces this process with `berth-tools` given `args`; returns only the reason it could
/// not.
pub fn exec_tools(args: Vec<OsString>) -> std::io::Error {
    let path = tools_path();
    let cstr = |s: OsString| CString::new(s.into_vec()).map_err(std::io::Error::other);
    let argv: Result<Vec<CString>, _> = args.into_iter().map(cstr).collect();
    let (argv, path_c) = match (argv, cstr(path.into_os_string())) {
        (Ok(a), Ok(p)) => (a, p),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    match nix::unistd::execv(&path_c, &argv) {
        Err(e) => std::io::Error::from(e),
        Ok(never) => match never {},
    }
}

/// The runtime binary for containers `berth-tools` runs as children (a build's `RUN`
/// steps): the lean `berth` beside it, else this binary itself (it serves runc's commands
/// too).
pub fn runtime_path() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let lean = exe.with_file_name("berth");
    Ok(if lean.is_file() { lean } else { exe })
}
