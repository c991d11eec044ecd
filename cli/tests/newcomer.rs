//! The berth command as a new user meets it (issue 20): help without arguments and in each
//! subcommand, quiet exits on a closed standard output, `run -i`, `run -t` and `exec -t`
//! with a terminal of their own, and docker's meaning of `run`'s flags.

mod common;

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::process::{Output, Stdio};

use common::registry::Registry;
use common::{Berth, ImageStore, OutputExt, BERTH};

/// A store of busybox for this test; its containers get no network.
fn store() -> ImageStore {
    ImageStore::new(&[], &["--network", "none"])
}

#[test]
fn no_arguments_prints_help() {
    let out = std::process::Command::new(BERTH).output().unwrap();
    assert_eq!(out.code(), 2, "{}", out.err());
    let help = out.err();
    assert!(
        help.contains("Usage: berth") && help.contains("Commands:") && !help.contains("error"),
        "{help}"
    );
    // Global flags alone: the help too.
    let out = std::process::Command::new(BERTH)
        .arg("--debug")
        .output()
        .unwrap();
    assert_eq!(out.code(), 2, "{}", out.err());
    assert!(out.err().contains("Commands:"), "{}", out.err());
}

#[test]
fn subcommand_help_shows_only_its_own_flags() {
    let top = std::process::Command::new(BERTH)
        .arg("--help")
        .output()
        .unwrap()
        .ok();
    assert!(top.out().contains("--log-format"), "{}", top.out());
    for sub in [&["run"][..], &["images"], &["network", "ls"], &["list"]] {
        let mut args = sub.to_vec();
        args.push("--help");
        let out = std::process::Command::new(BERTH)
            .args(&args)
            .output()
            .unwrap()
            .ok();
        let help = out.out();
        assert!(help.contains("Usage: berth"), "{sub:?}: {help}");
        for global in ["--log-format", "--systemd-cgroup", "--store", "--root"] {
            assert!(!help.contains(global), "{sub:?} shows {global}: {help}");
        }
    }
    // Still accepted after the subcommand.
    let b = Berth::new();
    b.cmd(&["list", "--root", b.root.to_str().unwrap()]).ok();
}

/// A pipe whose reader is already gone, as `| head -1` leaves it.
fn closed_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are new and ours; the read end is closed at once.
    unsafe {
        drop(OwnedFd::from_raw_fd(fds[0]));
        OwnedFd::from_raw_fd(fds[1])
    }
}

#[test]
fn a_closed_stdout_ends_commands_quietly() {
    let i = store();
    let id = i.run_sleeper("pipe", &[]);
    let quiet = |args: &[&str]| {
        let out = i.cmd_with(args, |c| {
            c.stdout(Stdio::from(closed_pipe()));
        });
        assert_eq!(out.code(), 0, "{args:?}: {}", out.err());
        assert_eq!(out.err(), "", "{args:?}");
    };
    // The lean berth (println! and writeln!), then berth-tools.
    quiet(&["list"]);
    quiet(&["events", "--stats", &id]);
    quiet(&["state", &id]);
    quiet(&["features"]);
    quiet(&["images"]);
    quiet(&["network", "ls"]);
    quiet(&["list", "--format=json"]);
    i.cmd(&["delete", "--force", &id]).ok();
    i.assert_clean();
}

/// `run` with standard input from a file holding `input`.
fn run_with_input(i: &ImageStore, name: &str, args: &[&str], input: &str) -> Output {
    let path = i.b.path().join(format!("{name}.in"));
    std::fs::write(&path, input).unwrap();
    i.run_with(&i.b.id(name), args, |c| {
        c.stdin(File::open(&path).unwrap());
    })
}

#[test]
fn run_reads_stdin_only_with_i() {
    let i = store();
    let out = run_with_input(&i, "noi", &["--rm", "busybox", "cat"], "piped\n").ok();
    assert_eq!(out.out(), "", "without -i the container reads /dev/null");
    let out = run_with_input(&i, "withi", &["--rm", "-i", "busybox", "cat"], "piped\n").ok();
    assert_eq!(out.out(), "piped\n");
    i.assert_clean();
}

/// A pty pair for the caller's side: (master, slave), the window 33x77.
fn caller_pty() -> (OwnedFd, OwnedFd) {
    let ws = libc::winsize {
        ws_row: 33,
        ws_col: 77,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&ws), None).unwrap();
    (pty.master, pty.slave)
}

