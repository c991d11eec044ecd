//! Images through the docker CLI: pull from a registry (with progress), list, tag,
//! inspect, remove.

mod common;

use common::{Daemon, OutputExt, IMAGE};

#[test]
fn pull_shows_progress_then_up_to_date() {
    let d = Daemon::start();
    let out = d.docker_ok(&["pull", IMAGE]);
    assert!(out.contains("Pull complete"), "{out}");
    assert!(out.contains("Digest: sha256:"), "{out}");
    assert!(
        out.contains(&format!(
            "Status: Downloaded newer image for {IMAGE}:latest"
        )),
        "{out}"
    );
    assert!(
        out.trim_end().ends_with(&format!("{IMAGE}:latest")),
        "{out}"
    );
    let again = d.docker_ok(&["pull", IMAGE]);
    assert!(
        again.contains(&format!("Status: Image is up to date for {IMAGE}:latest")),
        "{again}"
    );
    let missing = d.docker(&["pull", "127.0.0.1:5000/nosuch:v1"]);
    assert_ne!(missing.code(), 0, "{}", missing.out());
    assert!(
        missing.err().contains("Error response from daemon"),
        "{}",
        missing.err()
    );
    d.finish();
}

#[test]
fn images_tag_inspect_and_rmi() {
    let d = Daemon::with_image();
    let list = d.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    let line = list
        .lines()
        .find(|l| l.starts_with(&format!("{IMAGE}:latest ")))
        .unwrap_or_else(|| panic!("{IMAGE} not listed:\n{list}"));
    let short_id = line.split(' ').nth(1).unwrap().to_string();

    d.docker_ok(&["tag", IMAGE, "app:v1"]);
    d.docker_ok(&["tag", IMAGE, "team/app"]);
    let list = d.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    for name in ["app:v1", "team/app:latest"] {
        assert!(
            list.lines().any(|l| l == format!("{name} {short_id}")),
            "{name} not listed with ID {short_id}:\n{list}"
        );
    }

    let v: serde_json::Value = serde_json::from_str(&d.docker_ok(&["image", "inspect", "app:v1"]))
        .expect("inspect prints JSON");
    let img = &v[0];
    let id = img["Id"].as_str().unwrap();
    assert!(id.starts_with(&format!("sha256:{short_id}")), "{img}");
    let tags: Vec<&str> = img["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(tags.contains(&"app:v1"), "{tags:?}");
    assert!(
        tags.contains(&format!("{IMAGE}:latest").as_str()),
        "{tags:?}"
    );
    assert_eq!(img["Os"], "linux", "{img}");
    assert_eq!(img["Config"]["Cmd"], serde_json::json!(["sh"]), "{img}");
    assert_eq!(
        d.docker_ok(&["inspect", "--type", "image", "-f", "{{.Id}}", "team/app"])
            .trim(),
        id
    );

    let out = d.docker_ok(&["rmi", "app:v1"]);
    assert!(out.contains("Untagged: app:v1"), "{out}");
    let gone = d.docker(&["image", "inspect", "app:v1"]);
    assert_ne!(gone.code(), 0);
    assert!(gone.err().contains("No such image"), "{}", gone.err());
    // Still there under its other names.
    d.docker_ok(&["image", "inspect", "team/app"]);

    // A container uses it: its other name may go, its last one only with force.
    d.docker_ok(&["create", "--name", "user", IMAGE, "true"]);
    d.docker_ok(&["rmi", "team/app"]);
    let used = d.docker(&["rmi", IMAGE]);
    assert_ne!(used.code(), 0, "rmi of an image in use succeeded");
    assert!(used.err().contains("conflict"), "{}", used.err());
    d.docker_ok(&["rm", "user"]);

    let out = d.docker_ok(&["rmi", IMAGE]);
    assert!(out.contains("Deleted: sha256:"), "{out}");
    let list = d.docker_ok(&["images", "-q"]);
    assert!(list.trim().is_empty(), "{list}");
    let missing = d.docker(&["rmi", "nosuch:v9"]);
    assert!(missing.err().contains("No such image"), "{}", missing.err());
    d.finish();
}

#[test]
fn an_untagged_build_is_listed_run_removed_and_pruned_by_id() {
    let d = Daemon::with_image();
    let ctx = d.dir.path().join("untagged");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {IMAGE}\nLABEL purpose=untagged\nCMD [\"echo\", \"no name\"]\n"),
    )
    .unwrap();
    let mut cmd = d.docker_cmd(&["build", "-q", ctx.to_str().unwrap()]);
    cmd.env("DOCKER_BUILDKIT", "0");
    let id = common::run_with_timeout(cmd, None, common::COMMAND_TIMEOUT)
        .ok("docker build -q")
        .out()
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    let listed = d.docker_ok(&[
        "images",
        "--filter",
        "dangling=true",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
    ]);
    assert!(
        listed.contains(&format!("<none>:<none> {}", &id[7..19])),
        "{listed}"
    );
    assert_eq!(d.docker_ok(&["run", "--rm", &id[7..19]]), "no name\n");
    assert_eq!(d.inspect(&id, "{{.Config.Labels.purpose}}"), "untagged");
    d.docker_ok(&["rmi", &id[7..19]]);
    assert!(!d.docker(&["image", "inspect", &id]).status.success());
    // image prune removes untagged images no container uses.
    let mut cmd = d.docker_cmd(&["build", "-q", ctx.to_str().unwrap()]);
    cmd.env("DOCKER_BUILDKIT", "0");
    common::run_with_timeout(cmd, None, common::COMMAND_TIMEOUT).ok("docker build -q");
    let pruned = d.docker_ok(&["image", "prune", "-f"]);
    assert!(pruned.contains(&id), "{pruned}");
    assert!(!d.docker(&["image", "inspect", &id]).status.success());
    d.finish();
}
