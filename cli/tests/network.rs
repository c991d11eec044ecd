//! Networking of `berth run IMAGE`: bridge (default), none, host, named networks and
//! published ports. Every test runs berth from a thread that has its own network namespace
//! (the "host" of the test), so the machine's interfaces, routes and nftables are never
//! touched; children of that thread (berth, and through it the containers' plumbing) inherit it.

mod common;

use std::fs;
use std::ops::Deref;
use std::process::Command;

use common::{ImageStore, OutputExt};

/// A store holding the busybox image (its containers on the default bridge network), driven
/// from a thread in a fresh network namespace.
struct Net(ImageStore);

impl Deref for Net {
    type Target = ImageStore;

    fn deref(&self) -> &ImageStore {
        &self.0
    }
}

impl Net {
    fn new() -> Net {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare net");
        let n = Net(ImageStore::new(&[], &[]));
        sh("ip link set lo up");
        n
    }

    fn ip_of(&self, id: &str) -> String {
        let out = self
            .b
            .cmd(&["exec", id, "sh", "-c", "ip -4 -o addr show eth0"])
            .ok()
            .out();
        out.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|cidr| cidr.split('/').next())
            .unwrap_or_else(|| panic!("no address in {out:?}"))
            .to_string()
    }

    /// Nothing of any container left: no veth, lease, port rule or pinned namespace.
    fn assert_no_network_debris(&self) {
        let links = sh("ip -o link show");
        assert!(!links.contains(" bv"), "veths left: {links}");
        let rules = sh("nft list table ip berth 2>/dev/null");
        assert!(!rules.contains("ctr:"), "port rules left: {rules}");
        let netns = self.store.join("net/netns");
        let left: Vec<_> = fs::read_dir(&netns)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "pinned namespaces left: {left:?}");
        let ipam = self.store.join("net/ipam/berth.json");
        if let Ok(text) = fs::read_to_string(&ipam) {
            let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
            let leases = doc
                .get("leases")
                .and_then(|l| l.as_object())
                .map_or(0, serde_json::Map::len);
            assert_eq!(leases, 0, "leases left: {text}");
        }
        self.b.assert_clean();
    }

    fn remove_networks(&self) {
        for name in self.cmd(&["network", "ls", "-q"]).ok().out().lines() {
            self.cmd(&["network", "rm", name]).ok();
        }
        let rules = sh("nft list ruleset");
        assert!(!rules.contains("berth"), "nft table left: {rules}");
        assert!(!sh("ip -o link show").contains("berth"), "bridge left");
    }
}

/// A shell command in the calling thread's network namespace; its standard output.
fn sh(script: &str) -> String {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One network test: on a thread of its own (whose network namespace [`Net::new`] replaces),
/// runs `body` with a new [`Net`], then asserts that no network debris is left and removes the
/// networks (asserting that their bridges and nftables go too).
fn net_test(body: impl FnOnce(&Net) + Send + 'static) {
    std::thread::spawn(|| {
        let n = Net::new();
        body(&n);
        n.assert_no_network_debris();
        n.remove_networks();
    })
    .join()
    .unwrap();
}

#[test]
fn two_containers_on_the_bridge_talk() {
    net_test(|n| {
        let a = n.run_sleeper("a", &[]);
        let ip = n.ip_of(&a);
        let b = n.b.id("b");
        let script = format!(
            "ping -c3 -W1 {ip} | grep -o '[0-9] packets received'; hostname; grep -c \"$(hostname)\" /etc/hosts; ip route | grep -c default"
        );
        let out = n
            .run(&b, &["--rm", "busybox", "sh", "-c", &script])
            .ok()
            .out();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0] != "0 packets received", "{out}");
        assert_eq!(lines[1..], [b.as_str(), "1", "1"], "{out}");
        // The container's name resolves in its own /etc/hosts, the bridge carries the gateway.
        let gw = sh("ip -4 -o addr show berth0");
        assert!(gw.contains("inet 10.90.0.1/16"), "{gw}");
        n.b.delete_force(&a);
    });
}

/// The README's example: the address a container got is found with `hostname -i` (its own
/// `/etc/hosts`), not guessed.
#[test]
fn readme_example_finds_the_address_with_hostname_i() {
    net_test(|n| {
        let web = n.b.id("web");
        n.run(
            &web,
            &[
                "-d",
                "busybox",
                "sh",
                "-c",
                "echo hi > /tmp/index.html; httpd -f -p 80 -h /tmp",
            ],
        )
        .ok();
        let ip = n.b.cmd(&["exec", &web, "hostname", "-i"]).ok().out();
        let ip = ip.trim();
        assert_eq!(ip, n.ip_of(&web));
        let url = format!("http://{ip}/index.html");
        let out = n
            .run(&n.b.id("get"), &["--rm", "busybox", "wget", "-qO-", &url])
            .ok();
        assert_eq!(out.out(), "hi\n");
        n.b.delete_force(&web);
    });
}

