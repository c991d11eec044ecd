//! Images through the command line: `image import|inspect|ls|rm|prune`, `images`, `rmi`,
//! `unpack`, `bundle rm` and `berth run IMAGE` on a real overlay root, with the bundle gone at
//! `--rm` or `delete`, and hostile or wrong requests failing with nothing left behind.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{ImageStore, OutputExt};
use serde_json::Value;

/// One test of the image commands: runs `body` with a store of its own holding the busybox
/// image (`busybox:latest`) with `extra` layers (uncompressed tars) stacked on top, then
/// asserts that nothing is left ([`ImageStore::assert_clean`]). Its containers get no
/// network: these tests run in the host's network namespace.
fn images_test(extra: &[&Path], body: impl FnOnce(&ImageStore)) {
    let i = ImageStore::new(extra, &["--network", "none"]);
    body(&i);
    i.assert_clean();
}

#[test]
fn import_list_inspect_remove_prune() {
    images_test(&[], |i| {
        let table = i.cmd(&["images"]).ok().out();
        assert!(table.starts_with("NAME"), "{table}");
        assert!(
            table.contains("busybox:latest") && table.contains("linux/amd64"),
            "{table}"
        );
        assert_eq!(i.cmd(&["image", "ls", "-q"]).ok().out(), "busybox:latest\n");
        let json: Value =
            serde_json::from_str(&i.cmd(&["images", "--format", "json"]).ok().out()).unwrap();
        let id = json[0]["config"].as_str().unwrap().to_string();
        let doc: Value =
            serde_json::from_str(&i.cmd(&["image", "inspect", "busybox"]).ok().out()).unwrap();
        assert_eq!(doc["name"], "busybox:latest");
        assert_eq!(doc["config"]["config"]["Cmd"], serde_json::json!(["sh"]));
        // By ID prefix, as docker shows it.
        let short = &id["sha256:".len().."sha256:".len() + 12];
        let doc: Value =
            serde_json::from_str(&i.cmd(&["image", "inspect", short]).ok().out()).unwrap();
        assert_eq!(doc["id"], id.as_str());
        // A second import of the same layout under another name shares every blob and layer.
        let layers_before = fs::read_dir(i.store.join("layers")).unwrap().count();
        i.cmd(&[
            "image",
            "import",
            "--name",
            "copy:1",
            i.b.path().join("layout").to_str().unwrap(),
        ])
        .ok();
        assert_eq!(
            fs::read_dir(i.store.join("layers")).unwrap().count(),
            layers_before
        );
        i.cmd(&["rmi", "copy:1"]).ok();
        i.cmd(&["image", "rm", "busybox"]).ok();
        assert_eq!(i.cmd(&["images", "-q"]).ok().out(), "");
        i.cmd(&["image", "prune"]).ok();
        assert_eq!(fs::read_dir(i.store.join("layers")).unwrap().count(), 0);
        assert_eq!(
            fs::read_dir(i.store.join("blobs/sha256")).unwrap().count(),
            0
        );
        i.cmd(&["rmi", "busybox"])
            .fails_with("image \"busybox\" not found");
    });
}

#[test]
fn import_refuses_what_is_not_an_image() {
    images_test(&[], |i| {
        let empty = i.b.dir("empty");
        i.cmd(&["image", "import", empty.to_str().unwrap()])
            .fails_with("neither an OCI image layout");
        let junk = i.b.path().join("junk.tar");
        fs::write(&junk, b"this is not a tar archive at all").unwrap();
        let err = i
            .cmd(&["image", "import", junk.to_str().unwrap()])
            .fails_with("junk.tar");
        assert!(!err.contains("panicked"), "{err}");
        // A layout whose new layer was tampered with: the digest berth computes is what counts
        // (blobs the store already has are not read again).
        let extra = i.b.path().join("extra.tar");
        let src = i.b.dir("extra");
        fs::write(src.join("big"), vec![7u8; 300_000]).unwrap();
        assert!(Command::new("tar")
            .args([
                "-C",
                src.to_str().unwrap(),
                "-cf",
                extra.to_str().unwrap(),
                "."
            ])
            .status()
            .unwrap()
            .success());
        let bad = i.b.path().join("bad");
        common::busybox_layout(&bad, "bad:1", &[&extra]);
        let blobs = bad.join("blobs/sha256");
        let victim = fs::read_dir(&blobs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                !i.store
                    .join("blobs/sha256")
                    .join(p.file_name().unwrap())
                    .exists()
            })
            .max_by_key(|p| fs::metadata(p).unwrap().len())
            .unwrap();
        let mut data = fs::read(&victim).unwrap();
        let n = data.len();
        data[n - 20] ^= 0xff;
        fs::write(&victim, data).unwrap();
        i.cmd(&["image", "import", bad.to_str().unwrap()])
            .fails_with("sha256");
        assert_eq!(i.cmd(&["images", "-q"]).ok().out(), "busybox:latest\n");
        assert!(fs::read_dir(i.store.join("tmp")).unwrap().next().is_none());
    });
}

