//! `process.terminal` as conmon and containerd's shim use it: the test binds a console socket,
//! `berth create --console-socket` sends the pty master over it (SCM_RIGHTS), and after
//! `start` the container's output arrives on the master, with the pty as its controlling
//! terminal. A terminal without a console socket is a clear `create` error.

mod common;

use std::fs::File;
use std::io::{IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{berth_test, Berth, OutputExt};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::{json, Value};

/// `b.config(args)` with `process.terminal` set.
fn terminal_config(b: &Berth, args: &[&str]) -> Value {
    let mut c = b.config(args);
    c["process"]["terminal"] = json!(true);
    c
}

/// `berth create --console-socket <socket> [extra...] --bundle <bundle of config> <id>`,
/// without checking the outcome.
fn create_with_console(
    b: &Berth,
    id: &str,
    config: &Value,
    socket: &Path,
    extra: &[&str],
) -> Output {
    let bundle = b.bundle(id, config);
    let mut args = vec!["create", "--console-socket", socket.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend(["--bundle", bundle.to_str().unwrap(), id]);
    b.cmd(&args)
}

/// Receives one descriptor (and the payload that came with it) from an accepted connection.
fn receive_fd(listener: &UnixListener) -> (OwnedFd, String) {
    listener.set_nonblocking(true).unwrap();
    let mut conn = None;
    assert!(
        common::poll_until(Duration::from_secs(10), || {
            conn = listener.accept().ok();
            conn.is_some()
        }),
        "berth never connected to the console socket"
    );
    let (stream, _) = conn.unwrap();
    stream.set_nonblocking(false).unwrap();
    let mut payload = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut payload)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .unwrap();
    let len = msg.bytes;
    let fd = msg
        .cmsgs()
        .unwrap()
        .find_map(|c| match c {
            ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
            _ => None,
        })
        .expect("no descriptor in the console socket message");
    // SAFETY: SCM_RIGHTS installed a new descriptor in this process that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    (fd, String::from_utf8_lossy(&payload[..len]).into_owned())
}

/// Reads the pty master until the container side hangs up (EIO); gives up after a while, and
/// then `needle` must have arrived.
fn read_master(master: OwnedFd, needle: &str) -> String {
    nix::fcntl::fcntl(
        master.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let mut file = File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let done = common::poll_until(Duration::from_secs(10), || match file.read(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Ok(0) | Err(_) => true,
        Ok(n) => {
            out.extend_from_slice(&buf[..n]);
            false
        }
    });
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(done || text.contains(needle), "pty output so far: {text:?}");
    text
}

#[test]
fn console_socket_receives_the_pty_master() {
    berth_test(|b| {
        let (socket, listener) = b.console_socket();
        let id = b.id("tty");
        let c = terminal_config(
            b,
            &[
                "sh",
                "-c",
                "tty; echo ctty=$(cut -d' ' -f7 /proc/self/stat); echo hi",
            ],
        );
        let pid_file = b.path().join("pid");
        create_with_console(
            b,
            &id,
            &c,
            &socket,
            &["--pid-file", pid_file.to_str().unwrap()],
        )
        .ok();
        b.track_pid_file(&pid_file);
        let (master, payload) = receive_fd(&listener);
        assert!(payload.starts_with("/dev/pts/"), "payload {payload:?}");
        b.start(&id);
        let text = read_master(master, "hi");
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        assert!(
            lines.iter().any(|l| l.starts_with("/dev/pts/")),
            "tty did not print a pty: {text:?}"
        );
        assert!(lines.contains(&"hi"), "{text:?}");
        let ctty = lines.iter().find_map(|l| l.strip_prefix("ctty="));
        assert!(
            ctty.is_some_and(|t| t != "0"),
            "the pty is not the controlling terminal: {text:?}"
        );
        b.wait_status(&id, "stopped");
        b.delete(&id);
    });
}

/// A terminal without a console socket, or with one that does not exist, is a `create`
/// error naming `--console-socket`, and leaves no state.
#[test]
fn terminal_without_a_usable_console_socket_is_a_create_error() {
    berth_test(|b| {
        let c = terminal_config(b, &["true"]);
        let err = b.assert_create_fails(&b.id("notty"), &c, "--console-socket");
        assert!(err.contains("process.terminal"), "{err}");
        let id = b.id("nosock");
        let missing = b.path().join("missing.sock");
        create_with_console(b, &id, &c, &missing, &[]).fails_with("--console-socket");
        b.assert_no_state(&id);
    });
}

/// CVE-2025-52565 class: the pty is verified (a pty of a devpts, its slave opened from the
/// master, /dev/console bound from that descriptor), so a `/dev/ptmx` redirected to a procfs
/// file (here by a createContainer hook, standing in for a racer sharing the rootfs) fails
/// `create` instead of becoming the container's console and stdio.
#[test]
fn a_redirected_ptmx_never_becomes_the_console() {
    berth_test(|b| {
        let rootfs = b.path().join("redirected-ptmx");
        common::busybox_rootfs(&rootfs);
        let (socket, _listener) = b.console_socket();
        let id = b.id("ptmx");
        let mut c = terminal_config(b, &["true"]);
        c["root"]["path"] = json!(rootfs);
        let ptmx = rootfs.join("dev/ptmx");
        c["hooks"] = json!({"createContainer": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("rm -f {0} && ln -s /proc/sys/kernel/domainname {0}", ptmx.display())],
        }]});
        create_with_console(b, &id, &c, &socket, &[]).fails_with("not a pty of a devpts");
    });
}
