//! Docker habits over the containers of `berth run IMAGE`: `container ls` (docker's `ps`),
//! `inspect`, `stop`, `rm`; and the command line's completions and man pages, generated from
//! its clap definition. runc's `ps ID` keeps its meaning.

mod common;

use common::{ImageStore, OutputExt};
use serde_json::Value;

/// The lines of `container ls args...` after the header, as columns split on runs of 3+
/// spaces.
fn rows(i: &ImageStore, args: &[&str]) -> Vec<Vec<String>> {
    let mut all = vec!["container", "ls"];
    all.extend_from_slice(args);
    let out = i.cmd(&all).ok().out();
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with("CONTAINER ID   IMAGE") && header.ends_with("NAMES"),
        "{out}"
    );
    lines
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

fn inspect(i: &ImageStore, id: &str) -> Value {
    let docs: Value = serde_json::from_str(&i.cmd(&["inspect", id]).ok().out()).unwrap();
    docs[0].clone()
}

#[test]
fn containers_are_listed_inspected_stopped_and_removed() {
    let i = ImageStore::new(&[], &["--network", "none"]);
    let up = i.run_sleeper("up", &[]);
    let done = i.b.id("done");
    i.run(&done, &["busybox", "true"]).ok();

    // Running ones only, then all, docker's columns.
    let running = rows(&i, &[]);
    assert_eq!(running.len(), 1, "{running:?}");
    let r = &running[0];
    assert_eq!(r[0], up);
    assert_eq!(r[1], "busybox:latest");
    assert_eq!(r[2], "\"sleep 1000\"");
    assert!(r[3].ends_with(" ago"), "{r:?}");
    assert!(r[4].starts_with("Up "), "{r:?}");
    assert_eq!(r[5], up);
    let all = rows(&i, &["-a"]);
    assert_eq!(all.len(), 2, "{all:?}");
    let exited = all.iter().find(|r| r[0] == done).expect("the exited one");
    assert_eq!(exited[4], "Exited");
    let mut quiet = i.cmd(&["container", "ps", "-a", "-q"]).ok().out();
    quiet = quiet.lines().collect::<Vec<_>>().join(",");
    let mut want = [up.clone(), done.clone()];
    want.sort();
    assert_eq!(quiet, want.join(","));

    // docker's `ps` (no container ID) is `container ls`.
    let ps = i.cmd(&["ps"]).ok().out();
    assert!(ps.starts_with("CONTAINER ID") && ps.contains(&up), "{ps}");
    assert!(!ps.contains(&done), "{ps}");
    let ps = i.cmd(&["ps", "-aq"]).ok().out();
    assert_eq!(ps.lines().count(), 2, "{ps}");
    // runc's `ps ID` is still runc's: the container's processes.
    let ps = i.cmd(&["ps", &up]).ok().out();
    assert!(ps.starts_with("UID") && ps.contains("sleep"), "{ps}");

    let doc = inspect(&i, &up);
    assert_eq!(doc["Id"], up.as_str());
    assert_eq!(doc["Image"], "busybox:latest");
    assert_eq!(doc["Path"], "sleep");
    assert_eq!(doc["Args"], serde_json::json!(["1000"]));
    assert_eq!(doc["State"]["Status"], "running");
    assert!(doc["State"]["Pid"].as_i64().unwrap() > 0);
    assert_eq!(inspect(&i, &done)["State"]["Status"], "exited");
    i.cmd(&["container", "inspect", "nothing-here"])
        .fails_with("no such container: nothing-here");
    i.cmd(&["inspect", "nothing-here"])
        .fails_with("no such container or image: nothing-here");
    // Not a container: an image, as docker's inspect.
    assert_eq!(inspect(&i, "busybox")["name"], "busybox:latest");

    // rm refuses a running container; stop, then rm.
    i.cmd(&["rm", &up]).fails_with("is running");
    assert_eq!(
        i.cmd(&["stop", "-t", "5", &up]).ok().out(),
        format!("{up}\n")
    );
    assert_eq!(inspect(&i, &up)["State"]["Status"], "exited");
    i.cmd(&["rm", &up, &done]).ok();
    assert!(rows(&i, &["-a"]).is_empty());
    assert!(i.bundles().is_empty());

    // A process that ends on SIGTERM stops then, not after the grace (600 s: a stop that
    // waited it out would hold the test for ten minutes); a paused one is resumed to receive
    // it; stopping an exited one leaves it; a name nobody has is an error.
    let polite = i.b.id("polite");
    let trap = "trap 'echo term; exit 0' TERM; echo up; sleep 1000 & wait";
    i.run(&polite, &["-d", "busybox", "sh", "-c", trap]).ok();
    assert!(
        common::poll_until(std::time::Duration::from_secs(10), || {
            i.cmd(&["logs", &polite]).ok().out().contains("up")
        }),
        "the trap was not set"
    );
    i.cmd(&["pause", &polite]).ok();
    i.cmd(&["stop", "-t", "600", &polite]).ok();
    assert_eq!(inspect(&i, &polite)["State"]["Status"], "exited");
    assert_eq!(i.cmd(&["logs", &polite]).ok().out(), "up\nterm\n");
    i.cmd(&["stop", &polite]).ok();
    i.cmd(&["stop", "nothing-here"]).fails_with("nothing-here");
    i.cmd(&["rm", &polite]).ok();

    // rm -f of a running one.
    let again = i.run_sleeper("again", &[]);
    i.cmd(&["container", "rm", "-f", &again]).ok();
    assert!(rows(&i, &["-a"]).is_empty());
    i.assert_clean();
}

