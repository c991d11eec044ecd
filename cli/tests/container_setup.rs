//! What a container sees from inside, observed by its own process through `berth run`:
//! new namespaces, hostname, joining a namespace by path, user, groups, umask, cwd, env,
//! rlimits, noNewPrivileges, capabilities, mounts (tmpfs options, bind, rbind, read-only bind,
//! proc, read-only sysfs, devpts, mqueue), masked and read-only paths, a read-only root,
//! default and configured devices, the /dev symlinks, a user namespace's id maps, descriptor
//! hygiene (`--preserve-fds`), a cwd that points at a leaked host directory, and a symlink in
//! the image that tries to redirect a mount onto the host.

mod common;

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use common::{berth_test, Berth, OutputExt};
use serde_json::json;

/// The value printed as `key=value` on a line of `out`.
fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= line in:\n{out}"))
}

fn host_ns(kind: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn namespaces_are_new_and_hostname_is_set() {
    berth_test(|b| {
        let out = b.run_script("ns",
            "for n in pid net ipc uts mnt cgroup user time; do echo $n=$(readlink /proc/self/ns/$n); done; echo host=$(hostname)",
            |c| c["hostname"] = json!("berth-inside"),
        );
        for kind in ["pid", "net", "ipc", "uts", "mnt", "cgroup"] {
            assert_ne!(field(&out, kind), host_ns(kind), "{kind} is the host's");
        }
        for kind in ["user", "time"] {
            assert_eq!(field(&out, kind), host_ns(kind), "{kind} was not asked for");
        }
        assert_eq!(field(&out, "host"), "berth-inside");
    });
}

/// A host process in a network namespace of its own, killed and reaped on drop.
struct NetnsHolder(Child);

impl Drop for NetnsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn joins_a_namespace_by_path() {
    berth_test(|b| {
        let holder = NetnsHolder(
            Command::new(common::BUSYBOX)
                .args(["unshare", "--net", common::BUSYBOX, "sleep", "1000"])
                .spawn()
                .unwrap(),
        );
        let ns_path = format!("/proc/{}/ns/net", holder.0.id());
        let host = host_ns("net");
        assert!(
            common::poll_until(common::STATUS_TIMEOUT, || {
                fs::read_link(&ns_path).is_ok_and(|l| l.to_string_lossy() != host)
            }),
            "unshare did not enter a new network namespace"
        );
        let target = fs::read_link(&ns_path).unwrap();
        let out = b.run_script("joinnet", "echo net=$(readlink /proc/self/ns/net)", |c| {
            for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
                if ns["type"] == "network" {
                    ns["path"] = json!(ns_path);
                }
            }
        });
        assert_eq!(field(&out, "net"), target.to_string_lossy());
        drop(holder);
    });
}

#[test]
fn user_groups_umask_cwd_env() {
    berth_test(|b| {
        let out = b.run_script("ident",
            "grep -E '^(Uid|Gid|Groups):' /proc/self/status | tr -s '\\t ' ' '; echo umask=$(umask); echo cwd=$(pwd); echo foo=$FOO",
            |c| {
                c["process"]["user"] =
                    json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 20], "umask": 0o027});
                c["process"]["cwd"] = json!("/tmp");
                common::add_env(c, "FOO=bar baz");
            },
        );
        assert!(out.contains("Uid: 1000 1000 1000 1000"), "{out}");
        assert!(out.contains("Gid: 1001 1001 1001 1001"), "{out}");
        assert_eq!(
            out.lines()
                .find_map(|l| l.strip_prefix("Groups:"))
                .map(str::trim),
            Some("10 20"),
            "{out}"
        );
        assert_eq!(field(&out, "umask"), "0027");
        assert_eq!(field(&out, "cwd"), "/tmp");
        assert_eq!(field(&out, "foo"), "bar baz");
    });
}