#[test]
fn run_image_rm_on_an_overlay_root() {
    images_test(&[], |i| {
        let id = i.b.id("rm");
        let out = i.run(
            &id,
            &[
                "--rm",
                "busybox",
                "sh",
                "-c",
                "echo hi > /written; grep ' / ' /proc/mounts | cut -d' ' -f3; hostname; exit 7",
            ],
        );
        assert_eq!(out.code(), 7, "{}", out.err());
        let lines: Vec<String> = out.out().lines().map(String::from).collect();
        assert_eq!(lines, ["overlay", id.as_str()]);
        i.b.assert_no_state(&id);
    });
}

#[test]
fn run_image_kept_until_delete() {
    images_test(&[], |i| {
        let id = i.b.id("kept");
        let out = i.run(&id, &["busybox", "sh", "-c", "echo data > /root/file"]);
        assert_eq!(out.code(), 0, "{}", out.err());
        assert_eq!(i.b.status(&id), "stopped");
        let upper = i.store.join("bundles").join(&id).join("upper/root/file");
        assert_eq!(fs::read_to_string(&upper).unwrap(), "data\n");
        // The image can be removed by name while a container uses it; its layers stay.
        i.cmd(&["rmi", "busybox"]).ok();
        i.cmd(&["image", "prune"]).ok();
        assert!(fs::read_dir(i.store.join("layers")).unwrap().count() > 0);
        i.b.delete(&id);
        assert!(!upper.exists());
        i.cmd(&["image", "prune"]).ok();
        assert_eq!(fs::read_dir(i.store.join("layers")).unwrap().count(), 0);
    });
}

#[test]
fn run_image_detached_then_delete_force() {
    images_test(&[], |i| {
        let id = i.b.id("bg");
        let out = i.run(&id, &["-d", "busybox", "sleep", "1000"]).ok();
        assert_eq!(out.out().trim(), id);
        assert_eq!(i.b.status(&id), "running");
        let ps = i.b.cmd(&["exec", &id, "cat", "/proc/1/cmdline"]).ok().out();
        assert!(ps.starts_with("sleep"), "{ps}");
        i.b.delete_force(&id);
    });
}