#[test]
fn a_published_port_answers_and_goes_at_delete() {
    net_test(|n| {
        let web = n.b.id("web");
        n.run(
            &web,
            &[
                "-d",
                "-p",
                "8080:80",
                "busybox",
                "sh",
                "-c",
                "mkdir -p /www && echo published > /www/index.html && exec httpd -f -p 80 -h /www",
            ],
        )
        .ok();
        let rules = sh("nft list table ip berth");
        assert!(rules.contains("dport 8080 dnat"), "{rules}");
        // From the host (the test's namespace) to the host's own bridge address.
        let mut body = String::new();
        for _ in 0..50 {
            body = sh("timeout 3 busybox wget -q -O- http://10.90.0.1:8080/ 2>/dev/null");
            if !body.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(body, "published\n");
        // The same host port twice is refused, naming it, and leaves nothing.
        let other = n.b.id("other");
        n.run(&other, &["-d", "-p", "8080:81", "busybox", "sleep", "1000"])
            .fails_with("8080");
        n.b.assert_no_state(&other);
        n.b.delete_force(&web);
        assert!(!sh("nft list table ip berth").contains("8080"));
    });
}

#[test]
fn none_host_and_named_networks() {
    net_test(|n| {
        let out = n.run_ok(
            "none",
            &[
                "--rm",
                "--network",
                "none",
                "busybox",
                "sh",
                "-c",
                "ip -o link | wc -l; ping -c1 -W1 127.0.0.1 | grep -c '1 packets received'",
            ],
        );
        assert_eq!(out, "1\n1\n");
        sh("ip link add bhtest0 type veth peer name bhtest1");
        let out = n.run_ok(
            "host",
            &["--rm", "--network", "host", "busybox", "ip", "-o", "link"],
        );
        assert!(out.contains("bhtest0"), "{out}");
        sh("ip link del bhtest0");
        // A named network with its own bridge and subnet.
        n.cmd(&["network", "create", "--subnet", "10.123.0.0/24", "lab"])
            .ok();
        let ls = n.cmd(&["network", "ls"]).ok().out();
        assert!(ls.contains("lab") && ls.contains("10.123.0.0/24"), "{ls}");
        let out = n.run_ok(
            "lab",
            &[
                "--rm",
                "--network",
                "lab",
                "busybox",
                "sh",
                "-c",
                "ip -4 -o addr show eth0",
            ],
        );
        assert!(out.contains("inet 10.123.0."), "{out}");
        // Errors name what is wrong and leave nothing.
        let id = n.b.id("bad");
        n.run(&id, &["--rm", "--network", "nosuch", "busybox", "true"])
            .fails_with("nosuch");
        n.run(
            &id,
            &[
                "--rm",
                "--network",
                "none",
                "-p",
                "80:80",
                "busybox",
                "true",
            ],
        )
        .fails_with("bridge network");
        n.run(&id, &["--rm", "-p", "99999:80", "busybox", "true"])
            .fails_with("99999");
        n.cmd(&[
            "network",
            "create",
            "--subnet",
            "10.123.0.0/16",
            "overlapping",
        ])
        .fails_with("10.123.0.0");
        assert!(n.bundles().is_empty(), "bundles left: {:?}", n.bundles());
    });
}

/// A container whose state vanished (as after a crash or a reboot that wiped /run): `network
/// prune` removes its lease, veth, port rules and pinned namespace.
#[test]
fn prune_repairs_what_a_crash_left() {
    net_test(|n| {
        let ghost = n.run_sleeper("ghost", &["-p", "8082:80"]);
        let pid: i32 = n.b.state(&ghost)["pid"]
            .as_i64()
            .unwrap()
            .try_into()
            .unwrap();
        // SAFETY: kill with integer arguments; the pid is this test's container init.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        common::poll_until(std::time::Duration::from_secs(5), || !common::is_alive(pid));
        // Lose berth's state of it, as a crash would.
        let state_dir = n.b.root.join(&ghost);
        let saved = n.b.path().join("saved-state");
        fs::rename(&state_dir, &saved).unwrap();
        assert!(
            sh("ip -o link").contains(" bv"),
            "veth present before prune"
        );
        n.cmd(&["network", "prune"]).ok();
        assert!(!sh("ip -o link").contains(" bv"), "prune removed the veth");
        assert!(!sh("nft list table ip berth").contains("8082"));
        // Put the state back so the container's cgroup and bundle are removed as usual.
        fs::rename(&saved, &state_dir).unwrap();
        n.b.delete_force(&ghost);
    });
}

/// kill -9 of `delete -f` (processes gone, nothing else undone) and of `run` (network
/// attached, no container state yet): a second `delete -f` removes the veth, lease, port rule
/// and pinned namespace in both cases.
#[test]
fn a_killed_delete_or_run_leaves_nothing_after_delete() {
    net_test(|n| {
        let first = n.run_sleeper("killed-delete", &["-p", "8083:80"]);
        n.killed_at("delete:stopped", &["delete", "--force", &first]);
        assert!(
            sh("ip -o link").contains(" bv"),
            "the veth went before the state"
        );
        n.cmd(&["delete", "--force", &first]).ok();

        let second = n.b.id("killed-run");
        n.b.track(&second);
        let args = n.run_args(&second, &["-p", "8084:80", "busybox", "true"]);
        n.killed_at("run:attached", &args);
        assert!(sh("ip -o link").contains(" bv"), "no veth was attached");
        n.cmd(&["delete", "--force", &second]).ok();
    });
}
