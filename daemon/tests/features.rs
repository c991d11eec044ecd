//! The rest of the docker CLI's surface against berthd: `cp` both ways (and a hostile upload),
//! named volumes, user-defined networks with name resolution, a published port on the host's
//! loopback, push and search against the registry, save and load, `--init`, health checks,
//! and log rotation.

mod common;

use common::{poll_until, Daemon, OutputExt, IMAGE, STATE_TIMEOUT};

#[test]
fn cp_copies_both_ways_and_refuses_a_hostile_archive() {
    let d = Daemon::with_image();
    d.docker_ok(&["run", "-d", "--name", "box", IMAGE, "sleep", "1000"]);
    let host = d.dir.path().join("in.txt");
    std::fs::write(&host, "from the host\n").unwrap();
    d.docker_ok(&["cp", host.to_str().unwrap(), "box:/tmp/"]);
    assert_eq!(
        d.docker_ok(&["exec", "box", "cat", "/tmp/in.txt"]),
        "from the host\n"
    );

    // A symlink to / inside the container leads nowhere outside it; a symlink is copied
    // as a symlink.
    d.docker_ok(&[
        "exec",
        "box",
        "sh",
        "-c",
        "echo inside > /tmp/f; ln -s / /tmp/up; ln -s /etc/shadow /tmp/lnk",
    ]);
    let out = d.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    d.docker_ok(&["cp", "box:/tmp/up/tmp/f", out.join("f").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(out.join("f")).unwrap(), "inside\n");
    d.docker_ok(&["cp", "box:/tmp/lnk", out.join("lnk").to_str().unwrap()]);
    let meta = std::fs::symlink_metadata(out.join("lnk")).unwrap();
    assert!(meta.file_type().is_symlink());

    // An archive with a `..` entry: 400 naming it, nothing written.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, "x", &b"x"[..]).unwrap();
    let mut bytes = tar.into_inner().unwrap();
    // Rename the entry to ../../evil in the header (the tar crate refuses to write it).
    bytes[..11].copy_from_slice(b"../../evil\0");
    let mut sum: u32 = 0;
    bytes[148..156].copy_from_slice(b"        ");
    for b in &bytes[..512] {
        sum += u32::from(*b);
    }
    let cksum = format!("{sum:06o}\0 ");
    bytes[148..156].copy_from_slice(cksum.as_bytes());
    let resp = d.request("PUT", "/containers/box/archive?path=/tmp", Some(&bytes));
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(resp.text().contains("evil"), "{}", resp.text());
    d.finish();
}

#[test]
fn a_named_volume_outlives_its_containers_and_is_seeded_from_the_image() {
    let d = Daemon::with_image();
    d.docker_ok(&["volume", "create", "data"]);
    d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        IMAGE,
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    assert_eq!(
        d.docker_ok(&["run", "--rm", "-v", "data:/data", IMAGE, "cat", "/data/f"]),
        "kept\n"
    );
    // A new volume mounted over /etc gets the image's /etc.
    let passwd = d.docker_ok(&["run", "--rm", "-v", "etc:/etc", IMAGE, "cat", "/etc/passwd"]);
    assert!(passwd.contains("root:x:0:0"), "{passwd}");
    let ls = d.docker_ok(&["volume", "ls", "--format", "{{.Name}}"]);
    assert!(
        ls.lines().any(|l| l == "data") && ls.lines().any(|l| l == "etc"),
        "{ls}"
    );
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "user",
        "-v",
        "data:/data",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let busy = d.docker(&["volume", "rm", "data"]);
    assert_ne!(busy.code(), 0, "a volume in use was removed");
    d.docker_ok(&["rm", "-f", "user"]);
    d.docker_ok(&["volume", "rm", "data", "etc"]);
    assert!(d.docker(&["volume", "inspect", "data"]).code() != 0);
    d.finish();
}

#[test]
fn containers_on_a_user_defined_network_find_each_other_by_name() {
    let d = Daemon::with_image();
    d.docker_ok(&["network", "create", "--subnet", "10.123.0.0/24", "appnet"]);
    let inspect = d.docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
        "appnet",
    ]);
    assert_eq!(inspect.trim(), "10.123.0.0/24");
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "appnet",
        IMAGE,
        "sh",
        "-c",
        "echo hello-by-name > /tmp/index.html; httpd -f -p 80 -h /tmp",
    ]);
    let got = d.docker_ok(&[
        "run", "--rm", "--network", "appnet", IMAGE, "sh", "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://srv/index.html && exit 0; sleep 0.3; done; exit 1",
    ]);
    assert_eq!(got, "hello-by-name\n");
    let busy = d.docker(&["network", "rm", "appnet"]);
    assert_ne!(busy.code(), 0, "a network in use was removed");
    d.docker_ok(&["rm", "-f", "srv"]);
    d.docker_ok(&["network", "rm", "appnet"]);
    d.finish();
}

