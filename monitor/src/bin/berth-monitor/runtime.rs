//! The runtime's command lines: `create` or `exec --detach` (with the stdio the monitor
//! made), and `delete --force`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_monitor::{Invocation, Mode, CONSOLE_SOCKET, INIT_PID_FILE};

/// How long `delete --force` may take before the monitor gives up on it.
const DELETE_TIMEOUT: Duration = Duration::from_secs(30);

/// The stdio the runtime (and through it the container's process) gets.
pub struct RuntimeStdio {
    /// Standard input.
    pub stdin: Stdio,
    /// Standard output.
    pub stdout: Stdio,
    /// Standard error.
    pub stderr: Stdio,
}

/// The arguments of `berth --root ROOT --log DIR/runtime.log create|exec ... ID`. The
/// runtime's own log lines (warnings) go to that file, not to the container's stderr, which
/// the runtime shares with the container; its errors are still echoed on stderr, where the
/// monitor reads the reason of a failed create.
pub fn start_args(inv: &Invocation) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![
        "--root".into(),
        inv.runtime_root.clone().into(),
        "--log".into(),
        inv.dir.join(RUNTIME_LOG).into(),
    ];
    match &inv.mode {
        Mode::Create { bundle } => {
            a.extend(["create".into(), "--bundle".into(), bundle.clone().into()]);
        }
        Mode::Exec { process } => {
            a.extend([
                "exec".into(),
                "--detach".into(),
                "--process".into(),
                process.clone().into(),
            ]);
        }
    }
    a.extend(["--pid-file".into(), inv.dir.join(INIT_PID_FILE).into()]);
    if inv.tty {
        a.extend([
            "--console-socket".into(),
            inv.dir.join(CONSOLE_SOCKET).into(),
        ]);
    }
    a.push(inv.id.clone().into());
    a
}

/// The runtime's log in the monitor's directory.
pub const RUNTIME_LOG: &str = "runtime.log";

/// Makes `cmd`'s child start with every signal at its default disposition and none blocked,
/// whatever the monitor did with its own (the runtime passes them on to the container).
///
/// This also makes std fork and exec instead of using `posix_spawn`, whose glibc version
/// leaves glibc's internal signals (32 and 33) ignored in the child when the parent had
/// handlers for them: they would reach the container ignored.
fn pristine_signals(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child of this single-threaded process, before
    // exec, and only calls signal(2) and sigprocmask(2), which are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            for sig in 1..libc::SIGRTMIN() {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&raw mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &raw const empty, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// Spawns the runtime's `create` or `exec`; returns its pid. The caller reaps it (with every
/// other child) through `waitpid(-1)`: the `Child` handle is dropped unwaited.
pub fn spawn(inv: &Invocation, stdio: RuntimeStdio) -> std::io::Result<i32> {
    let mut cmd = Command::new(&inv.runtime);
    cmd.args(start_args(inv))
        .stdin(stdio.stdin)
        .stdout(stdio.stdout)
        .stderr(stdio.stderr);
    pristine_signals(&mut cmd);
    let child = cmd.spawn().map_err(|e| {
        std::io::Error::new(e.kind(), format!("running {}: {e}", inv.runtime.display()))
    })?;
    Ok(child.id() as i32)
}

/// `berth --root ROOT delete --force ID`, waited for (at most [`DELETE_TIMEOUT`], then
/// killed); its output goes to the monitor's stderr. Failures are reported there too: there
/// is nobody else to tell.
pub fn delete_force(inv: &Invocation) {
    let mut cmd = Command::new(&inv.runtime);
    cmd.arg("--root")
        .arg(&inv.runtime_root)
        .args(["delete", "--force", &inv.id])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    pristine_signals(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth-monitor: running delete --force {}: {e}", inv.id);
            return;
        }
    };
    let deadline = Instant::now() + DELETE_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return,
            Ok(Some(status)) => {
                eprintln!("berth-monitor: delete --force {}: {status}", inv.id);
                return;
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                eprintln!(
                    "berth-monitor: delete --force {} did not finish in {DELETE_TIMEOUT:?}; killed",
                    inv.id
                );
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            Err(e) => {
                eprintln!("berth-monitor: waiting for delete --force {}: {e}", inv.id);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let mut inv = Invocation {
            runtime: "/bin/berth".into(),
            runtime_root: "/run/r".into(),
            id: "c1".into(),
            dir: "/run/m".into(),
            tty: false,
            stdin: false,
            stdin_once: false,
            log: None,
            hold_output: false,
            log_max_size: None,
            log_max_files: 1,
            mode: Mode::Create {
                bundle: "/b".into(),
            },
        };
        let s = |a: Vec<OsString>| {
            a.iter()
                .map(|s| s.to_str().unwrap())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            s(start_args(&inv)),
            "--root /run/r --log /run/m/runtime.log create --bundle /b --pid-file /run/m/init.pid c1"
        );
        inv.tty = true;
        inv.mode = Mode::Exec {
            process: "/p.json".into(),
        };
        assert_eq!(
            s(start_args(&inv)),
            "--root /run/r --log /run/m/runtime.log exec --detach --process /p.json \
             --pid-file /run/m/init.pid --console-socket /run/m/console.sock c1"
        );
    }
}
