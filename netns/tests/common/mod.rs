//! Test harness: every scenario runs on a thread that has its own network and mount namespaces
//! (the "test host"), so the real host's interfaces, routes, sysctls and nftables are never
//! touched. Processes started are killed by pid; namespace files are unmounted at the end, and
//! the namespaces die with the thread.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Runs `f(state_dir)` inside a fresh test-host namespace pair; panics propagate after cleanup.
pub fn in_test_host(f: impl FnOnce(&Path, &mut Procs) + Send) {
    assert!(nix::unistd::geteuid().is_root(), "these tests need root");
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS).expect("unshare net+mnt");
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .expect("make / private");
            run(&["ip", "link", "set", "lo", "up"]);
            let dir = tempfile::tempdir().expect("tempdir");
            let state = dir.path().join("state");
            let mut procs = Procs(Vec::new());
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&state, &mut procs)));
            procs.kill_all();
            for sub in ["state/netns", "ns"] {
                if let Ok(entries) = fs::read_dir(dir.path().join(sub)) {
                    for e in entries.flatten() {
                        let _ = berth_netns::namespace::remove(&e.path());
                    }
                }
            }
            drop(dir);
            if let Err(panic) = result {
                std::panic::resume_unwind(panic);
            }
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    });
}

/// Processes a test started, killed by pid at the end.
pub struct Procs(Vec<Child>);

impl Procs {
    pub fn spawn(&mut self, argv: &[&str]) -> u32 {
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {argv:?}: {e}"));
        let pid = child.id();
        self.0.push(child);
        pid
    }

    pub fn kill_all(&mut self) {
        for mut c in self.0.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn output(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {argv:?}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn run(argv: &[&str]) -> String {
    let out = output(argv);
    assert!(
        out.status.success(),
        "{argv:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `argv` inside the network namespace at `ns`.
pub fn in_ns(ns: &Path, argv: &[&str]) -> Output {
    let flag = format!("--net={}", ns.display());
    let mut full = vec!["nsenter", flag.as_str()];
    full.extend_from_slice(argv);
    output(&full)
}

pub fn ping(from: &Path, to: &str) -> bool {
    in_ns(from, &["busybox", "ping", "-c1", "-W2", to])
        .status
        .success()
}

/// `busybox wget` of a URL from inside `ns`; the body on success.
pub fn wget(ns: &Path, url: &str) -> Option<String> {
    // busybox 1.35 wget crashes with -T: bound it with timeout(1) instead.
    let out = in_ns(
        ns,
        &["timeout", "5", "busybox", "wget", "-q", "-O", "-", url],
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Retries `f` for up to `secs` seconds.
pub fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Interface names of the test host.
pub fn links() -> Vec<String> {
    run(&["ip", "-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

pub fn nft_ruleset() -> String {
    run(&["nft", "list", "ruleset"])
}

/// A namespace the test makes (a client, an "internet"), linked to the test host by a veth:
/// `host_if` with `host_addr` on the test host, `eth0` with `ns_addr` inside, and a default
/// route inside via the test host when `route` is set.
pub fn uplink(
    base: &Path,
    name: &str,
    host_if: &str,
    host_addr: &str,
    ns_addr: &str,
    route: bool,
) -> PathBuf {
    let ns = base.join("ns").join(name);
    berth_netns::namespace::create(&ns).expect("create test namespace");
    let ns_str = ns.to_str().unwrap();
    run(&[
        "ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns_str,
    ]);
    run(&["ip", "addr", "add", host_addr, "dev", host_if]);
    run(&["ip", "link", "set", host_if, "up"]);
    for argv in [
        vec!["ip", "link", "set", "lo", "up"],
        vec!["ip", "addr", "add", ns_addr, "dev", "eth0"],
        vec!["ip", "link", "set", "eth0", "up"],
    ] {
        let out = in_ns(&ns, &argv);
        assert!(
            out.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if route {
        let gw = host_addr.split('/').next().unwrap();
        let out = in_ns(&ns, &["ip", "route", "add", "default", "via", gw]);
        assert!(
            out.status.success(),
            "default route: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ns
}

/// The directory of namespace files the test made (beside the state dir).
pub fn base(state: &Path) -> &Path {
    state.parent().unwrap()
}

/// Asserts that nothing of container `id` is left on the test host or in the state.
pub fn assert_no_trace(state: &Path, id: &str) {
    let veth = berth_netns::veth_name(id);
    assert!(
        !links().contains(&veth),
        "veth {veth} of {id} left: {:?}",
        links()
    );
    assert!(
        !berth_netns::netns_path(state, id).exists(),
        "netns file of {id} left"
    );
    assert!(
        berth_netns::attachment(state, id).unwrap().is_none(),
        "record of {id} left"
    );
    assert!(
        berth_netns::attachments(state, id).unwrap().is_empty(),
        "records of further networks of {id} left"
    );
    for n in berth_netns::network::list(state).unwrap() {
        let leases = n.ipam(state).leases().unwrap();
        assert!(
            !leases.values().any(|o| o == id),
            "lease of {id} left in {}: {leases:?}",
            n.name
        );
    }
    let rules = nft_ruleset();
    assert!(
        !rules.contains(&format!("\"ctr:{id}\"")),
        "nft rules of {id} left:\n{rules}"
    );
}