#[test]
fn a_published_port_answers_on_the_hosts_loopback() {
    let d = Daemon::with_image();
    d.docker_ok(&[
        "run", "-d", "--name", "web", "-p", "8081:80", IMAGE, "httpd", "-f", "-p", "80", "-h",
        "/etc",
    ]);
    let (served, page) = d.http_get_until("127.0.0.1", 8081, "group", "root:x:0:");
    assert!(served, "127.0.0.1:8081 did not serve /etc/group: {page:?}");
    d.finish();
}

#[test]
fn push_search_save_and_load() {
    let d = Daemon::with_image();
    d.docker_ok(&["tag", IMAGE, "127.0.0.1:5000/team/app:v1"]);
    let push = d.docker_ok(&["push", "127.0.0.1:5000/team/app:v1"]);
    assert!(push.contains("v1: digest: sha256:"), "{push}");
    let found = d.docker_ok(&["search", "--format", "{{.Name}}", "127.0.0.1:5000/app"]);
    assert_eq!(found.trim(), "127.0.0.1:5000/team/app");
    let archive = d.dir.path().join("app.tar");
    d.docker_ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "127.0.0.1:5000/team/app:v1",
    ]);
    d.docker_ok(&["rmi", "127.0.0.1:5000/team/app:v1"]);
    let loaded = d.docker_ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.contains("127.0.0.1:5000/team/app:v1"), "{loaded}");
    assert_eq!(
        d.docker_ok(&[
            "run",
            "--rm",
            "127.0.0.1:5000/team/app:v1",
            "echo",
            "loaded"
        ]),
        "loaded\n"
    );
    d.docker_ok(&["rmi", "127.0.0.1:5000/team/app:v1"]);
    d.finish();
}

#[test]
fn init_health_checks_and_log_rotation() {
    let d = Daemon::with_image();
    let ps = d.docker_ok(&["run", "--rm", "--init", IMAGE, "ps", "-o", "pid,args"]);
    assert!(
        ps.lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("docker-init")),
        "{ps}"
    );

    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        IMAGE,
        "sh",
        "-c",
        "sleep 2; touch /tmp/ok; sleep 1000",
    ]);
    assert!(
        poll_until(STATE_TIMEOUT, || d
            .inspect("hc", "{{.State.Health.Status}}")
            == "healthy"),
        "never healthy: {}",
        d.inspect("hc", "{{json .State.Health}}")
    );
    d.docker_ok(&["rm", "-f", "hc"]);

    d.docker_ok(&[
        "run",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=2",
        IMAGE,
        "sh",
        "-c",
        "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done",
    ]);
    let logs = d.docker_ok(&["logs", "chatty"]);
    assert!(logs.ends_with("line-299\n"), "{logs}");
    assert!(!logs.contains("line-0\n"), "rotation kept everything");
    let refused = d.docker(&["run", "--rm", "--log-driver", "syslog", IMAGE, "true"]);
    assert_ne!(refused.code(), 0);
    assert!(refused.err().contains("syslog"), "{}", refused.err());
    d.finish();
}

/// The leases berthd's networks hold, as `network: address owner` lines.
fn leases(d: &Daemon) -> Vec<String> {
    let mut out = Vec::new();
    let walk = std::process::Command::new("find")
        .arg(&d.data_root)
        .args(["-path", "*/net/ipam/*.json"])
        .output()
        .unwrap();
    for f in String::from_utf8_lossy(&walk.stdout).lines() {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f).unwrap_or_default()).unwrap_or_default();
        for (ip, owner) in v["leases"].as_object().into_iter().flatten() {
            out.push(format!("{f}: {ip} {owner}"));
        }
    }
    out
}

/// The host ends of container veths in the test's namespace.
fn veths(d: &Daemon) -> Vec<String> {
    d.nsenter(&["ip", "-o", "link"])
        .ok("ip link")
        .out()
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .filter(|n| n.starts_with("bv"))
        .map(String::from)
        .collect()
}