#[test]
fn run_image_overrides_user_workdir_env_entrypoint() {
    images_test(&[], |i| {
        let out = i.run_ok(
            "ovr",
            &[
                "--rm",
                "-u",
                "nobody",
                "-w",
                "/home",
                "-e",
                "GREETING=hello",
                "--entrypoint",
                "/bin/sh",
                "busybox",
                "-c",
                "id -u; id -g; pwd; echo $GREETING; echo $PATH",
            ],
        );
        assert_eq!(
            out,
            "65534\n65534\n/home\nhello\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        );
    });
}

#[test]
fn run_image_errors_leave_nothing() {
    images_test(&[], |i| {
        let id = i.b.id("bad");
        let err = i
            .run(&id, &["--rm", "--pull", "never", "nosuch"])
            .fails_with("not found in the store");
        assert!(err.contains("berth pull"), "{err}");
        assert!(err.contains("nosuch"), "{err}");
        i.run(&id, &["--rm", "-w", "relative", "busybox", "true"])
            .fails_with("working directory \\\"relative\\\": not absolute");
        i.run(&id, &["--rm", "-u", "nosuchuser", "busybox", "true"])
            .fails_with("nosuchuser");
        i.run(&id, &["--rm", "-d", "busybox", "true"])
            .fails_with("--rm with --detach");
        let out = i.run(&id, &["--rm", "busybox", "/no/such/program"]);
        assert_eq!(out.code(), 127, "{}", out.err());
        i.b.assert_no_state(&id);
        i.assert_clean();
        // A name in use is refused, and the running container is untouched.
        i.run(&id, &["-d", "busybox", "sleep", "1000"]).ok();
        i.run(&id, &["busybox", "true"])
            .fails_with("already exists");
        assert_eq!(i.b.status(&id), "running");
        i.b.delete_force(&id);
    });
}

#[test]
fn unpack_then_run_the_bundle_as_runc_would() {
    images_test(&[], |i| {
        for flat in [false, true] {
            let bundle = i.b.path().join(format!("unpacked-{flat}"));
            let mut args = vec!["unpack"];
            if flat {
                args.push("--flat");
            }
            args.extend_from_slice(&[
                "-e",
                "X=1",
                "busybox",
                bundle.to_str().unwrap(),
                "sh",
                "-c",
                "echo $X",
            ]);
            i.cmd(&args).ok();
            let config: Value =
                serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
            assert_eq!(
                config["process"]["args"],
                serde_json::json!(["sh", "-c", "echo $X"])
            );
            let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
            assert_eq!(
                mountinfo.contains(bundle.join("rootfs").to_str().unwrap()),
                !flat
            );
            let id = i.b.id(&format!("unpacked-{flat}"));
            let out =
                i.b.cmd(&["run", "--bundle", bundle.to_str().unwrap(), &id])
                    .ok();
            assert_eq!(out.out(), "1\n");
            // Unpacked bundles are the caller's: deleting a container does not remove them.
            assert!(bundle.join("config.json").exists());
            i.cmd(&["bundle", "rm", bundle.to_str().unwrap()]).ok();
            assert!(!bundle.exists());
        }
        // An existing bundle is never overwritten.
        let taken = i.b.dir("taken");
        fs::write(taken.join("config.json"), "{}").unwrap();
        i.cmd(&["unpack", "busybox", taken.to_str().unwrap()])
            .fails_with("already holds a bundle");
        assert_eq!(fs::read_to_string(taken.join("config.json")).unwrap(), "{}");
    });
}

/// A second layer with whiteouts, an opaque directory, a hardlink and a symlink, seen from
/// inside a container on the overlay root, and the same through `--flat`.
#[test]
fn run_image_with_whiteouts_and_an_opaque_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let l = tmp.path().join("layer2");
    fs::create_dir_all(l.join("etc")).unwrap();
    fs::write(l.join("etc/.wh.group"), "").unwrap();
    fs::create_dir_all(l.join("bin")).unwrap();
    fs::write(l.join("bin/.wh.vi"), "").unwrap();
    fs::create_dir_all(l.join("home")).unwrap();
    fs::write(l.join("home/new"), "new\n").unwrap();
    fs::write(l.join("home/.wh..wh..opq"), "").unwrap();
    fs::create_dir_all(l.join("srv")).unwrap();
    fs::write(l.join("srv/data"), "payload\n").unwrap();
    fs::hard_link(l.join("srv/data"), l.join("srv/hard")).unwrap();
    std::os::unix::fs::symlink("data", l.join("srv/soft")).unwrap();
    let tar = tmp.path().join("layer2.tar");
    let st = Command::new("tar")
        .args(["-C", l.to_str().unwrap(), "-cf", tar.to_str().unwrap(), "."])
        .status()
        .unwrap();
    assert!(st.success());
    // The base has /home/placeholder in neither form, so put one in a middle layer.
    let m = tmp.path().join("layer1");
    fs::create_dir_all(m.join("home/old")).unwrap();
    fs::write(m.join("home/old/file"), "old\n").unwrap();
    let mid = tmp.path().join("layer1.tar");
    let st = Command::new("tar")
        .args(["-C", m.to_str().unwrap(), "-cf", mid.to_str().unwrap(), "."])
        .status()
        .unwrap();
    assert!(st.success());
    images_test(&[&mid, &tar], |i| {
        let script = "ls /home; test -e /etc/group && echo group; test -e /bin/vi && echo vi; \
                      cat /srv/hard /srv/soft; stat -c %h /srv/data; test -e /etc/passwd && echo passwd";
        for flat in [false, true] {
            let mut args = vec!["--rm"];
            if flat {
                args.push("--flat");
            }
            args.extend_from_slice(&["busybox", "sh", "-c", script]);
            let out = i.run_ok(&format!("wh-{flat}"), &args);
            assert_eq!(out, "new\npayload\npayload\n2\npasswd\n", "flat={flat}");
        }
    });
}

/// `--name` becomes a path component: anything but a plain container ID is refused before a
/// directory is made.
#[test]
fn run_image_names_that_are_paths_are_refused() {
    images_test(&[], |i| {
        for name in ["../escape", "/abs/olute", "a/b", "", ".hidden", "x+y"] {
            i.cmd(&[
                "run",
                "--rm",
                "--network",
                "none",
                "--name",
                name,
                "busybox",
                "true",
            ])
            .fails_with("--name");
        }
        assert!(!i.store.join("escape").exists());
        assert!(!Path::new("/abs").exists());
        assert!(i.bundles().is_empty(), "{:?}", i.bundles());
    });
}

/// A run marker copied into another bundle (or naming another container) is not trusted:
/// deleting that container leaves the other container's bundle and hold alone.
#[test]
fn a_forged_run_marker_is_ignored_at_delete() {
    images_test(&[], |i| {
        let live = i.run_sleeper("live", &[]);
        let forged = i.b.dir("forged");
        fs::copy(
            i.store.join("bundles").join(&live).join("berth-run.json"),
            forged.join("berth-run.json"),
        )
        .unwrap();
        let mut config = i.b.config(&["true"]);
        config["root"]["path"] = serde_json::json!(i.b.rootfs);
        fs::write(
            forged.join("config.json"),
            serde_json::to_vec(&config).unwrap(),
        )
        .unwrap();
        let other = i.b.id("other");
        i.b.cmd(&["run", "--bundle", forged.to_str().unwrap(), &other])
            .ok();
        assert!(
            forged.join("config.json").exists(),
            "the forged bundle stays"
        );
        assert_eq!(i.b.status(&live), "running");
        assert!(i
            .store
            .join("bundles")
            .join(&live)
            .join("rootfs/bin")
            .exists());
        assert_eq!(i.holds(), 1);
        i.b.delete_force(&live);
    });
}

