//! Wrong, hostile and unauthorised requests, raw on the API socket: docker's statuses and
//! `{"message": ...}` errors, bounded bodies, garbage, stalled clients, and a socket only
//! root may use.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use common::{raw_request, run_with_timeout, Daemon, OutputExt, COMMAND_TIMEOUT, DOCKER, IMAGE};

fn create_body(cmd: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"Image": IMAGE, "Cmd": cmd})).unwrap()
}

#[test]
fn errors_have_dockers_statuses_and_messages() {
    let d = Daemon::with_image();
    let r = d.request("POST", "/v1.47/containers/create", Some(b"{not json"));
    r.error(400);
    let msg = d
        .request("POST", "/v1.47/containers/create", Some(br#"{"Image": 5}"#))
        .error(400);
    assert!(msg.contains("Image"), "{msg}");
    d.request("POST", "/v1.47/containers/create", Some(b""))
        .error(400);
    let msg = d
        .request(
            "POST",
            "/v1.47/containers/create",
            Some(br#"{"Image": "nosuch:v1"}"#),
        )
        .error(404);
    assert!(msg.contains("No such image"), "{msg}");

    let msg = d
        .request("GET", "/v1.47/containers/nosuch/json", None)
        .error(404);
    assert_eq!(msg, "No such container: nosuch");
    d.request("POST", "/v1.47/containers/nosuch/start", None)
        .error(404);
    d.request("DELETE", "/v1.47/containers/nosuch", None)
        .error(404);
    d.request("GET", "/v1.47/exec/nosuch/json", None).error(404);
    d.request("DELETE", "/v1.47/images/nosuch:v1", None)
        .error(404);
    d.request("GET", "/v1.47/no/such/path", None).error(404);
    d.request("GET", "/no-such-path", None).error(404);

    let msg = d.request("GET", "/v1.12/info", None).error(400);
    assert!(msg.contains("too old"), "{msg}");
    let msg = d.request("GET", "/v9.99/info", None).error(400);
    assert!(msg.contains("too new"), "{msg}");
    d.request("GET", "/v1.47/containers/a%00b/json", None)
        .error(400);
    d.request(
        "POST",
        "/v1.47/containers/create?name=../escape",
        Some(&create_body(&["true"])),
    )
    .error(400);
    d.request("GET", "/v1.47/containers/json?filters=garbage", None)
        .error(400);
    d.request("GET", "/v1.47/containers/json?limit=many", None)
        .error(400);

    // Names in use, and removing what runs.
    let body = create_body(&["sleep", "1000"]);
    let made = d.request("POST", "/v1.47/containers/create?name=dup", Some(&body));
    assert_eq!(made.status, 201, "{}", made.text());
    let id = made.json()["Id"].as_str().unwrap().to_string();
    let msg = d
        .request("POST", "/v1.47/containers/create?name=dup", Some(&body))
        .error(409);
    assert!(msg.contains("is already in use"), "{msg}");
    let msg = d
        .request(
            "POST",
            "/v1.47/containers/dup/exec",
            Some(br#"{"Cmd": ["true"]}"#),
        )
        .error(409);
    assert!(msg.contains("is not running"), "{msg}");
    assert_eq!(
        d.request("POST", "/v1.47/containers/dup/start", None)
            .status,
        204
    );
    assert_eq!(
        d.request("POST", "/v1.47/containers/dup/start", None)
            .status,
        304
    );
    let msg = d
        .request("DELETE", "/v1.47/containers/dup", None)
        .error(409);
    assert!(msg.contains("cannot remove a running container"), "{msg}");
    d.request("POST", "/v1.47/containers/dup/kill?signal=NOPE", None)
        .error(400);
    let r = d.request("DELETE", &format!("/v1.47/containers/{id}?force=1"), None);
    assert_eq!(r.status, 204, "{}", r.text());
    d.request("GET", &format!("/v1.47/containers/{id}/json"), None)
        .error(404);

    // Unversioned paths are the newest version.
    let ping = d.request("GET", "/_ping", None);
    assert_eq!((ping.status, ping.text().as_str()), (200, "OK"));
    assert_eq!(ping.header("Api-Version"), Some("1.47"));
    d.finish();
}

fn ping_ok(d: &Daemon) {
    let r = d.request("GET", "/_ping", None);
    assert_eq!((r.status, r.text().as_str()), (200, "OK"), "{}", r.head);
}

#[test]
fn oversized_and_garbage_requests_leave_the_daemon_serving() {
    let d = Daemon::start();
    let pid = d.pid().unwrap();
    let big = vec![b' '; 5 << 20];
    let r = d.request("POST", "/v1.47/containers/create", Some(&big));
    assert!(
        r.status == 413 || r.status == 400,
        "{}\n{}",
        r.head,
        r.text()
    );
    ping_ok(&d);

    // The same, chunked (no length known up front).
    let mut req = b"POST /v1.47/containers/create HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..80 {
        req.extend_from_slice(format!("{:x}\r\n", 64 << 10).as_bytes());
        req.extend(std::iter::repeat_n(b' ', 64 << 10));
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = raw_request(&d.sock, &req);
    assert!(r.status == 413 || r.status == 400, "{}", r.head);
    ping_ok(&d);

    // A body that ends before its Content-Length, then the client hangs up.
    {
        let mut s = UnixStream::connect(&d.sock).unwrap();
        s.write_all(b"POST /v1.47/containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n{\"Image\":")
            .unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        s.set_read_timeout(Some(COMMAND_TIMEOUT)).unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    ping_ok(&d);

    // Not HTTP at all: a TLS ClientHello, binary noise, a huge header.
    for junk in [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        (0..=255u8).cycle().take(100_000).collect(),
        format!(
            "GET /_ping HTTP/1.1\r\nHost: d\r\nX-Big: {}\r\n\r\n",
            "a".repeat(1 << 20)
        )
        .into_bytes(),
    ] {
        let mut s = UnixStream::connect(&d.sock).unwrap();
        let _ = s.write_all(&junk);
        let _ = s.shutdown(std::net::Shutdown::Write);
        s.set_read_timeout(Some(COMMAND_TIMEOUT)).unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
        ping_ok(&d);
    }

    // Stalled and idle clients do not block others.
    let mut stalled = Vec::new();
    for _ in 0..100 {
        let mut s = UnixStream::connect(&d.sock).unwrap();
        s.write_all(b"GET /_ping HTTP/1.1\r\nHost: ").unwrap();
        stalled.push(s);
    }
    ping_ok(&d);
    assert_eq!(d.docker_ok(&["ps", "-q"]).trim(), "");
    drop(stalled);
    std::thread::sleep(Duration::from_millis(200));
    ping_ok(&d);
    assert_eq!(d.pid(), Some(pid));
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "berthd died"
    );
    d.finish();
}

#[test]
fn the_socket_is_root_only() {
    let d = Daemon::start();
    let meta = std::fs::metadata(&d.sock).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), 0);
    // The directory lets others through (0711): only the socket's mode stops them.
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        DOCKER,
        "-H",
    ])
    .arg(format!("unix://{}", d.sock.display()))
    .arg("ps")
    .env("DOCKER_CONFIG", "/nonexistent")
    .env_remove("DOCKER_HOST");
    let out = run_with_timeout(c, None, COMMAND_TIMEOUT);
    assert_ne!(
        out.code(),
        0,
        "a non-root user listed containers:\n{}",
        out.out()
    );
    assert!(out.err().contains("permission denied"), "{}", out.err());
    d.finish();
}

#[test]
fn racing_creates_of_one_name_leave_one_container_and_nothing_else() {
    let d = Daemon::with_image();
    let outs: Vec<std::process::Output> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..6)
            .map(|_| s.spawn(|| d.docker(&["create", "--name", "same", IMAGE, "sleep", "1000"])))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let won = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "{outs:?}");
    for o in outs.iter().filter(|o| !o.status.success()) {
        assert!(o.err().contains("is already in use"), "{}", o.err());
    }
    assert_eq!(d.docker_ok(&["ps", "-aq"]).lines().count(), 1);
    d.docker_ok(&["start", "same"]);
    // finish() checks that the losers left no mount (rootfs, network namespace) behind.
    d.finish();
}