#[test]
#[allow(clippy::too_many_lines)]
fn network_connect_and_disconnect() {
    let mut d = Daemon::with_image();
    d.docker_ok(&["network", "create", "--subnet", "10.124.0.0/24", "net1"]);
    d.docker_ok(&["network", "create", "--subnet", "10.125.0.0/24", "net2"]);
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "ca",
        "--network",
        "net1",
        IMAGE,
        "sleep",
        "300",
    ]);
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "cb",
        "--network",
        "net2",
        IMAGE,
        "sleep",
        "300",
    ]);

    // Unknown network or container: 404; a bad body: 400.
    let body = br#"{"Container": "ca"}"#;
    d.request("POST", "/networks/nosuch/connect", Some(body))
        .error(404);
    d.request(
        "POST",
        "/networks/net2/connect",
        Some(br#"{"Container": "nosuch"}"#),
    )
    .error(404);
    let unknown = d.docker(&["network", "connect", "nosuch", "ca"]);
    assert_ne!(unknown.code(), 0);
    assert!(unknown.err().contains("not found"), "{}", unknown.err());

    // b cannot reach a yet.
    assert_ne!(
        d.docker(&["exec", "cb", "ping", "-c1", "-W1", "ca"]).code(),
        0
    );
    d.docker_ok(&["network", "connect", "--alias", "alpha", "net2", "ca"]);
    let msg = d
        .request("POST", "/networks/net2/connect", Some(body))
        .error(403);
    assert!(
        msg.contains("endpoint with name ca already exists in network net2"),
        "{msg}"
    );

    // By name and alias, both ways; a's default route stays on its first network.
    for target in ["ca", "alpha"] {
        d.docker_ok(&["exec", "cb", "ping", "-c1", "-W2", target]);
    }
    d.docker_ok(&["exec", "ca", "ping", "-c1", "-W2", "cb"]);
    let ip2 = d.inspect(
        "ca",
        "{{(index .NetworkSettings.Networks \"net2\").IPAddress}}",
    );
    assert!(ip2.starts_with("10.125.0."), "{ip2}");
    let addr = d.docker_ok(&["exec", "ca", "ip", "-o", "-4", "addr", "show", "eth1"]);
    assert!(addr.contains(&format!("{ip2}/24")), "{addr}");
    let routes = d.docker_ok(&["exec", "ca", "ip", "route"]);
    assert!(
        routes.contains("default via 10.124.0.1 dev eth0"),
        "{routes}"
    );
    assert_eq!(
        d.inspect(
            "ca",
            "{{range $n, $e := .NetworkSettings.Networks}}{{$n}}={{$e.Gateway}},{{$e.MacAddress}},{{$e.Aliases}} {{end}}"
        ),
        format!(
            "net1=10.124.0.1,{},[] net2=10.125.0.1,{},[alpha]",
            mac_of(&d.inspect("ca", "{{(index .NetworkSettings.Networks \"net1\").IPAddress}}")),
            mac_of(&ip2)
        )
    );
    let members = d.docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.Name}}={{.IPv4Address}} {{end}}",
        "net2",
    ]);
    assert!(members.contains(&format!("ca={ip2}/24")), "{members}");
    assert!(members.contains("cb=10.125.0."), "{members}");

    // A restart of the container, and one of berthd, keep the network.
    d.docker_ok(&["restart", "-t", "1", "ca"]);
    d.docker_ok(&["exec", "cb", "ping", "-c1", "-W2", "ca"]);
    d.kill9();
    d.restart();
    assert_eq!(
        d.inspect(
            "ca",
            "{{(index .NetworkSettings.Networks \"net2\").IPAddress}}"
        ),
        ip2
    );
    d.docker_ok(&["exec", "cb", "ping", "-c1", "-W2", "alpha"]);

    // Disconnected: the interface, the address and the names go.
    d.docker_ok(&["network", "disconnect", "net2", "ca"]);
    assert_ne!(
        d.docker(&["exec", "cb", "ping", "-c1", "-W1", "ca"]).code(),
        0
    );
    assert_ne!(
        d.docker(&["exec", "cb", "ping", "-c1", "-W1", &ip2]).code(),
        0
    );
    assert_ne!(
        d.docker(&["exec", "ca", "ip", "link", "show", "eth1"])
            .code(),
        0
    );
    assert_ne!(
        d.docker(&["exec", "ca", "ping", "-c1", "-W1", "cb"]).code(),
        0
    );
    assert_eq!(
        d.inspect(
            "ca",
            "{{range $n, $e := .NetworkSettings.Networks}}{{$n}} {{end}}"
        ),
        "net1"
    );
    let msg = d
        .request("POST", "/networks/net2/disconnect", Some(body))
        .error(500);
    assert!(msg.contains("is not connected to network net2"), "{msg}");

    // A created container, connected before its start.
    d.docker_ok(&[
        "create",
        "--name",
        "cc",
        "--network",
        "net1",
        IMAGE,
        "sleep",
        "300",
    ]);
    d.docker_ok(&["network", "connect", "net2", "cc"]);
    d.docker_ok(&["start", "cc"]);
    d.docker_ok(&["exec", "cb", "ping", "-c1", "-W2", "cc"]);
    d.docker_ok(&["exec", "cc", "ping", "-c1", "-W2", "cb"]);

    // Host and none containers cannot be connected.
    for (name, mode, why) in [
        ("ch", "host", "sharing network namespace"),
        ("cn", "none", "private (none) mode"),
    ] {
        d.docker_ok(&["create", "--name", name, "--network", mode, IMAGE, "true"]);
        let body = format!(r#"{{"Container": "{name}"}}"#);
        let msg = d
            .request("POST", "/networks/net2/connect", Some(body.as_bytes()))
            .error(400);
        assert!(msg.contains(why), "{msg}");
    }

    // Removal releases every attachment.
    assert!(!leases(&d).is_empty());
    d.docker_ok(&["rm", "-f", "ca", "cb", "cc", "ch", "cn"]);
    assert_eq!(veths(&d), Vec::<String>::new());
    assert_eq!(leases(&d), Vec::<String>::new());
    d.docker_ok(&["network", "rm", "net1", "net2"]);
    d.finish();
}

/// The MAC berth gives an address: `02:42` and its four bytes.
fn mac_of(ip: &str) -> String {
    let b: Vec<u8> = ip.split('.').map(|x| x.parse().unwrap()).collect();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}
