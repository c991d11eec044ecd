//! Running OCI hooks: the state document on stdin, `timeout` honoured, a hook that never reads
//! its stdin is harmless (berth ignores `EPIPE`), and a failure names the hook.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// Runs each hook of `stage` in order; the first failure stops the rest.
pub fn run_all(stage: &str, hooks: &[Hook], state_json: &str) -> Result<()> {
    run_all_with_env(stage, hooks, state_json, &[])
}

/// [`run_all`] for hooks that run in the container (`startContainer`): a hook without its own
/// `env` gets `process_env` (the container process's environment), as runc gives it.
pub fn run_all_with_env(
    stage: &str,
    hooks: &[Hook],
    state_json: &str,
    process_env: &[std::ffi::CString],
) -> Result<()> {
    for (i, hook) in hooks.iter().enumerate() {
        run(hook, state_json, process_env).map_err(|e| {
            Error::Hook(format!(
                "{stage} hook #{i} ({}): {e}",
                hook.path().display()
            ))
        })?;
    }
    Ok(())
}

/// Runs hooks that may not stop the lifecycle (`poststart`, `poststop`): failures are warnings.
pub fn run_all_warn(stage: &str, hooks: &[Hook], state_json: &str) {
    for (i, hook) in hooks.iter().enumerate() {
        if let Err(e) = run(hook, state_json, &[]) {
            tracing::warn!("{stage} hook #{i} ({}) failed: {e}", hook.path().display());
        }
    }
}

fn run(
    hook: &Hook,
    state_json: &str,
    fallback_env: &[std::ffi::CString],
) -> std::result::Result<(), String> {
    let args = hook.args().as_deref().unwrap_or_default();
    let mut cmd = Command::new(hook.path());
    if let Some(arg0) = args.first() {
        cmd.arg0(arg0);
    }
    cmd.args(args.iter().skip(1));
    cmd.env_clear();
    match hook.env() {
        Some(env) => {
            for kv in env {
                if let Some((k, v)) = kv.split_once('=') {
                    cmd.env(k, v);
                }
            }
        }
        None => {
            use std::os::unix::ffi::OsStrExt;
            for kv in fallback_env {
                let kv = kv.as_bytes();
                if let Some(eq) = kv.iter().position(|&b| b == b'=') {
                    cmd.env(
                        std::ffi::OsStr::from_bytes(&kv[..eq]),
                        std::ffi::OsStr::from_bytes(&kv[eq + 1..]),
                    );
                }
            }
        }
    }
    cmd.stdin(Stdio::piped());
    // The hook leads its own process group so a timeout can end everything it started.
    cmd.process_group(0);
    // SAFETY: the closure only calls async-signal-safe functions (sigprocmask, signal) between
    // fork and exec: it restores default signal handling that berth's own settings may change.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&raw mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &raw const set, std::ptr::null_mut());
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot run: {e}"))?;
    let timeout = hook.timeout().map(|t| Duration::from_secs(t.max(1) as u64));
    // The timeout covers the whole hook, its stdin included: a hook that never reads a state
    // larger than a pipe buffer must not hold berth before the clock starts.
    let deadline = timeout.map(|t| Instant::now() + t);
    let pidfd = berth_sys::process::pidfd_open(child.id() as i32)
        .map_err(|e| format!("pidfd_open: {e}"))?;
    let fed = match child.stdin.take() {
        Some(stdin) => feed_stdin(stdin, state_json.as_bytes(), &pidfd, deadline),
        None => true,
    };
    let status = match (fed, deadline) {
        (true, None) => Some(child.wait().map_err(|e| e.to_string())?),
        (true, Some(d)) => wait_until(&mut child, &pidfd, d)?,
        (false, _) => None,
    };
    let Some(status) = status else {
        // SAFETY: kill(2) of the hook's process group (negative pid), which it leads.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = child.wait();
        return Err(format!(
            "timed out after {}s",
            timeout.unwrap_or_default().as_secs()
        ));
    };
    if status.success() {
        Ok(())
    } else if let Some(sig) = status.signal() {
        Err(format!("killed by signal {sig}"))
    } else {
        Err(format!("exit status {}", status.code().unwrap_or(-1)))
    }
}

/// Writes `data` to the hook's stdin without blocking past `deadline`; stops early (fine) if
/// the hook exits or closes its end. Returns false if the deadline passed first.
fn feed_stdin(
    stdin: std::process::ChildStdin,
    data: &[u8],
    pidfd: &OwnedFd,
    deadline: Option<Instant>,
) -> bool {
    let fd = stdin.as_raw_fd();
    // SAFETY: fcntl on the pipe we own; only its status flags change.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let mut stdin = stdin;
    let mut left = data;
    while !left.is_empty() {
        match stdin.write(left) {
            Ok(n) => left = &left[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let mut fds = [
                    libc::pollfd {
                        fd,
                        events: libc::POLLOUT,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: pidfd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                let wait = match deadline {
                    None => -1,
                    Some(d) => {
                        let left = d.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return false;
                        }
                        left.as_millis().min(i32::MAX as u128) as i32
                    }
                };
                // SAFETY: two valid pollfds for the duration of the call.
                unsafe { libc::poll(fds.as_mut_ptr(), 2, wait) };
                if fds[1].revents != 0 {
                    // The hook exited without reading the rest.
                    return true;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // EPIPE: the hook closed its stdin without reading; that is its right.
            Err(_) => return true,
        }
    }
    true
}

/// Waits for the hook until `deadline`; `None` if it is still running then.
fn wait_until(
    child: &mut std::process::Child,
    pidfd: &OwnedFd,
    deadline: Instant,
) -> std::result::Result<Option<std::process::ExitStatus>, String> {
    loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(Some(s));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let mut pfd = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe {
            libc::poll(
                &raw mut pfd,
                1,
                left.as_millis().min(i32::MAX as u128) as i32,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: &str) -> Hook {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn passes_state_on_stdin() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let h = hook(&format!(
            r#"{{"path":"/bin/sh","args":["sh","-c","cat > {}"]}}"#,
            out.display()
        ));
        run_all("prestart", &[h], "{\"id\":\"x\"}").unwrap();
        assert_eq!(std::fs::read_to_string(out).unwrap(), "{\"id\":\"x\"}");
    }

    #[test]
    fn timeout_covers_a_hook_that_never_reads_a_large_state() {
        let big = "x".repeat(1 << 20);
        let h = hook(r#"{"path":"/bin/sleep","args":["sleep","30"],"timeout":1}"#);
        let t = Instant::now();
        let e = run_all("prestart", &[h], &big).unwrap_err().to_string();
        assert!(e.contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }

    #[test]
    fn hook_not_reading_stdin_is_fine() {
        let big = "x".repeat(1 << 20);
        run_all("prestart", &[hook(r#"{"path":"/bin/true"}"#)], &big).unwrap();
    }

    #[test]
    fn failures_and_timeouts_name_the_hook() {
        let e = run_all("createRuntime", &[hook(r#"{"path":"/bin/false"}"#)], "{}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("createRuntime hook #0 (/bin/false): exit status 1"),
            "{e}"
        );
        let h = hook(r#"{"path":"/bin/sleep","args":["sleep","5"],"timeout":1}"#);
        let t = Instant::now();
        let e = run_all("prestart", &[h], "{}").unwrap_err().to_string();
        assert!(e.contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(4));
        let e = run_all("prestart", &[hook(r#"{"path":"/nonexistent"}"#)], "{}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot run"), "{e}");
    }
}