#[test]
fn rlimits_and_no_new_privileges() {
    berth_test(|b| {
        let script = "echo soft=$(ulimit -n); echo hard=$(ulimit -Hn); echo nnp=$(grep NoNewPrivs /proc/self/status | tr -dc 0-9)";
        let out = b.run_script("limits", script, |c| {
            c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}]);
            c["process"]["noNewPrivileges"] = json!(true);
        });
        assert_eq!(field(&out, "soft"), "512");
        assert_eq!(field(&out, "hard"), "1024");
        assert_eq!(field(&out, "nnp"), "1");
        let out = b.run_script("privs", script, |c| {
            c["process"]["noNewPrivileges"] = json!(false);
        });
        assert_eq!(field(&out, "nnp"), "0");
    });
}

/// Bit numbers of the capabilities these tests use (linux/capability.h).
fn cap_mask(names: &[&str]) -> u64 {
    names
        .iter()
        .map(|n| match *n {
            "CAP_CHOWN" => 0,
            "CAP_KILL" => 5,
            "CAP_NET_BIND_SERVICE" => 10,
            "CAP_NET_RAW" => 13,
            "CAP_SYS_ADMIN" => 21,
            "CAP_AUDIT_WRITE" => 29,
            other => panic!("add {other} to cap_mask"),
        })
        .fold(0, |m, bit| m | 1 << bit)
}

fn cap_sets(out: &str) -> Vec<(String, u64)> {
    out.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_string(), u64::from_str_radix(v.trim(), 16).ok()?))
        })
        .filter(|(k, _)| k.starts_with("Cap"))
        .collect()
}