/// Runs `args` with a pty as the caller's terminal (stdin, stdout and stderr; the controlling
/// terminal of berth's own session); once the output holds `prompt`, types `input`. Returns
/// berth's output and the terminal's output.
fn on_a_terminal(
    i: &ImageStore,
    id: &str,
    args: &[&str],
    prompt: &str,
    input: &str,
) -> (Output, String) {
    let mut typed = input.is_empty();
    on_a_terminal_with(i, id, args, |text, master| {
        if !typed && text.contains(prompt) {
            master.write_all(input.as_bytes()).unwrap();
            typed = true;
        }
    })
}

/// [`on_a_terminal`], calling `react` with the output so far and the terminal's master after
/// each read.
fn on_a_terminal_with(
    i: &ImageStore,
    id: &str,
    args: &[&str],
    mut react: impl FnMut(&str, &mut File),
) -> (Output, String) {
    let (master, slave) = caller_pty();
    let before = nix::sys::termios::tcgetattr(&slave).unwrap();
    let mut reader = File::from(master.try_clone().unwrap());
    let mut writer = File::from(master);
    let mut text = String::new();
    let out = std::thread::scope(|s| {
        let run = s.spawn(|| {
            i.run_with(id, args, |c| {
                c.stdin(Stdio::from(slave.try_clone().unwrap()))
                    .stdout(Stdio::from(slave.try_clone().unwrap()))
                    .stderr(Stdio::from(slave.try_clone().unwrap()));
                // SAFETY: setsid and ioctl only, between fork and exec.
                unsafe {
                    std::os::unix::process::CommandExt::pre_exec(c, || {
                        libc::setsid();
                        libc::ioctl(0, libc::TIOCSCTTY, 0);
                        Ok(())
                    });
                }
            })
        });
        nix::fcntl::fcntl(
            reader.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        let mut buf = [0u8; 4096];
        loop {
            // Checked before the read: once berth has exited, one last read drains the rest.
            let finished = run.is_finished();
            match reader.read(&mut buf) {
                Ok(n) if n > 0 => {
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                    react(&text, &mut writer);
                }
                _ if finished => break,
                _ => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        run.join().unwrap()
    });
    let after = nix::sys::termios::tcgetattr(&slave).unwrap();
    assert_eq!(
        before.local_flags, after.local_flags,
        "the caller's terminal was not put back"
    );
    (out, text)
}

/// Sets the window size of the terminal on `fd`.
fn resize(fd: &File, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a pointer to a live winsize.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &raw const ws) };
    assert_eq!(rc, 0);
}

#[test]
fn run_it_follows_the_callers_window_size() {
    let i = store();
    let id = i.b.id("winch");
    // Prints the size at each line typed; ends at "q".
    let script = "echo ready; while read l && [ \"$l\" != q ]; do stty size; done";
    let args = ["--rm", "-it", "busybox", "sh", "-c", script];
    let mut resized = false;
    let mut done = false;
    let (out, text) = on_a_terminal_with(&i, &id, &args, |text, master| {
        if !resized && text.contains("ready") {
            resize(master, 40, 100);
            resized = true;
            master.write_all(b"\r").unwrap();
        } else if resized && !done {
            // The size follows the caller's: the process sees it at one of its next lines.
            if text.contains("40 100") {
                master.write_all(b"q\r").unwrap();
                done = true;
            } else if text.ends_with('\n') {
                master.write_all(b"\r").unwrap();
            }
        }
    });
    assert_eq!(out.code(), 0, "{text}");
    assert!(done, "{text:?}");
    i.assert_clean();
}

#[test]
fn run_t_gives_the_container_a_terminal_of_its_own() {
    let i = store();
    let id = i.b.id("tty");
    let args = ["--rm", "-t", "busybox", "sh", "-c", "tty; stty size"];
    // Standard input is not a terminal: the container gets its own all the same.
    let out = i.run(&id, &args).ok();
    assert!(out.out().contains("/dev/pts/0"), "{}", out.out());
    // On the caller's terminal: its size is passed on.
    let (out, text) = on_a_terminal(&i, &id, &args, "", "");
    assert_eq!(out.code(), 0, "{text}");
    assert!(
        text.contains("/dev/pts/0") && text.contains("33 77"),
        "{text:?}"
    );
    // -it: typed input reaches the process.
    let script = "echo ready; read line; echo got-$line";
    let args = ["--rm", "-it", "busybox", "sh", "-c", script];
    let (out, text) = on_a_terminal(&i, &id, &args, "ready", "hello\r");
    assert_eq!(out.code(), 0, "{text}");
    assert!(text.contains("got-hello"), "{text:?}");
    i.assert_clean();
}

#[test]
fn exec_t_gives_a_terminal_without_one_on_stdin() {
    let i = store();
    let id = i.run_sleeper("exect", &[]);
    // The lean berth (`-t`) and berth-tools (`-it`, clustered).
    let out = i.cmd(&["exec", "-t", &id, "tty"]).ok();
    assert!(out.out().contains("/dev/pts/"), "{}", out.out());
    let input = i.b.path().join("exec.in");
    std::fs::write(&input, "abc\n").unwrap();
    let out = i
        .cmd_with(
            &["exec", "-it", &id, "sh", "-c", "read l; echo got-$l"],
            |c| {
                c.stdin(File::open(&input).unwrap());
            },
        )
        .ok();
    assert!(out.out().contains("got-abc"), "{}", out.out());
    i.cmd(&["delete", "--force", &id]).ok();
    i.assert_clean();
}

#[test]
fn run_pulls_a_missing_image_as_pull_says() {
    let i = store();
    let reg = Registry::start(None);
    let layout = i.b.path().join("layout-bb");
    common::busybox_layout(&layout, "bb:latest", &[]);
    reg.seed(&layout, "team/bb", "v1", None);
    let image = format!("{}/team/bb:v1", reg.host());
    // Not in the store: --pull never refuses, naming `berth pull`.
    let err = i
        .run(
            &i.b.id("never"),
            &["--rm", "--pull", "never", &image, "true"],
        )
        .fails_with("not found in the store");
    assert!(err.contains("berth pull"), "{err}");
    // The default (missing) pulls it, then runs it.
    let out = i
        .run(&i.b.id("missing"), &["--rm", &image, "echo", "ran"])
        .ok();
    assert_eq!(out.out(), "ran\n");
    assert!(out.err().contains("pulling it"), "{}", out.err());
    // Now in the store: missing pulls nothing, always pulls again.
    let out = i.run(&i.b.id("again"), &["--rm", &image, "true"]).ok();
    assert!(!out.err().contains("pulled"), "{}", out.err());
    let out = i
        .run(
            &i.b.id("always"),
            &["--rm", "--pull", "always", &image, "true"],
        )
        .ok();
    assert!(out.err().contains("pulled "), "{}", out.err());
    i.assert_clean();
}

#[test]
fn pull_platform_of_a_single_platform_image_must_match() {
    let b = Berth::new();
    let store = b.path().join("store");
    let reg = Registry::start(None);
    let layout = b.path().join("layout-one");
    common::busybox_layout(&layout, "one:latest", &[]);
    reg.seed(&layout, "one", "v1", None);
    let image = format!("{}/one:v1", reg.host());
    let s = store.to_str().unwrap();
    let err = b
        .cmd(&["--store", s, "pull", "--platform", "linux/arm64", &image])
        .fails_with("no manifest for platform linux/arm64 (available: linux/amd64)");
    assert!(err.contains("one:v1"), "{err}");
    let images = b.cmd(&["--store", s, "images", "-q"]).ok();
    assert_eq!(images.out(), "", "nothing is stored");
    b.cmd(&["--store", s, "pull", "--platform", "linux/amd64", &image])
        .ok();
    b.cmd(&["--store", s, "pull", &image]).ok();
}

#[test]
fn rmi_removes_what_it_can_and_reports_each_missing_name() {
    let i = store();
    i.cmd(&["tag", "busybox", "second:v1"]).ok();
    i.cmd(&["tag", "busybox", "third:v1"]).ok();
    let out = i.cmd(&["rmi", "nosuch", "second:v1", "nosuch-either"]);
    assert_eq!(out.code(), 1, "{}", out.err());
    assert!(out.out().contains("removed second:v1"), "{}", out.out());
    assert!(
        out.err().contains("nosuch") && out.err().matches("not found").count() == 2,
        "{}",
        out.err()
    );
    let out = i.cmd(&["image", "rm", "third:v1", "nosuch"]);
    assert_eq!(out.code(), 1, "{}", out.err());
    let left = i.cmd(&["images", "-q"]).ok().out();
    assert_eq!(left, "busybox:latest\n");
    i.assert_clean();
}

#[test]
fn run_env_without_a_value_and_a_missing_workdir_as_docker() {
    let i = store();
    let script = "pwd; echo $FROM_CALLER; env | grep -c UNSET_IN_CALLER";
    let flags = [
        "-e",
        "FROM_CALLER",
        "-e",
        "UNSET_IN_CALLER",
        "-w",
        "/made/for/me",
    ];
    let mut args = vec!["--rm"];
    args.extend(flags);
    args.extend(["busybox", "sh", "-c", script]);
    let out = i.run_with(&i.b.id("envw"), &args, |c| {
        c.env("FROM_CALLER", "caller's value")
            .env_remove("UNSET_IN_CALLER");
    });
    assert_eq!(
        out.out(),
        "/made/for/me\ncaller's value\n0\n",
        "{}",
        out.err()
    );
    i.assert_clean();
}

#[test]
fn registry_errors_say_things_once() {
    let i = store();
    // Port 1 on loopback: nothing listens.
    let target = "127.0.0.1:1/app:v1";
    i.cmd(&["tag", "busybox", target]).ok();
    let err = i.cmd(&["push", target]).fails_with("Connection");
    assert!(err.contains(&format!("pushing {target}: ")), "{err}");
    assert_eq!(err.matches(target).count(), 1, "{err}");
    assert_eq!(err.matches("http://127.0.0.1:1/v2/").count(), 1, "{err}");
    i.assert_clean();
}

#[test]
fn run_host_flags_mean_what_they_mean_to_docker() {
    let i = store();
    let host_dir = i.b.dir("hostdir");
    std::fs::write(host_dir.join("f"), "from the host\n").unwrap();
    let env_file = i.b.path().join("env");
    std::fs::write(&env_file, "# settings\nFROM_FILE=yes\nFROM_CALLER\n").unwrap();
    let bind = format!("{}:/h:ro", host_dir.display());
    let flags = [
        "-v",
        &bind,
        "-v",
        "vol1:/vol",
        "--mount",
        "type=tmpfs,target=/t,tmpfs-size=1m",
        "--env-file",
        env_file.to_str().unwrap(),
        "-m",
        "64m",
        "--cpus",
        "0.5",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CHOWN",
        "--read-only",
        "--init",
        "--hostname",
        "myhost",
    ];
    let id = i.b.id("hostflags");
    let mut args = vec!["-d"];
    args.extend(flags);
    args.extend(["busybox", "sleep", "1000"]);
    i.run_with(&id, &args, |c| {
        c.env("FROM_CALLER", "caller");
    })
    .ok();
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(i.store.join("bundles").join(&id).join("config.json")).unwrap(),
    )
    .unwrap();
    let res = &config["linux"]["resources"];
    assert_eq!(res["memory"]["limit"], 64 << 20, "{res}");
    assert_eq!(res["cpu"]["quota"], 50_000, "{res}");
    assert_eq!(config["root"]["readonly"], true);
    assert_eq!(config["process"]["args"][0], "/sbin/docker-init");
    assert_eq!(
        config["process"]["capabilities"]["bounding"],
        serde_json::json!(["CAP_CHOWN"])
    );
    let script = "cat /h/f; echo x > /vol/y && echo vol-ok; grep -c ' /t tmpfs' /proc/mounts; echo $FROM_FILE $FROM_CALLER; hostname; touch /h/x 2>/dev/null || echo h-ro; touch /x 2>/dev/null || echo root-ro";
    let out = i.cmd(&["exec", &id, "sh", "-c", script]).ok();
    assert_eq!(
        out.out(),
        "from the host\nvol-ok\n1\nyes caller\nmyhost\nh-ro\nroot-ro\n"
    );
    assert!(i.store.join("volumes/vol1/_data/y").exists());
    i.cmd(&["delete", "--force", &id]).ok();
    // Hostile values name the flag.
    for (flag, value) in [
        ("-v", "/tmp:rel"),
        ("--mount", "type=nfs,target=/x"),
        ("-m", "lots"),
        ("--cpus", "-1"),
    ] {
        let err = i
            .run(&i.b.id("bad"), &["--rm", flag, value, "busybox", "true"])
            .fails_with(value);
        assert!(!err.contains("panicked"), "{err}");
    }
    i.assert_clean();
}
