//! Health checks (`HEALTHCHECK`, `docker run --health-cmd`): while a container runs, its test
//! command is run in it every interval through the runtime's `exec`; a run that exits 0 within
//! the timeout passes, `retries` failures in a row make the container unhealthy. The state and
//! the last five results are shown by `inspect` and `ps`, and changes are events.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::record::Status;
use super::{Container, Daemon};

/// How many results are kept.
const KEPT: usize = 5;
/// How much of a check's output is kept.
const MAX_OUTPUT: usize = 4096;

/// One check's result.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Check {
    /// When it started (RFC 3339).
    pub start: String,
    /// When it ended.
    pub end: String,
    /// Its exit code (-1: it timed out or could not run).
    pub exit_code: i64,
    /// What it printed (bounded).
    pub output: String,
}

/// A container's health, as `inspect` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    /// Failures in a row.
    pub failing_streak: i64,
    /// The last results, oldest first.
    pub log: Vec<Check>,
}

/// The command of a `Test` (`["CMD", ...]`, `["CMD-SHELL", "..."]`); `None` for `NONE` or
/// an empty test.
pub fn command(test: &[String]) -> Option<Vec<String>> {
    match test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
        Some((kind, [cmd])) if kind == "CMD-SHELL" => {
            Some(vec!["/bin/sh".into(), "-c".into(), cmd.clone()])
        }
        _ => None,
    }
}

fn nanos(v: Option<i64>, default: Duration) -> Duration {
    v.filter(|n| *n > 0)
        .map_or(default, |n| Duration::from_nanos(n as u64))
}

/// Starts checking container `c` (started at `started_at`) if it has a health check; the
/// checks end when that run of it ends.
pub fn start(d: &Arc<Daemon>, c: &Arc<Container>) {
    let r = c.snapshot();
    let Some(hc) = r.config.healthcheck.clone() else {
        return;
    };
    let Some(cmd) = hc.test.as_deref().and_then(command) else {
        return;
    };
    let interval = nanos(hc.interval, Duration::from_secs(30));
    let timeout = nanos(hc.timeout, Duration::from_secs(30));
    let retries = hc.retries.filter(|n| *n > 0).unwrap_or(3);
    let start_period = nanos(hc.start_period, Duration::ZERO);
    let run = r.state.started_at.clone();
    *c.health.lock().expect("health lock") = Some(Health {
        status: "starting".into(),
        failing_streak: 0,
        log: Vec::new(),
    });
    let (d, c) = (d.clone(), c.clone());
    tokio::spawn(async move {
        let began = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(interval).await;
            let now = c.snapshot();
            if now.state.status != Status::Running || now.state.started_at != run {
                return;
            }
            let check = run_check(&d, &c.id, &cmd, timeout).await;
            let passed = check.exit_code == 0;
            let changed = {
                let mut h = c.health.lock().expect("health lock");
                let Some(h) = h.as_mut() else { return };
                let before = h.status.clone();
                if passed {
                    h.failing_streak = 0;
                    h.status = "healthy".into();
                } else if began.elapsed() >= start_period {
                    h.failing_streak += 1;
                    if h.failing_streak >= retries {
                        h.status = "unhealthy".into();
                    }
                }
                h.log.push(check);
                if h.log.len() > KEPT {
                    h.log.remove(0);
                }
                (before != h.status).then(|| h.status.clone())
            };
            if let Some(status) = changed {
                d.container_event(&c.snapshot(), &format!("health_status: {status}"), &[]);
            }
        }
    });
}

async fn run_check(d: &Daemon, id: &str, cmd: &[String], timeout: Duration) -> Check {
    let start = crate::time::now_rfc3339();
    let mut command = tokio::process::Command::new(&d.config.runtime);
    command
        .arg("--root")
        .arg(d.config.runtime_root())
        .arg("exec")
        .arg(id)
        .args(cmd)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let (exit_code, output) = match tokio::time::timeout(timeout, command.output()).await {
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            text.truncate(MAX_OUTPUT);
            (i64::from(out.status.code().unwrap_or(-1)), text)
        }
        Ok(Err(e)) => (-1, format!("running the check: {e}")),
        Err(_) => (-1, format!("Health check exceeded timeout ({timeout:?})")),
    };
    Check {
        start,
        end: crate::time::now_rfc3339(),
        exit_code,
        output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_commands() {
        let v = |s: &[&str]| s.iter().map(|x| (*x).to_string()).collect::<Vec<_>>();
        assert_eq!(command(&v(&["CMD", "true"])), Some(v(&["true"])));
        assert_eq!(
            command(&v(&["CMD-SHELL", "exit 1"])),
            Some(v(&["/bin/sh", "-c", "exit 1"]))
        );
        assert_eq!(command(&v(&["NONE"])), None);
        assert_eq!(command(&[]), None);
    }
}
