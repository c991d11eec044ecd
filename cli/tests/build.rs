//! `berth build`: Dockerfiles built on the real kernel (RUN steps are real containers over
//! overlay mounts), the results run and inspected, the cache checked by image IDs, and
//! failing or hostile builds leaving nothing behind. RUN steps get `--network none`: these
//! tests run in the host's network namespace.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{ImageStore, OutputExt};
use serde_json::Value;

/// A build test: a store with busybox, a context directory with `files`, and cleanup checks
/// (no container, mount, hold or scratch directory left).
fn build_test(files: &[(&str, &str)], body: impl FnOnce(&ImageStore, &Path)) {
    let i = ImageStore::new(&[], &["--network", "none"]);
    let ctx = i.b.dir("ctx");
    for (name, content) in files {
        let p = ctx.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
    body(&i, &ctx);
    i.assert_clean();
    let tmp: Vec<PathBuf> = fs::read_dir(i.store.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(tmp.is_empty(), "store scratch left: {tmp:?}");
}

fn build(i: &ImageStore, ctx: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["build", "--network", "none"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    i.cmd(&args)
}

/// The ID a build printed (`Successfully built <12 hex>`).
fn built_id(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("Successfully built "))
        .unwrap_or_else(|| panic!("no image ID in:\n{out}"))
        .trim()
        .to_string()
}

fn inspect(i: &ImageStore, name: &str) -> Value {
    serde_json::from_str(&i.cmd(&["image", "inspect", name]).ok().out()).unwrap()
}

fn run_out(i: &ImageStore, image: &str, script: &str) -> String {
    i.cmd(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        image,
        "-c",
        script,
    ])
    .ok()
    .out()
}

const DOCKERFILE: &str = r#"# a comment
ARG BASE=busybox
FROM ${BASE}
ARG GREETING=hello
ENV APP_HOME=/srv/app \
    MODE="two words"
WORKDIR $APP_HOME
COPY app.txt ./
COPY conf/ /etc/app/
COPY --chown=1000:1000 *.sh /opt/scripts/
RUN echo "$GREETING from $MODE" > built.txt && \
    rm /bin/vi && \
    mkdir -p /var/empty-dir
USER 1000
LABEL org.example.name="demo app" version=1
EXPOSE 8080 53/udp
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD cat /srv/app/built.txt
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat built.txt"]
"#;

#[test]
fn a_dockerfile_builds_runs_and_carries_its_config() {
    build_test(
        &[
            ("Dockerfile", DOCKERFILE),
            ("app.txt", "app\n"),
            ("conf/a.conf", "a=1\n"),
            ("conf/sub/b.conf", "b=2\n"),
            ("run.sh", "#!/bin/sh\n"),
            ("other.sh", "#!/bin/sh\n"),
        ],
        |i, ctx| {
            let out = build(i, ctx, &["-t", "demo:1", "--build-arg", "GREETING=hi"])
                .ok()
                .out();
            assert!(out.contains("Step 1/"), "{out}");
            assert!(out.contains("Successfully tagged demo:1"), "{out}");
            // The image runs its ENTRYPOINT + CMD as user 1000.
            let got = i
                .cmd(&["run", "--rm", "--network", "none", "demo:1"])
                .ok()
                .out();
            assert_eq!(got, "hi from two words\n");
            let files = run_out(
                i,
                "demo:1",
                "cat /srv/app/app.txt /etc/app/a.conf /etc/app/sub/b.conf; \
                 stat -c '%u:%g %n' /opt/scripts/run.sh /opt/scripts/other.sh /srv/app/app.txt; \
                 test -e /bin/vi || echo vi-gone; test -d /var/empty-dir && echo dir-ok; id -u",
            );
            assert_eq!(
                files,
                "app\na=1\nb=2\n1000:1000 /opt/scripts/run.sh\n1000:1000 /opt/scripts/other.sh\n\
                 0:0 /srv/app/app.txt\nvi-gone\ndir-ok\n1000\n"
            );
            let doc = inspect(i, "demo:1");
            let c = &doc["config"]["config"];
            assert_eq!(c["WorkingDir"], "/srv/app");
            assert_eq!(c["User"], "1000");
            assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
            assert_eq!(c["Cmd"], serde_json::json!(["cat built.txt"]));
            assert_eq!(c["Labels"]["org.example.name"], "demo app");
            assert!(c["ExposedPorts"]["8080/tcp"].is_object(), "{c}");
            assert!(c["ExposedPorts"]["53/udp"].is_object(), "{c}");
            assert!(c["Volumes"]["/data"].is_object(), "{c}");
            assert_eq!(c["StopSignal"], "SIGINT");
            let env: Vec<&str> = c["Env"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert!(
                env.contains(&"MODE=two words") && env.contains(&"APP_HOME=/srv/app"),
                "{env:?}"
            );
            // ARGs are not kept in the image.
            assert!(!env.iter().any(|e| e.starts_with("GREETING")), "{env:?}");
            let history = doc["config"]["history"].as_array().unwrap();
            assert!(
                history.iter().any(|h| h["empty_layer"] == true),
                "{history:?}"
            );
            i.cmd(&["rmi", "demo:1"]).ok();
        },
    );
}

#[test]
fn an_unchanged_rebuild_is_all_cache_and_a_changed_file_rebuilds_from_its_step() {
    let dockerfile =
        "FROM busybox\nRUN echo one > /one\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy\n";
    build_test(
        &[("Dockerfile", dockerfile), ("a.txt", "first\n")],
        |i, ctx| {
            let first = build(i, ctx, &["-t", "cached"]).ok().out();
            let id = built_id(&first);
            let again = build(i, ctx, &["-t", "cached"]).ok().out();
            assert_eq!(built_id(&again), id, "{again}");
            assert_eq!(again.matches("Using cache").count(), 3, "{again}");
            assert!(!again.contains("Running in"), "{again}");
            // A touch does not invalidate the cache; a change of content does, from that step.
            let f = fs::File::options()
                .write(true)
                .open(ctx.join("a.txt"))
                .unwrap();
            f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
            assert_eq!(built_id(&build(i, ctx, &["-t", "cached"]).ok().out()), id);
            fs::write(ctx.join("a.txt"), "second\n").unwrap();
            let changed = build(i, ctx, &["-t", "cached"]).ok().out();
            assert_ne!(built_id(&changed), id);
            assert_eq!(changed.matches("Using cache").count(), 1, "{changed}");
            assert_eq!(run_out(i, "cached", "cat /copy /one"), "second\none\n");
            let fresh = build(i, ctx, &["-t", "cached", "--no-cache"]).ok().out();
            assert_eq!(fresh.matches("Using cache").count(), 0, "{fresh}");
            assert_eq!(fresh.matches("Running in").count(), 2, "{fresh}");
            i.cmd(&["rmi", "cached"]).ok();
        },
    );
}

#[test]
fn stages_copy_from_each_other_and_target_stops_early() {
    let dockerfile = "FROM busybox AS builder\nRUN mkdir /out && echo built > /out/artifact\n\
                      FROM scratch AS bare\nCOPY --from=builder /out/artifact /artifact\n\
                      FROM busybox\nCOPY --from=bare /artifact /final\nCOPY --from=0 /out /outdir\n\
                      ONBUILD RUN echo triggered > /trigger\n";
    build_test(&[("Dockerfile", dockerfile)], |i, ctx| {
        build(i, ctx, &["-t", "multi"]).ok();
        assert_eq!(
            run_out(i, "multi", "cat /final /outdir/artifact"),
            "built\nbuilt\n"
        );
        let bare = build(i, ctx, &["-t", "bare", "--target", "bare"])
            .ok()
            .out();
        assert!(!bare.contains("COPY --from=bare"), "{bare}");
        let doc = inspect(i, "bare");
        assert_eq!(
            doc["config"]["rootfs"]["diff_ids"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        build(i, ctx, &["--target", "nosuch"]).fails_with("nosuch");
        // A child of an image with ONBUILD runs the trigger.
        let child = i.b.dir("child");
        fs::write(child.join("Dockerfile"), "FROM multi\nRUN cat /trigger\n").unwrap();
        let out = build(i, &child, &["-t", "child"]).ok().out();
        assert!(out.contains("Executing 1 build trigger"), "{out}");
        assert_eq!(run_out(i, "child", "cat /trigger"), "triggered\n");
        for t in ["multi", "bare", "child"] {
            i.cmd(&["rmi", t]).ok();
        }
    });
}

#[test]
fn a_failing_run_names_the_step_tags_nothing_and_leaves_nothing() {
    let dockerfile = "FROM busybox\nRUN echo before\nRUN echo failing; exit 3\nRUN echo never\n";
    build_test(&[("Dockerfile", dockerfile)], |i, ctx| {
        let out = build(i, ctx, &["-t", "broken"]);
        let err = out.fails_with("returned a non-zero code: 3");
        assert!(err.contains("exit 3"), "{err}");
        assert!(out.out().contains("failing"), "{}", out.out());
        i.cmd(&["image", "inspect", "broken"])
            .fails_with("not found");
        // A command that does not exist.
        fs::write(
            ctx.join("Dockerfile"),
            "FROM busybox\nRUN [\"/nonexistent\"]\n",
        )
        .unwrap();
        build(i, ctx, &[]).fails_with("non-zero code");
    });
}

#[test]
fn bad_dockerfiles_name_their_line() {
    build_test(
        &[("Dockerfile", "FROM busybox\nRUN true\nFROB x\n")],
        |i, ctx| {
            build(i, ctx, &[]).fails_with("line 3");
            fs::write(
                ctx.join("Dockerfile"),
                "FROM busybox\nENV A=${B:?must be set}\n",
            )
            .unwrap();
            build(i, ctx, &[]).fails_with("must be set");
            fs::write(ctx.join("Dockerfile"), "FROM nosuch-image-here\n").unwrap();
            build(i, ctx, &[]).fails_with("nosuch-image-here");
            fs::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY a b c\n").unwrap();
            build(i, ctx, &[]).fails_with("must be a directory");
        },
    );
}

#[test]
fn the_context_cannot_reach_the_host() {
    build_test(
        &[
            ("inside.txt", "inside\n"),
            (".dockerignore", "secret.txt\n"),
            ("secret.txt", "s\n"),
        ],
        |i, ctx| {
            std::os::unix::fs::symlink("/etc/hostname", ctx.join("escape")).unwrap();
            std::os::unix::fs::symlink("../../../../../../etc", ctx.join("updir")).unwrap();
            for (src, needle) in [
                ("../outside", "outside the build context"),
                ("escape", "no such file"),
                ("updir/hostname", "no such file"),
                ("secret.txt", "dockerignore"),
                ("/etc/passwd", "no such file"),
            ] {
                fs::write(
                    ctx.join("Dockerfile"),
                    format!("FROM busybox\nCOPY {src} /x\n"),
                )
                .unwrap();
                build(i, ctx, &[]).fails_with(needle);
            }
            // Excluded files do not come with a directory copy either.
            fs::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY . /ctx/\n").unwrap();
            build(i, ctx, &["-t", "ctx"]).ok();
            assert_eq!(
                run_out(i, "ctx", "ls -A /ctx | sort | tr '\\n' ' '"),
                ".dockerignore Dockerfile escape inside.txt updir "
            );
            i.cmd(&["rmi", "ctx"]).ok();
        },
    );
}

#[test]
fn add_unpacks_local_archives_and_fetches_urls() {
    build_test(&[], |i, ctx| {
        let src = i.b.dir("tarsrc");
        fs::write(src.join("inner.txt"), "inner\n").unwrap();
        for (flag, name) in [
            ("-czf", "a.tar.gz"),
            ("-cjf", "b.tar.bz2"),
            ("-cJf", "c.tar.xz"),
        ] {
            let st = std::process::Command::new("tar")
                .args([
                    flag,
                    ctx.join(name).to_str().unwrap(),
                    "-C",
                    src.to_str().unwrap(),
                    "inner.txt",
                ])
                .status()
                .unwrap();
            assert!(st.success(), "tar {flag}");
        }
        // A one-request HTTP server on loopback for ADD's URL.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            use std::io::{Read as _, Write as _};
            let (mut conn, _) = listener.accept().unwrap();
            let mut req = [0u8; 4096];
            let n = conn.read(&mut req).unwrap();
            let head = String::from_utf8_lossy(&req[..n]).to_string();
            let body = "fetched\n";
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            head
        });
        fs::write(
            ctx.join("Dockerfile"),
            format!(
                "FROM busybox\nADD a.tar.gz /gz/\nADD b.tar.bz2 /bz2/\nADD c.tar.xz /xz/\nCOPY a.tar.gz /copied/\n\
                 ADD http://127.0.0.1:{port}/files/hello.txt?x=1 /web/\n"
            ),
        )
        .unwrap();
        build(i, ctx, &["-t", "added"]).ok();
        assert!(server
            .join()
            .unwrap()
            .starts_with("GET /files/hello.txt?x=1 "));
        assert_eq!(
            run_out(
                i,
                "added",
                "cat /gz/inner.txt /bz2/inner.txt /xz/inner.txt /web/hello.txt; ls /copied; stat -c %a /web/hello.txt"
            ),
            "inner\ninner\ninner\nfetched\na.tar.gz\n600\n"
        );
        // COPY takes no URL; an unreachable URL names itself.
        fs::write(
            ctx.join("Dockerfile"),
            format!("FROM busybox\nCOPY http://127.0.0.1:{port}/x /x\n"),
        )
        .unwrap();
        build(i, ctx, &[]).fails_with("cannot take a URL");
        fs::write(
            ctx.join("Dockerfile"),
            format!("FROM busybox\nADD http://127.0.0.1:{port}/gone /x\n"),
        )
        .unwrap();
        build(i, ctx, &[]).fails_with(&format!("http://127.0.0.1:{port}/gone"));
        i.cmd(&["rmi", "added"]).ok();
    });
}

/// A `berth build` of `ctx` left running (`--network <network>`), its RUN steps given the
/// test's tag as a build arg so that their processes carry it.
fn spawn_build(i: &ImageStore, ctx: &Path, network: &str) -> std::process::Child {
    let tag = format!("BERTH_TEST_TAG={}", i.b.tag);
    std::process::Command::new(common::BERTH)
        .arg("--root")
        .arg(&i.b.root)
        .arg("--store")
        .arg(&i.store)
        .args(["build", "--network", network, "--build-arg", &tag])
        .arg(ctx)
        .env("BERTH_TEST_TAG", &i.b.tag)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// The step container (`berth-build-*`) whose `sleep` runs, once it does.
fn running_step(i: &ImageStore) -> String {
    let mut id = None;
    let up = common::poll_until(std::time::Duration::from_secs(60), || {
        id = fs::read_dir(&i.b.root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("berth-build-"));
        id.is_some()
            && common::tagged_processes(&i.b.tag)
                .iter()
                .any(|(_, cmd)| cmd.starts_with("sleep"))
    });
    assert!(up, "no step container ran sleep");
    id.unwrap()
}

/// Cgroup directories (two levels deep in each hierarchy) whose name contains `id`.
fn cgroups_named(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((d, depth)) = dirs.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy().contains(id) {
                found.push(p);
            } else if depth < 2 {
                dirs.push((p, depth + 1));
            }
        }
    }
    found
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let needle = dir.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

/// Kills (SIGKILL) a build during its `RUN sleep 30` and checks what that leaves at once: the
/// step's container and overlay mount, but not its runtime (`berth run` dies with the
/// builder). Returns the step container's ID.
fn kill_during_run(i: &ImageStore, ctx: &Path, network: &str) -> String {
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nARG BERTH_TEST_TAG\nRUN echo started; sleep 30\n",
    )
    .unwrap();
    let mut child = spawn_build(i, ctx, network);
    let id = running_step(i);
    child.kill().unwrap();
    child.wait().unwrap();
    // The runtime (`berth run`, which carries the tag too) died with the builder.
    let runtime_gone = common::poll_until(std::time::Duration::from_secs(5), || {
        !common::tagged_processes(&i.b.tag)
            .iter()
            .any(|(_, cmd)| cmd.contains(" run --bundle"))
    });
    assert!(runtime_gone, "{:?}", common::tagged_processes(&i.b.tag));
    assert!(
        !mounts_under(&i.store.join("tmp")).is_empty(),
        "the killed step's overlay is expected to be mounted still"
    );
    id
}

/// Nothing of step container `id` is left: no process, runtime state, cgroup, mount or
/// scratch directory.
fn assert_step_gone(i: &ImageStore, id: &str) {
    i.b.assert_no_processes();
    i.b.assert_no_state(id);
    assert_eq!(cgroups_named(id), Vec::<PathBuf>::new(), "cgroups left");
    assert_eq!(mounts_under(&i.store), Vec::<String>::new(), "mounts left");
    let tmp: Vec<PathBuf> = fs::read_dir(i.store.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(tmp.is_empty(), "store scratch left: {tmp:?}");
}

#[test]
fn a_build_killed_during_run_is_undone_by_the_next_build_or_image_prune() {
    build_test(&[], |i, ctx| {
        // Undone by the next build, which then builds.
        let id = kill_during_run(i, ctx, "none");
        fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo next\n").unwrap();
        let out = build(i, ctx, &["-t", "next"]).ok().out();
        assert!(out.contains("Successfully tagged next"), "{out}");
        assert_step_gone(i, &id);
        // Undone by `image prune`.
        let id = kill_during_run(i, ctx, "none");
        let out = i.cmd(&["image", "prune"]).ok().out();
        assert!(out.contains("1 bundles of killed runs"), "{out}");
        assert_step_gone(i, &id);
        i.cmd(&["rmi", "next"]).ok();
    });
}

#[test]
fn a_build_killed_while_copying_or_committing_leaves_nothing_after_the_next() {
    build_test(&[], |i, ctx| {
        for n in 0..500 {
            let d = ctx.join(format!("tree/d{}", n % 20));
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join(format!("f{n}")), format!("{n}\n")).unwrap();
        }
        fs::write(
            ctx.join("Dockerfile"),
            "FROM busybox AS src\nRUN mkdir /made && echo made > /made/x\n\
             FROM busybox\nCOPY tree /tree\nCOPY --from=src /made /made\nRUN echo ran > /ran\n",
        )
        .unwrap();
        let args = |ctx: &Path| {
            vec![
                "build".to_string(),
                "--network".into(),
                "none".into(),
                "--no-cache".into(),
                ctx.display().to_string(),
            ]
        };
        // Each point once: the tree copied onto the mounted overlay; a `COPY --from` with its
        // source stage mounted too; the step's overlay unmounted; its blob written, not yet
        // moved into place.
        for point in [
            "build:copied",
            "build:copied-from",
            "build:unmounted",
            "commit:written",
        ] {
            i.killed_at(point, &args(ctx));
            let left: Vec<_> = fs::read_dir(i.store.join("tmp")).unwrap().collect();
            assert!(!left.is_empty(), "{point}: nothing was left to undo");
            // The next command that opens the store (here a build) removes it all.
            let out = i
                .cmd(&[
                    "build",
                    "--network",
                    "none",
                    "-t",
                    "whole",
                    ctx.to_str().unwrap(),
                ])
                .ok()
                .out();
            assert!(out.contains("Successfully tagged whole"), "{point}: {out}");
            assert_eq!(mounts_under(&i.store), Vec::<String>::new(), "{point}");
            let tmp: Vec<_> = fs::read_dir(i.store.join("tmp")).unwrap().collect();
            assert!(tmp.is_empty(), "{point}: scratch left: {tmp:?}");
        }
        assert_eq!(
            run_out(i, "whole", "ls /tree | wc -l; cat /made/x /ran"),
            "20\nmade\nran\n"
        );
        i.cmd(&["rmi", "whole"]).ok();
    });
}

#[test]
fn a_build_killed_during_a_bridged_run_leaves_no_network_debris() {
    // In a network namespace of its own: the bridge, veths and rules are created there.
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare net");
        let i = ImageStore::new(&[], &[]);
        let ip = |args: &str| {
            let out = std::process::Command::new("sh")
                .args(["-c", args])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        ip("ip link set lo up");
        let ctx = i.b.dir("ctx");
        let id = kill_during_run(&i, &ctx, "bridge");
        assert!(
            ip("ip -o link show").contains(" bv"),
            "no veth while running"
        );
        fs::write(ctx.join("Dockerfile"), "FROM busybox\nENV A=1\n").unwrap();
        i.cmd(&["build", "--network", "bridge", ctx.to_str().unwrap()])
            .ok();
        assert_step_gone(&i, &id);
        let links = ip("ip -o link show");
        assert!(!links.contains(" bv"), "veths left: {links}");
        let pinned: Vec<_> = fs::read_dir(i.store.join("net/netns"))
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(pinned.is_empty(), "pinned namespaces left: {pinned:?}");
        let ipam = fs::read_to_string(i.store.join("net/ipam/berth.json")).unwrap_or_default();
        assert!(!ipam.contains(&id), "lease left: {ipam}");
        i.assert_clean();
        for name in i.cmd(&["network", "ls", "-q"]).ok().out().lines() {
            i.cmd(&["network", "rm", name]).ok();
        }
    })
    .join()
    .unwrap();
}

