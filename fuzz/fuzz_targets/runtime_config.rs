//! An image config turned into a runtime config (`bundle::runtime_config`, image-spec
//! conversion.md): Entrypoint and Cmd (and their overrides), Env merged over the template's,
//! WorkingDir, annotations from the config and its labels, Volumes seeded from the root
//! filesystem, and `User` resolved by `bundle::resolve_user` through the root filesystem's
//! `/etc/passwd` and `/etc/group` (written from the input, or made symlinks out of the root
//! filesystem, directories or FIFOs); then `HOME` as the runtime's init finds it in that
//! `/etc/passwd` (`process::home_in_passwd`).
//!
//! Never a panic, and nothing is created outside the sandbox. Numeric users and groups are
//! taken verbatim. A runtime config that is generated from a valid template passes the
//! runtime's own parsing and validation, and carries the user `resolve_user` gives. `HOME`
//! is always an absolute path the init can put in the environment.
//!
//! The first byte picks the input's shape: the image config as raw JSON, or built from
//! fields of the input (a user from names in the files or from the input, env, entrypoint,
//! cmd, workdir, volumes, labels); which overrides are given; what `/etc/passwd` and
//! `/etc/group` are.
#![no_main]

mod common;

use std::ffi::CString;

use berth_image::bundle::{self, BundleOptions};
use berth_image::image;
use common::{Input, Sandbox};
use serde_json::{json, Value};

const USERS: &[&str] = &[
    "",
    "root",
    "0",
    "1000",
    "1000:1000",
    "app",
    "app:audio",
    "app:0",
    "4294967295",
    "4294967296",
    "-1",
    "+5",
    ":",
    "app:",
    ":app",
    " app ",
    "nobody:nogroup",
];

const VOLUMES: &[&str] = &[
    "/data",
    "/",
    "/etc",
    "/missing",
    "relative",
    "/etc/passwd",
    "/data/../..",
];

const WORKDIRS: &[&str] = &["", "/", "/app", "relative", "/a/../../b"];

fn strings(input: &mut Input<'_>, n: u8) -> Vec<String> {
    (0..n % 4).map(|_| input.text(24)).collect()
}

