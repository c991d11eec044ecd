//! Control requests on `DIR/control.sock`: one JSON object per line, one JSON reply line
//! each.
//!
//! ```text
//! → {"resize":{"height":40,"width":120}}     ← {"ok":true}
//! → {"close_stdin":true}                     ← {"ok":true}
//! → {"frobnicate":1}                         ← {"error":"..."}
//! ```
//!
//! A line longer than [`MAX_LINE`] bytes is answered with an error and the connection is
//! closed.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The longest request line the monitor reads, newline included.
pub const MAX_LINE: usize = 4096;

/// A request to the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RequestWire", into = "RequestWire")]
pub enum ControlRequest {
    /// Sets the terminal's window size (`TIOCSWINSZ`); an error without `--tty`.
    Resize {
        /// Rows.
        height: u16,
        /// Columns.
        width: u16,
    },
    /// Closes the container's stdin (the process reads EOF); with a terminal, sends the
    /// end-of-file character (`^D`) and accepts no more input.
    CloseStdin,
}

/// A window size.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Size {
    height: u16,
    width: u16,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resize: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    close_stdin: Option<bool>,
}

impl TryFrom<RequestWire> for ControlRequest {
    type Error = String;

    fn try_from(w: RequestWire) -> Result<ControlRequest, String> {
        match (w.resize, w.close_stdin) {
            (Some(Size { height, width }), None) => Ok(ControlRequest::Resize { height, width }),
            (None, Some(true)) => Ok(ControlRequest::CloseStdin),
            (None, Some(false)) => Err("close_stdin must be true".into()),
            (None, None) => Err("empty request: expected resize or close_stdin".into()),
            (Some(_), Some(_)) => Err("one request per line".into()),
        }
    }
}

impl From<ControlRequest> for RequestWire {
    fn from(r: ControlRequest) -> RequestWire {
        match r {
            ControlRequest::Resize { height, width } => RequestWire {
                resize: Some(Size { height, width }),
                close_stdin: None,
            },
            ControlRequest::CloseStdin => RequestWire {
                resize: None,
                close_stdin: Some(true),
            },
        }
    }
}

impl ControlRequest {
    /// Parses one request line (with or without its newline).
    pub fn parse(line: &[u8]) -> Result<ControlRequest> {
        serde_json::from_slice(line.trim_ascii_end())
            .map_err(|e| Error::malformed("control request", &e))
    }

    /// The request line as sent, with its newline.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a request always serializes");
        line.push('\n');
        line
    }
}

/// The monitor's reply to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ControlResponse {
    /// `{"ok":true}`: done.
    Ok {
        /// Always true.
        ok: bool,
    },
    /// `{"error":"..."}`: refused or failed.
    Error {
        /// Why.
        error: String,
    },
}

impl ControlResponse {
    /// `{"ok":true}`.
    pub fn ok() -> ControlResponse {
        ControlResponse::Ok { ok: true }
    }

    /// `{"error":...}`.
    pub fn error(e: impl Into<String>) -> ControlResponse {
        ControlResponse::Error { error: e.into() }
    }

    /// The reply line, with its newline.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a reply always serializes");
        line.push('\n');
        line
    }

    /// Parses one reply line.
    pub fn parse(line: &str) -> Result<ControlResponse> {
        serde_json::from_str(line.trim_end()).map_err(|e| Error::malformed("control reply", &e))
    }

    /// `Ok(())` for `{"ok":true}`, the error text otherwise.
    pub fn into_result(self) -> Result<(), String> {
        match self {
            ControlResponse::Ok { ok: true } => Ok(()),
            ControlResponse::Ok { ok: false } => Err("not ok".into()),
            ControlResponse::Error { error } => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let r = ControlRequest::parse(b"{\"resize\":{\"height\":40,\"width\":120}}\n").unwrap();
        assert_eq!(
            r,
            ControlRequest::Resize {
                height: 40,
                width: 120
            }
        );
        assert_eq!(r.to_line(), "{\"resize\":{\"height\":40,\"width\":120}}\n");
        let c = ControlRequest::parse(b"{\"close_stdin\":true}").unwrap();
        assert_eq!(c, ControlRequest::CloseStdin);
        assert_eq!(c.to_line(), "{\"close_stdin\":true}\n");
        for bad in [
            &b"{}"[..],
            b"{\"close_stdin\":false}",
            b"{\"resize\":{\"height\":1,\"width\":2},\"close_stdin\":true}",
            b"{\"resize\":{\"height\":70000,\"width\":2}}",
            b"{\"resize\":{\"height\":-1,\"width\":2}}",
            b"{\"resize\":{\"height\":1}}",
            b"{\"frobnicate\":1}",
            b"[1,2]",
            b"\xff\xfe",
            b"",
        ] {
            assert!(
                ControlRequest::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn replies() {
        assert_eq!(ControlResponse::ok().to_line(), "{\"ok\":true}\n");
        let e = ControlResponse::error("no terminal");
        assert_eq!(e.to_line(), "{\"error\":\"no terminal\"}\n");
        assert_eq!(ControlResponse::parse(&e.to_line()).unwrap(), e);
        assert_eq!(
            ControlResponse::parse("{\"ok\":true}")
                .unwrap()
                .into_result(),
            Ok(())
        );
        assert_eq!(e.into_result(), Err("no terminal".to_string()));
    }
}