#[test]
fn a_context_tar_or_a_dockerfile_comes_on_stdin() {
    build_test(
        &[
            ("Dockerfile", "FROM busybox\nCOPY hello.txt /\n"),
            ("hello.txt", "hi\n"),
        ],
        |i, ctx| {
            let tar = i.b.path().join("ctx.tar.bz2");
            let st = std::process::Command::new("tar")
                .args([
                    "-cjf",
                    tar.to_str().unwrap(),
                    "-C",
                    ctx.to_str().unwrap(),
                    ".",
                ])
                .status()
                .unwrap();
            assert!(st.success());
            let from_tar = |args: &[&str], input: &Path| {
                let f = fs::File::open(input).unwrap();
                i.cmd_with(args, |c| {
                    c.stdin(f);
                })
            };
            from_tar(&["build", "--network", "none", "-t", "piped", "-"], &tar).ok();
            assert_eq!(run_out(i, "piped", "cat /hello.txt"), "hi\n");
            // A Dockerfile alone: no context, so a COPY finds nothing.
            from_tar(
                &["build", "--network", "none", "-t", "piped", "-"],
                &ctx.join("Dockerfile"),
            )
            .fails_with("hello.txt");
            fs::write(i.b.path().join("Only"), "FROM busybox\nLABEL only=1\n").unwrap();
            from_tar(
                &["build", "--network", "none", "-q", "-t", "piped", "-"],
                &i.b.path().join("Only"),
            )
            .ok();
            i.cmd(&["rmi", "piped"]).ok();
        },
    );
}
