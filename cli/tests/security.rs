//! Host protection against hostile images: berth's own binary never becomes reachable from a
//! container (CVE-2019-5736), and `exec` into a running container sees the same confinement.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{poll_until, Berth, OutputExt};

/// An image whose entrypoint is `#!/proc/self/exe` gets the sealed exec trampoline as its
/// interpreter, never the host's berth binary, and the container cannot write to it.
#[test]
fn proc_self_exe_interpreter_never_reaches_the_host_binary() {
    let b = Berth::new();
    let evil = b.rootfs.join("evil");
    fs::write(&evil, "#!/proc/self/exe\n").unwrap();
    fs::set_permissions(&evil, fs::Permissions::from_mode(0o755)).unwrap();
    let id = b.id("evil");
    let pid = b.create(&id, &b.config(&["/evil"]));
    b.start(&id);
    let berth_exe = fs::canonicalize(env!("CARGO_BIN_EXE_berth")).unwrap();
    let mut seen = Vec::new();
    poll_until(Duration::from_millis(300), || {
        if let Ok(target) = fs::read_link(format!("/proc/{pid}/exe")) {
            seen.push(target);
        }
        false
    });
    assert!(!seen.is_empty(), "the container process vanished");
    for target in &seen {
        assert_ne!(
            target, &berth_exe,
            "container process runs the host's berth binary"
        );
        assert!(
            target.to_string_lossy().contains("memfd:berth-exec"),
            "unexpected exe {target:?}"
        );
    }
    // The trampoline is sealed: opening it for writing through /proc fails.
    let write = fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/exe"));
    if let Ok(mut f) = write {
        use std::io::Write;
        assert!(
            f.write_all(b"owned").is_err(),
            "the trampoline accepted a write"
        );
    }
    b.delete_force(&id);
    b.assert_clean();
}

/// Before it execs, the init is not dumpable, so container processes cannot open its exe or
/// ptrace it. In a user namespace the init runs as a mapped uid; the kernel shows a dumpable
/// task's /proc files as owned by that uid and a non-dumpable one's as owned by root.
#[test]
fn waiting_init_is_not_dumpable() {
    use std::os::unix::fs::MetadataExt;
    let b = Berth::new();
    let id = b.id("waiting");
    let mut c = b.config(&["true"]);
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "user"}));
    c["linux"]["uidMappings"] =
        serde_json::json!([{"containerID": 0, "hostID": 300_000, "size": 65536}]);
    c["linux"]["gidMappings"] =
        serde_json::json!([{"containerID": 0, "hostID": 300_000, "size": 65536}]);
    let pid = b.create(&id, &c);
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.contains("300000"),
        "the init should run as the mapped uid: {uid_line}"
    );
    let owner = fs::metadata(format!("/proc/{pid}/environ")).unwrap().uid();
    assert_eq!(
        owner, 0,
        "a dumpable init's /proc files would belong to uid 300000"
    );
    b.delete_force(&id);
    b.assert_clean();
}

/// `exec` runs inside the container's namespaces with the container's confinement.
#[test]
fn exec_joins_the_container() {
    let b = Berth::new();
    let id = b.id("execd");
    let mut c = b.config(&["sleep", "30"]);
    c["hostname"] = serde_json::json!("inside");
    let pid = b.create(&id, &c);
    b.start(&id);
    let out = b.cmd(&[
        "exec",
        &id,
        "sh",
        "-c",
        "hostname; cat /proc/self/status | grep NoNewPrivs; exit 3",
    ]);
    assert_eq!(out.code(), 3, "{}", out.err());
    assert!(out.out().contains("inside"), "{}", out.out());
    let host_ns = fs::read_link("/proc/self/ns/pid").unwrap();
    assert_ne!(
        fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap(),
        host_ns
    );
    let err = b.cmd(&["exec", &id, "no-such-program"]);
    assert_eq!(err.code(), 127, "{}", err.err());
    assert!(
        err.err().contains("executable file not found"),
        "{}",
        err.err()
    );
    let json = b.cmd(&["ps", "--format", "json", &id]).ok().out();
    let pids: Vec<i32> = serde_json::from_str(&json).unwrap();
    assert!(pids.contains(&pid), "{json}");
    b.delete_force(&id);
    b.assert_clean();
}
