//! `SCMP_ACT_NOTIFY`: the listener fd goes to the seccomp agent at `linux.seccomp.listenerPath`
//! together with the container process state (config-linux.md "The Container Process State").
//!
//! The parent connects to the agent's socket before cloning (the path is a host path, out of
//! reach after pivot); the init installs the filter just before exec and sends the fd over that
//! connection, then closes it.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::LinuxSeccomp;

use crate::error::{Context, Error, Result};

/// The agent connection and what to tell it.
#[derive(Debug)]
pub struct Agent {
    socket: UnixStream,
    metadata: String,
}

/// Connects to the agent when the compiled filter uses NOTIFY.
pub fn connect(profile: &LinuxSeccomp, filter: &berth_seccomp::Filter) -> Result<Option<Agent>> {
    if !filter.needs_notify() {
        return Ok(None);
    }
    let path = profile.listener_path().as_ref().ok_or_else(|| {
        Error::config(
            "linux.seccomp.listenerPath",
            "required when SCMP_ACT_NOTIFY is used",
        )
    })?;
    let socket = UnixStream::connect(path).ctx(|| {
        format!(
            "linux.seccomp.listenerPath: connecting to {}",
            path.display()
        )
    })?;
    Ok(Some(Agent {
        socket,
        metadata: profile.listener_metadata().clone().unwrap_or_default(),
    }))
}

/// The container process state document.
pub fn process_state(state_json: &str, metadata: &str) -> String {
    let state: serde_json::Value =
        serde_json::from_str(state_json).unwrap_or(serde_json::Value::Null);
    let pid = state
        .get("pid")
        .cloned()
        .unwrap_or(serde_json::Value::from(0));
    serde_json::json!({
        "ociVersion": crate::SPEC_VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": metadata,
        "state": state,
    })
    .to_string()
}

impl Agent {
    /// Sends the listener fd and the state in one `sendmsg`, then closes the connection.
    pub fn send(self, listener: &OwnedFd, state_json: &str) -> Result<()> {
        let doc = process_state(state_json, &self.metadata);
        let fds = [listener.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        sendmsg::<()>(
            self.socket.as_raw_fd(),
            &[IoSlice::new(doc.as_bytes())],
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| {
            Error::Init(format!(
                "linux.seccomp.listenerPath: sending the seccomp fd: {e}"
            ))
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_state_shape() {
        let doc = process_state(
            r#"{"ociVersion":"1.3.0","id":"c","status":"created","pid":42,"bundle":"/b"}"#,
            "meta",
        );
        let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(v["fds"][0], "seccompFd");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["metadata"], "meta");
        assert_eq!(v["state"]["id"], "c");
    }
}