#[test]
fn completions_and_man_pages_come_from_the_command_line() {
    let b = common::Berth::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = b.cmd(&["completion", shell]).ok().out();
        assert!(out.contains("berth"), "{shell}: {out}");
        assert!(out.contains("images"), "{shell}: no subcommands");
    }
    b.cmd(&["completion", "tcsh"]).fails_with("tcsh");
    let page = b.cmd(&["man"]).ok().out();
    assert!(
        page.starts_with(".ie") || page.contains(".TH berth"),
        "{page}"
    );
    let dir = b.path().join("man");
    b.cmd(&["man", dir.to_str().unwrap()]).ok();
    for p in [
        "berth.1",
        "berth-images.1",
        "berth-run.1",
        "berth-container.1",
    ] {
        let text = std::fs::read_to_string(dir.join(p)).unwrap();
        assert!(text.contains(".TH"), "{p}");
    }
}

#[test]
fn a_detached_containers_output_is_its_log() {
    let i = ImageStore::new(&[], &["--network", "none"]);
    let id = i.b.id("talk");
    i.run(
        &id,
        &[
            "-d",
            "busybox",
            "sh",
            "-c",
            "echo one; echo two >&2; sleep 1; echo three",
        ],
    )
    .ok();
    // -f follows until the container has exited: then all of it is there, including what
    // came after the start of `logs`.
    let all = i.cmd(&["logs", "-f", &id]).ok().out();
    assert_eq!(all, "one\ntwo\nthree\n");
    for (n, want) in [("1", "three\n"), ("0", ""), ("10", "one\ntwo\nthree\n")] {
        assert_eq!(
            i.cmd(&["container", "logs", "-n", n, &id]).ok().out(),
            want,
            "-n {n}"
        );
    }
    let log = i.store.join("bundles").join(&id).join("container.log");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A foreground run has no log: its output went to the caller.
    let fg = i.b.id("fg");
    i.run(&fg, &["busybox", "echo", "here"]).ok();
    i.cmd(&["logs", &fg]).fails_with("no log");
    i.cmd(&["rm", &id, &fg]).ok();
    assert!(!log.exists());
    i.assert_clean();
}
