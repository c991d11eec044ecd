//! The ready line: the one JSON line the monitor writes on its standard output once the
//! runtime's `create` or `exec` has exited, before closing it.
//!
//! ```text
//! {"ready":true,"monitor_pid":4242,"pid":4250}
//! {"ready":false,"error":"berth: container \"web\" already exists"}
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The most bytes of error text a failed ready line carries.
pub const MAX_ERROR_LEN: usize = 4096;

/// What the monitor reports once the runtime command has exited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Wire", into = "Wire")]
pub enum Ready {
    /// The container (create) or process (exec) exists; the monitor watches it.
    Running {
        /// The monitor's own pid (after it detached).
        monitor_pid: i32,
        /// The container's init (create) or the exec'd process (exec), from `DIR/init.pid`.
        pid: i32,
    },
    /// The runtime failed (or the monitor could not set up); nothing is left running and, in
    /// create mode, the runtime's state of the container was deleted. The monitor exits
    /// non-zero.
    Failed {
        /// The runtime's output (trimmed, at most [`MAX_ERROR_LEN`] bytes), or the monitor's
        /// own reason.
        error: String,
    },
}

/// The line as written: one object, `ready` telling which fields are present.
#[derive(Serialize, Deserialize)]
struct Wire {
    ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    monitor_pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl TryFrom<Wire> for Ready {
    type Error = String;

    fn try_from(w: Wire) -> Result<Ready, String> {
        match w {
            Wire {
                ready: true,
                monitor_pid: Some(monitor_pid),
                pid: Some(pid),
                error: None,
            } if monitor_pid > 0 && pid > 0 => Ok(Ready::Running { monitor_pid, pid }),
            Wire {
                ready: false,
                error: Some(error),
                ..
            } => Ok(Ready::Failed { error }),
            Wire { ready: true, .. } => {
                Err("ready:true needs positive monitor_pid and pid, and no error".into())
            }
            Wire { ready: false, .. } => Err("ready:false needs an error".into()),
        }
    }
}

impl From<Ready> for Wire {
    fn from(r: Ready) -> Wire {
        match r {
            Ready::Running { monitor_pid, pid } => Wire {
                ready: true,
                monitor_pid: Some(monitor_pid),
                pid: Some(pid),
                error: None,
            },
            Ready::Failed { error } => Wire {
                ready: false,
                monitor_pid: None,
                pid: None,
                error: Some(error),
            },
        }
    }
}

impl Ready {
    /// A failure carrying `text` trimmed and bounded to its last [`MAX_ERROR_LEN`] bytes (the
    /// end of a runtime's output is where its error is), cut at a character boundary.
    pub fn failed(text: &str) -> Ready {
        let text = text.trim();
        let mut start = text.len().saturating_sub(MAX_ERROR_LEN);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        Ready::Failed {
            error: text[start..].trim_start().to_string(),
        }
    }

    /// The line as written, with its newline.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a ready line always serializes");
        line.push('\n');
        line
    }

    /// Parses the line (with or without its newline).
    pub fn parse(line: &str) -> Result<Ready> {
        serde_json::from_str(line.trim_end()).map_err(|e| Error::malformed("ready line", &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let ok = Ready::Running {
            monitor_pid: 10,
            pid: 11,
        };
        assert_eq!(
            ok.to_line(),
            "{\"ready\":true,\"monitor_pid\":10,\"pid\":11}\n"
        );
        assert_eq!(Ready::parse(&ok.to_line()).unwrap(), ok);
        let bad = Ready::failed("  berth: no such bundle\n");
        assert_eq!(
            bad.to_line(),
            "{\"ready\":false,\"error\":\"berth: no such bundle\"}\n"
        );
        assert_eq!(Ready::parse(&bad.to_line()).unwrap(), bad);
        for wrong in [
            "{\"ready\":true}",
            "{\"ready\":true,\"monitor_pid\":0,\"pid\":3}",
            "{\"ready\":false}",
            "not json",
        ] {
            assert!(Ready::parse(wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    fn failure_text_is_bounded_at_a_char_boundary() {
        let long = format!("{}the end", "é".repeat(MAX_ERROR_LEN));
        let Ready::Failed { error } = Ready::failed(&long) else {
            unreachable!()
        };
        assert!(error.len() <= MAX_ERROR_LEN);
        assert!(error.ends_with("the end"));
    }
}