#[test]
fn capabilities_match_the_config() {
    berth_test(|b| {
        let script = "grep ^Cap /proc/self/status";
        let out = b.run_script("capdefault", script, |_| {});
        let default = cap_mask(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        for (set, mask) in cap_sets(&out) {
            let want = match set.as_str() {
                "CapInh" | "CapAmb" => 0,
                _ => default,
            };
            assert_eq!(mask, want, "{set}: {out}");
        }

        let names = ["CAP_CHOWN", "CAP_NET_RAW", "CAP_SYS_ADMIN"];
        let out = b.run_script("capcustom", script, |c| {
            c["process"]["capabilities"] = json!({
                "bounding": names, "effective": names, "permitted": names,
            });
        });
        let sets = cap_sets(&out);
        assert_eq!(sets.len(), 5, "{out}");
        for (set, mask) in sets {
            let want = match set.as_str() {
                "CapInh" | "CapAmb" => 0,
                _ => cap_mask(&names),
            };
            assert_eq!(mask, want, "{set}: {out}");
        }
    });
}

/// A tmpfs mounted on the host, unmounted (lazily) on drop.
struct HostMount(PathBuf);

impl HostMount {
    fn tmpfs(at: &Path) -> HostMount {
        fs::create_dir_all(at).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap();
        HostMount(at.to_path_buf())
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn mounts_from_the_config() {
    berth_test(|b| {
        let shared = b.dir("shared");
        fs::write(shared.join("hello"), "from-host\n").unwrap();
        let sub = HostMount::tmpfs(&shared.join("sub"));
        fs::write(sub.0.join("inner"), "").unwrap();

        let script = r#"
        m() { grep -E " $1 " /proc/self/mountinfo | head -1; }
        w() { touch $1 2>/dev/null && echo $2=rw || echo $2=ro; }
        echo tmpfs=$(m /mnt/t)
        echo tmpfsmode=$(stat -c %a /mnt/t)
        echo hello=$(cat /mnt/bind/hello)
        w /mnt/bind/from-container bind
        w /mnt/ro/denied robind
        echo bindsub=$(ls /mnt/bind/sub)
        echo rbindsub=$(ls /mnt/rbind/sub)
        echo proc=$(m /proc)
        echo sys=$(m /sys)
        w /sys/kernel/test-write sysw
        echo devpts=$(m /dev/pts)
        echo mqueue=$(m /dev/mqueue)
    "#;
        let out = b.run_script("mounts", script, |c| {
            let mounts = c["mounts"].as_array_mut().unwrap();
            mounts.push(
                json!({"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "noexec", "mode=750", "size=1m"]}),
            );
            mounts.push(
                json!({"destination": "/mnt/bind", "type": "bind", "source": shared,
                "options": ["bind"]}),
            );
            mounts.push(
                json!({"destination": "/mnt/rbind", "type": "bind", "source": shared,
                "options": ["rbind"]}),
            );
            mounts.push(
                json!({"destination": "/mnt/ro", "type": "bind", "source": shared,
                "options": ["bind", "ro"]}),
            );
        });
        let tmpfs = field(&out, "tmpfs");
        for want in [
            "nosuid",
            "nodev",
            "noexec",
            " tmpfs ",
            "size=1024k",
            "mode=750",
        ] {
            assert!(tmpfs.contains(want), "tmpfs lacks {want}: {tmpfs}");
        }
        assert_eq!(field(&out, "tmpfsmode"), "750");
        assert_eq!(field(&out, "hello"), "from-host");
        assert_eq!(field(&out, "bind"), "rw");
        assert!(shared.join("from-container").exists(), "rw bind not shared");
        assert_eq!(field(&out, "robind"), "ro");
        assert!(!shared.join("denied").exists());
        assert_eq!(field(&out, "bindsub"), "", "bind is not recursive");
        assert_eq!(field(&out, "rbindsub"), "inner", "rbind is recursive");
        assert!(field(&out, "proc").contains(" - proc "), "{out}");
        let sys = field(&out, "sys");
        assert!(sys.contains(" - sysfs ") && sys.contains(" ro,"), "{sys}");
        assert_eq!(field(&out, "sysw"), "ro");
        assert!(field(&out, "devpts").contains(" - devpts "), "{out}");
        assert!(field(&out, "mqueue").contains(" - mqueue "), "{out}");
        drop(sub);
    });
}

#[test]
fn masked_readonly_paths_and_readonly_root() {
    berth_test(|b| {
        fs::write(b.rootfs.join("etc/masked-file"), "secret\n").unwrap();
        fs::create_dir(b.rootfs.join("etc/masked-dir")).unwrap();
        fs::write(b.rootfs.join("etc/masked-dir/inner"), "secret\n").unwrap();
        let mut masked: Vec<String> = b.config(&[])["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .filter(|p| Path::new(p).exists())
            .collect();
        assert!(
            !masked.is_empty(),
            "no default masked path exists on this host"
        );
        masked.extend(["/etc/masked-file".into(), "/etc/masked-dir".into()]);
        let script = format!(
            r"
        for p in {}; do
            if [ -d $p ]; then echo $p=$(ls -A $p | wc -l); else echo $p=$(cat $p | wc -c); fi
        done
        (echo x > /proc/sys/kernel/domainname) 2>/dev/null && echo procsys=rw || echo procsys=ro
        touch /new-file 2>/dev/null && echo root=rw || echo root=ro
        touch /tmp/new-file 2>/dev/null && echo tmp=rw || echo tmp=ro
    ",
            masked.join(" ")
        );
        let out = b.run_script("masked", &script, |c| {
            assert_eq!(c["root"]["readonly"], true, "berth spec's default");
            c["linux"]["maskedPaths"] = json!(masked);
        });
        for p in &masked {
            assert_eq!(field(&out, p), "0", "{p} is not masked");
        }
        assert_eq!(field(&out, "procsys"), "ro");
        assert_eq!(field(&out, "root"), "ro");
        assert_eq!(
            field(&out, "tmp"),
            "ro",
            "/tmp is part of the read-only root"
        );
        assert!(!b.rootfs.join("new-file").exists());

        let out = b.run_script("writable", "touch /new-file && echo root=rw", |c| {
            c["root"]["readonly"] = json!(false);
        });
        assert_eq!(field(&out, "root"), "rw");
        assert!(b.rootfs.join("new-file").exists());
    });
}

#[test]
fn devices_and_dev_symlinks() {
    berth_test(|b| {
        let script = r"
        for d in null zero full random urandom tty fuse; do
            echo $d=$(stat -c '%F %t:%T %a' /dev/$d)
        done
        for l in fd stdin stdout stderr ptmx; do echo link-$l=$(readlink /dev/$l); done
        echo zero-bytes=$(head -c 4 /dev/zero | od -An -tx1 | tr -d ' ')
    ";
        let out = b.run_script("devices", script, |c| {
            c["linux"]["devices"] = json!([{"path": "/dev/fuse", "type": "c", "major": 10,
                "minor": 229, "fileMode": 0o640, "uid": 0, "gid": 0}]);
        });
        for (dev, want) in [
            ("null", "character special file 1:3 666"),
            ("zero", "character special file 1:5 666"),
            ("full", "character special file 1:7 666"),
            ("random", "character special file 1:8 666"),
            ("urandom", "character special file 1:9 666"),
            ("tty", "character special file 5:0 666"),
            ("fuse", "character special file a:e5 640"),
        ] {
            assert_eq!(field(&out, dev), want, "/dev/{dev}");
        }
        assert_eq!(field(&out, "link-fd"), "/proc/self/fd");
        assert_eq!(field(&out, "link-stdin"), "/proc/self/fd/0");
        assert_eq!(field(&out, "link-stdout"), "/proc/self/fd/1");
        assert_eq!(field(&out, "link-stderr"), "/proc/self/fd/2");
        assert_eq!(field(&out, "link-ptmx"), "pts/ptmx");
        assert_eq!(field(&out, "zero-bytes"), "00000000");
    });
}

#[test]
fn user_namespace_maps_root_to_a_host_range() {
    berth_test(|b| {
        let out = b.run_script("userns",
            "echo uid=$(id -u); echo uidmap=$(cat /proc/self/uid_map); echo gidmap=$(cat /proc/self/gid_map); echo null=$(stat -c %t:%T /dev/null)",
            |c| common::user_namespace(c, 100_000),
        );
        assert_eq!(field(&out, "uid"), "0");
        let words = |key| field(&out, key).split_whitespace().collect::<Vec<_>>();
        assert_eq!(words("uidmap"), ["0", "100000", "65536"]);
        assert_eq!(words("gidmap"), ["0", "100000", "65536"]);
        assert_eq!(field(&out, "null"), "1:3");
    });
}

/// The container's descriptors from `ls -l /proc/self/fd` run as its process: number and
/// target, without the directory descriptor `ls` itself opened.
fn fds_of(ls: &str) -> Vec<(u32, String)> {
    ls.lines()
        .filter_map(|l| {
            let (left, target) = l.split_once(" -> ")?;
            let fd = left.split_whitespace().last()?.parse().ok()?;
            Some((fd, target.to_string()))
        })
        .filter(|(_, target)| !(target.starts_with("/proc/") && target.ends_with("/fd")))
        .collect()
}

fn fd_numbers(ls: &str) -> Vec<u32> {
    fds_of(ls).into_iter().map(|(fd, _)| fd).collect()
}

#[test]
fn run_passes_only_stdio_and_preserved_fds() {
    berth_test(|b| {
        let secret = b.path().join("secret");
        fs::write(&secret, "preserved\n").unwrap();
        let file = fs::File::open(&secret).unwrap();
        let fd = file.as_raw_fd();

        // Control: the mechanism does hand the descriptors to the program the test spawns.
        let mut control = Command::new(common::BUSYBOX);
        control.args(["ls", "/proc/self/fd"]);
        common::inherit_fds(&mut control, fd, &[5, 9]);
        let listed = String::from_utf8(control.output().unwrap().stdout).unwrap();
        assert!(
            listed.lines().any(|l| l == "5") && listed.lines().any(|l| l == "9"),
            "{listed}"
        );

        // Descriptors berth inherits without FD_CLOEXEC never reach the container.
        let id = b.id("leaky");
        let bundle = b.bundle(&id, &b.config(&["ls", "-l", "/proc/self/fd"]));
        let out = b
            .cmd_with(&["run", "--bundle", bundle.to_str().unwrap(), &id], |c| {
                common::inherit_fds(c, fd, &[3, 5, 9]);
            })
            .ok();
        assert_eq!(fd_numbers(&out.out()), [0, 1, 2], "{}", out.out());

        // --preserve-fds 1 passes fd 3, and only it.
        let id = b.id("preserve");
        let bundle = b.bundle(&id, &b.config(&["ls", "-l", "/proc/self/fd"]));
        let out = b
            .cmd_with(
                &[
                    "run",
                    "--preserve-fds",
                    "1",
                    "--bundle",
                    bundle.to_str().unwrap(),
                    &id,
                ],
                |c| common::inherit_fds(c, fd, &[3, 5]),
            )
            .ok();
        let fds = fds_of(&out.out());
        assert_eq!(fd_numbers(&out.out()), [0, 1, 2, 3], "{}", out.out());
        assert_eq!(fds[3].1, secret.to_str().unwrap());
        drop(file);
    });
}

#[test]
fn create_start_passes_only_stdio_and_preserved_fds() {
    berth_test(|b| {
        let secret = b.path().join("secret");
        fs::write(&secret, "preserved\n").unwrap();
        let results = b.dir("results");
        let file = fs::File::open(&secret).unwrap();
        let fd = file.as_raw_fd();

        for (name, preserve, want) in [
            ("cs-leaky", "0", vec![0, 1, 2]),
            ("cs-keep", "1", vec![0, 1, 2, 3]),
        ] {
            let id = b.id(name);
            let script = format!("exec ls -l /proc/self/fd > /results/{name}");
            let mut c = b.config(&["sh", "-c", &script]);
            common::bind_mount(&mut c, &results, "/results");
            let bundle = b.bundle(&id, &c);
            let pid_file = bundle.join("pid");
            b.cmd_with(
                &[
                    "create",
                    "--preserve-fds",
                    preserve,
                    "--pid-file",
                    pid_file.to_str().unwrap(),
                    "--bundle",
                    bundle.to_str().unwrap(),
                    &id,
                ],
                |c| common::inherit_fds(c, fd, &[3, 6]),
            )
            .ok();
            b.track_pid_file(&pid_file);
            b.start(&id);
            b.wait_status(&id, "stopped");
            let out = fs::read_to_string(results.join(name)).unwrap();
            assert_eq!(fd_numbers(&out), want, "{name}: {out}");
            b.delete(&id);
        }
        drop(file);
    });
}

#[test]
fn cwd_is_never_a_leaked_host_directory() {
    berth_test(|b| {
        let host_dir = b.dir("host-secrets");
        fs::write(host_dir.join("host-only-marker"), "").unwrap();
        let dir = fs::File::open(&host_dir).unwrap();
        let id = b.id("cwd-escape");
        let mut c = b.config(&["sh", "-c", "pwd; ls; ls ../../../"]);
        c["process"]["cwd"] = json!("/proc/self/fd/7");
        let bundle = b.bundle(&id, &c);
        let out = b.cmd_with(&["run", "--bundle", bundle.to_str().unwrap(), &id], |cmd| {
            common::inherit_fd(cmd, dir.as_raw_fd(), 7);
        });
        assert!(
            !out.out().contains("host-only-marker") && !out.out().contains("host-secrets"),
            "the container saw the host directory:\n{}",
            out.out()
        );
        assert_ne!(out.code(), 0, "{}", out.out());
        assert!(out.err().contains("process.cwd"), "{}", out.err());
        drop(dir);
    });
}

/// Plants `/evil -> <host dir>` in the rootfs and mounts a tmpfs and a bind through it.
fn mount_through_evil_symlink(b: &Berth, name: &str) -> (std::process::Output, PathBuf) {
    let host_dir = b.dir("host-target");
    let _ = fs::remove_file(b.rootfs.join("evil"));
    symlink(&host_dir, b.rootfs.join("evil")).unwrap();
    let source = b.dir("bind-source");
    let mut c = b.config(&["sh", "-c", "echo ok"]);
    let mounts = c["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/evil/x", "type": "tmpfs", "source": "tmpfs"}));
    mounts.push(
        json!({"destination": "/evil/y/z", "type": "bind", "source": source,
        "options": ["bind"]}),
    );
    (b.run(&b.id(name), &c), host_dir)
}

fn entries(dir: &Path) -> Vec<std::ffi::OsString> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect()
}

#[test]
fn symlink_in_the_image_cannot_redirect_a_mount_to_the_host() {
    berth_test(|b| {
        // The symlink's target exists inside the rootfs: the mounts land there.
        let (_, host_dir) = mount_through_evil_symlink(b, "probe");
        let in_root = b.rootfs.join(host_dir.strip_prefix("/").unwrap());
        fs::create_dir_all(&in_root).unwrap();
        let (out, host_dir) = mount_through_evil_symlink(b, "symlink");
        assert_eq!(out.code(), 0, "{}", out.err());
        assert_eq!(out.out(), "ok\n");
        assert!(
            entries(&host_dir).is_empty(),
            "created on the host: {:?}",
            entries(&host_dir)
        );
        assert!(
            in_root.join("x").is_dir(),
            "mount point made inside the rootfs"
        );
        assert!(
            in_root.join("y/z").is_dir(),
            "mount point made inside the rootfs"
        );
    });
}

#[test]
fn dangling_symlink_cannot_redirect_a_mount_to_the_host() {
    berth_test(|b| {
        let (out, host_dir) = mount_through_evil_symlink(b, "dangling");
        assert!(
            entries(&host_dir).is_empty(),
            "created on the host: {:?}",
            entries(&host_dir)
        );
        if out.code() != 0 {
            assert!(out.err().contains("mounts["), "{}", out.err());
        }
    });
}

/// runc (securejoin's MkdirAllInRoot) creates the missing target of a symlink inside the
/// rootfs; images rely on it (`/etc/resolv.conf -> ../run/systemd/resolve/stub-resolv.conf`
/// with the bind mount of an engine's resolv.conf on top).
#[test]
fn mount_through_a_dangling_symlink_creates_the_target_in_the_rootfs() {
    berth_test(|b| {
        fs::create_dir_all(b.rootfs.join("run")).unwrap();
        symlink(
            "../run/resolve/stub-resolv.conf",
            b.rootfs.join("etc/resolv.conf"),
        )
        .unwrap();
        let conf = b.path().join("resolv.conf");
        fs::write(&conf, "nameserver 192.0.2.1\n").unwrap();
        let mut c = b.config(&["cat", "/etc/resolv.conf"]);
        common::add_mount(
            &mut c,
            json!({"destination": "/etc/resolv.conf", "type": "bind", "source": conf,
                "options": ["rbind", "ro"]}),
        );
        assert_eq!(b.run_ok("resolv", &c).out(), "nameserver 192.0.2.1\n");
    });
}

/// Runs `body` on a thread of its own in a new mount namespace whose mounts are slaves of the
/// host's: what the test mounts there never reaches the host's mount table, and the namespace
/// ends with the thread. berth, spawned from that thread, builds its containers from it.
fn in_private_mount_namespace(body: impl FnOnce() + Send + 'static) {
    let res = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare mnt");
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_SLAVE | nix::mount::MsFlags::MS_REC,
            None::<&str>,
        )
        .expect("making / rslave in the test's namespace");
        body();
    })
    .join();
    if let Err(panic) = res {
        std::panic::resume_unwind(panic);
    }
}