/// What a crash leaves of `run IMAGE` (a bundle whose container state is gone) is removed by
/// `bundle rm`, which also releases the container's hold on the layers.
#[test]
fn bundle_rm_cleans_a_run_leftover() {
    images_test(&[], |i| {
        let id = i.b.id("leftover");
        i.run(&id, &["busybox", "true"]).ok();
        assert_eq!(i.b.status(&id), "stopped");
        let dir = i.store.join("bundles").join(&id);
        // The runtime's state vanishes (as /run after a reboot); the bundle and hold remain.
        let state = i.b.root.join(&id);
        let saved = i.b.path().join("saved-state");
        fs::rename(&state, &saved).unwrap();
        assert_eq!(i.holds(), 1);
        i.cmd(&["bundle", "rm", dir.to_str().unwrap()]).ok();
        assert!(!dir.exists());
        assert_eq!(i.holds(), 0);
        // Back, so the container's cgroup goes as usual; its bundle is already gone.
        fs::rename(&saved, &state).unwrap();
        i.b.delete(&id);
    });
}

fn overlay_mounts_under(dir: &Path) -> usize {
    let needle = dir.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// kill -9 of `delete -f` once the container's processes are gone: its state is still there
/// (it goes last), so a second `delete -f` removes the bundle, mount and hold.
#[test]
fn a_killed_delete_is_finished_by_the_next() {
    images_test(&[], |i| {
        let id = i.run_sleeper("killed-delete", &[]);
        i.killed_at("delete:stopped", &["delete", "--force", &id]);
        assert!(
            i.b.root.join(&id).exists(),
            "the state went before the rest"
        );
        assert_eq!(i.holds(), 1);
        i.b.delete_force(&id);
    });
}

/// kill -9 of `run IMAGE` after its overlay is mounted (no container state yet), and after its
/// network is attached: `delete -f NAME` and `image prune` find and undo what it left.
#[test]
fn a_killed_run_is_reclaimed() {
    images_test(&[], |i| {
        let first = i.b.id("killed-run-a");
        i.b.track(&first);
        i.killed_at("bundle:mounted", &i.run_args(&first, &["busybox", "true"]));
        let dir = i.store.join("bundles").join(&first);
        assert!(overlay_mounts_under(&dir) > 0);
        assert_eq!(i.holds(), 1);
        // No state, so runc's `delete -f` would say nothing; berth also undoes the bundle.
        i.cmd(&["delete", "--force", &first]).ok();
        assert_eq!(overlay_mounts_under(&dir), 0);
        assert!(!dir.exists());
        assert_eq!(i.holds(), 0);

        let second = i.b.id("killed-run-b");
        i.b.track(&second);
        i.killed_at("run:attached", &i.run_args(&second, &["busybox", "true"]));
        assert_eq!(i.holds(), 1);
        let out = i.cmd(&["image", "prune"]).ok().out();
        assert!(out.contains("1 bundles of killed runs"), "{out}");
    });
}

/// kill -9 of `unpack` with the overlay mounted and no config.json: `bundle rm` undoes it (the
/// directory's other contents stay), and so does `image prune`.
#[test]
fn a_killed_unpack_is_reclaimed() {
    images_test(&[], |i| {
        let dir = i.b.dir("unpack-killed");
        fs::write(dir.join("mine"), "the user's").unwrap();
        i.killed_at(
            "bundle:mounted",
            &["unpack", "busybox", dir.to_str().unwrap()],
        );
        assert!(overlay_mounts_under(&dir) > 0);
        assert_eq!(i.holds(), 1);
        i.cmd(&["bundle", "rm", dir.to_str().unwrap()]).ok();
        assert_eq!(overlay_mounts_under(&dir), 0);
        assert_eq!(i.holds(), 0);
        assert!(dir.join("mine").exists() && !dir.join("rootfs").exists());

        let other = i.b.path().join("unpack-killed-2");
        i.killed_at(
            "bundle:mounted",
            &["unpack", "busybox", other.to_str().unwrap()],
        );
        assert_eq!(i.holds(), 1);
        let out = i.cmd(&["image", "prune"]).ok().out();
        assert!(out.contains("1 bundles of killed runs"), "{out}");
        assert_eq!(overlay_mounts_under(&other), 0);
    });
}