/// What `/etc/passwd` or `/etc/group` is in the root filesystem.
fn place(input: &mut Input<'_>, path: &std::path::Path, text: &[u8]) {
    match input.byte() % 8 {
        0 => std::os::unix::fs::symlink("../../outside/sentinel", path).expect("symlink"),
        1 => std::os::unix::fs::symlink("/etc/shadow", path).expect("symlink"),
        2 => std::fs::create_dir(path).expect("mkdir"),
        3 => {
            let c = CString::new(path.as_os_str().as_encoded_bytes()).expect("a path");
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
        }
        4 => {} // missing
        _ => std::fs::write(path, text).expect("write"),
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let sel = input.byte();
    let passwd = input.long_slice(1024);
    let group = input.long_slice(1024);
    let sb = Sandbox::new("runtime-config");
    let rootfs = sb.dest.join("rootfs");
    let bundle_dir = sb.dest.join("bundle");
    for d in ["rootfs/etc", "rootfs/data/sub", "bundle"] {
        std::fs::create_dir_all(sb.dest.join(d)).expect("mkdir");
    }
    std::fs::write(rootfs.join("data/sub/file"), b"content").expect("write");
    std::os::unix::fs::symlink("/etc", rootfs.join("data/etc")).expect("symlink");
    place(&mut input, &rootfs.join("etc/passwd"), passwd);
    place(&mut input, &rootfs.join("etc/group"), group);

    // A user name from the files, or one of the table, or input text.
    let user = match input.byte() % 4 {
        0 => {
            let text = String::from_utf8_lossy(if sel & 1 == 0 { passwd } else { group });
            let lines: Vec<&str> = text.lines().collect();
            let name = lines
                .get(input.byte() as usize % lines.len().max(1))
                .and_then(|l| l.split(':').next())
                .unwrap_or("")
                .to_string();
            if input.bool() {
                let g = String::from_utf8_lossy(group)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .to_string();
                format!("{name}:{g}")
            } else {
                name
            }
        }
        1 => input.text(24),
        _ => (*input.pick(USERS)).to_string(),
    };

    let config_json = if sel & 2 == 0 {
        input.long_slice(2048).to_vec()
    } else {
        let n = input.byte();
        let mut cfg = json!({
            "User": user,
            "Env": strings(&mut input, n),
            "Entrypoint": strings(&mut input, n >> 2),
            "Cmd": strings(&mut input, n >> 4),
            "WorkingDir": *input.pick(WORKDIRS),
            "Labels": {"org.opencontainers.image.os": input.text(8), "k": input.text(8)},
            "StopSignal": "SIGTERM",
            "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        });
        if n & 0x40 != 0 {
            let v = *input.pick(VOLUMES);
            cfg["Volumes"] = json!({ v: {} });
        }
        serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux", "author": input.text(8),
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .expect("serialise")
    };

    let u = bundle::resolve_user(&rootfs, &user);
    let spec = user.trim();
    let numeric = |s: &str| s.parse::<u32>().ok();
    match spec.split_once(':') {
        Some((a, b)) => {
            if let (Some(uid), Some(gid), Ok(got)) = (numeric(a), numeric(b), &u) {
                assert_eq!((got.uid, got.gid), (uid, gid), "{spec:?} is numeric");
            }
        }
        None => {
            if let (Some(uid), Ok(got)) = (numeric(spec), &u) {
                assert_eq!(got.uid, uid, "{spec:?} is numeric");
            }
        }
    }
    if let Ok(got) = &u {
        let home =
            berth_runtime::process::home_in_passwd(&String::from_utf8_lossy(passwd), got.uid);
        assert!(!home.is_empty(), "an empty HOME");
        assert!(
            CString::new(format!("HOME={home}")).is_ok(),
            "HOME {home:?} cannot be put in the environment"
        );
    }

    let Ok(cfg) = image::parse_config(&config_json, "fuzz") else {
        sb.check();
        return;
    };
    let template_ok = sel & 4 == 0;
    let template = if template_ok {
        json!({
            "ociVersion": "1.2.0",
            "process": {"args": ["sh"], "cwd": "/", "env": ["PATH=/usr/bin:/bin", "TERM=xterm"]},
            "root": {"path": "rootfs"},
            "annotations": {"org.opencontainers.image.os": "template"},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]},
        })
    } else {
        match sel >> 3 & 3 {
            0 => json!({"process": 1}),
            1 => json!({"mounts": {}, "config": {}}),
            2 => json!([]),
            _ => json!({"annotations": []}),
        }
    };
    let opts = BundleOptions {
        entrypoint: (sel & 0x20 != 0).then(|| vec!["/bin/entry".to_string()]),
        cmd: (sel & 0x40 != 0).then(|| vec![input.text(8)]),
        env: vec!["PATH=/override".into(), input.text(16)],
        workdir: (sel & 0x80 != 0).then(|| (*input.pick(WORKDIRS)).to_string()),
        user: input.bool().then(|| user.clone()),
        limits: Some(common::small_limits()),
        ..Default::default()
    };
    let res = bundle::runtime_config(&template, &cfg, &rootfs, &bundle_dir, &opts);
    sb.check();
    let Ok(spec) = res else {
        return;
    };
    if template_ok {
        let bytes = serde_json::to_vec(&spec).expect("serialise");
        if let Err(e) = berth_runtime::config::parse(&bytes) {
            panic!("the generated config is refused: {e}\n{spec:#}");
        }
        let user_spec = opts
            .user
            .clone()
            .or_else(|| cfg.config().as_ref().and_then(|c| c.user().clone()))
            .unwrap_or_default();
        let want = bundle::resolve_user(&rootfs, &user_spec).expect("resolved once already");
        assert_eq!(spec["process"]["user"]["uid"], Value::from(want.uid));
        assert_eq!(spec["process"]["user"]["gid"], Value::from(want.gid));
    }
});