/// Mounts a tmpfs named `name` on `dir` (in the test's own mount namespace).
fn mount_tmpfs(name: &str, dir: &Path) {
    nix::mount::mount(
        Some(name),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap_or_else(|e| panic!("mounting tmpfs {name} on {}: {e}", dir.display()));
}

/// The mount table of the calling thread's mount namespace.
fn own_mountinfo() -> String {
    fs::read_to_string("/proc/thread-self/mountinfo").unwrap()
}

/// Whether the mount table `mountinfo` has a mount of source `name` at `point`.
fn has_mount(mountinfo: &str, point: &str, name: &str) -> bool {
    mountinfo.lines().any(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-");
        fields.get(4) == Some(&point) && sep.and_then(|s| fields.get(s + 2)) == Some(&name)
    })
}

/// Kubernetes' mount propagation, as containerd asks for it: `Bidirectional` is an `rshared`
/// bind with `rootfsPropagation` `rshared` (a mount the container makes under the bind shows
/// on the host, and one the host makes shows inside, as CSI drivers need); `HostToContainer` is
/// an `rslave` bind with `rootfsPropagation` `rslave` (host mounts show inside, the container's
/// stay in it). The container's own mounts (its rootfs, /proc, ...) never show on the host.
#[test]
fn rshared_and_rslave_binds_propagate() {
    in_private_mount_namespace(|| {
        berth_test(|b| {
            let shared = b.dir("propagated");
            mount_tmpfs("berth-prop", &shared);
            nix::mount::mount(
                None::<&str>,
                &shared,
                None::<&str>,
                nix::mount::MsFlags::MS_SHARED,
                None::<&str>,
            )
            .unwrap();
            for d in ["in", "out"] {
                fs::create_dir(shared.join(d)).unwrap();
            }
            let host_in = shared.join("in");
            let host_out = shared.join("out");
            let host_in_s = host_in.to_str().unwrap();
            for (kind, prop, back) in [("bidir", "rshared", true), ("h2c", "rslave", false)] {
                let mut c = b.config(common::SLEEPER);
                c["linux"]["rootfsPropagation"] = json!(prop);
                common::add_mount(
                    &mut c,
                    json!({"destination": "/mnt/x", "type": "bind", "source": shared,
                        "options": ["rbind", prop]}),
                );
                common::add_capability(&mut c, "CAP_SYS_ADMIN");
                let id = b.id(kind);
                b.create_and_start(&id, &c);

                b.cmd(&["exec", &id, "mount", "-t", "tmpfs", "inside", "/mnt/x/in"])
                    .ok();
                assert_eq!(
                    has_mount(&own_mountinfo(), host_in_s, "inside"),
                    back,
                    "{prop}: the container's mount under the bind, on the host"
                );
                mount_tmpfs("outside", &host_out);
                let inside = b
                    .cmd(&["exec", &id, "cat", "/proc/self/mountinfo"])
                    .ok()
                    .out();
                assert!(
                    has_mount(&inside, "/mnt/x/out", "outside"),
                    "{prop}: the host's mount under the bind is not inside:\n{inside}"
                );
                assert!(
                    has_mount(&inside, "/mnt/x/in", "inside"),
                    "{prop}:\n{inside}"
                );
                let leaked: Vec<String> = own_mountinfo()
                    .lines()
                    .filter(|l| l.contains(b.rootfs.to_str().unwrap()))
                    .map(str::to_owned)
                    .collect();
                assert!(
                    leaked.is_empty(),
                    "{prop}: container mounts on the host: {leaked:#?}"
                );

                b.kill_and_wait(&id, "KILL");
                b.delete(&id);
                for d in [&host_out, &host_in] {
                    let _ = nix::mount::umount2(d.as_path(), nix::mount::MntFlags::MNT_DETACH);
                }
            }
            nix::mount::umount2(&shared, nix::mount::MntFlags::MNT_DETACH).unwrap();
            let left: Vec<String> = own_mountinfo()
                .lines()
                .filter(|l| l.contains(b.path().to_str().unwrap()))
                .map(str::to_owned)
                .collect();
            assert!(
                left.is_empty(),
                "mounts left in the test's namespace: {left:#?}"
            );
        });
    });
}
