//! Records the git commit for `berth --version`, and links the lean `berth` binary statically.
//!
//! Why static: `berth` runs once per container operation, so its start-up is on every
//! engine's hot path. A static, non-PIE executable has no dynamic loader to run, no shared
//! libraries to map and no relocations to apply: `berth --version` takes about half the time
//! of the same code linked dynamically, and `run` about 10% less (benches/e2e).
//!
//! Cargo has no per-binary `crt-static`, so the link is steered for this one binary: `-static
//! -no-pie`, with a search directory that answers the libraries std asks for (`-lc`, `-lm`,
//! ...) with glibc's static archives (ld looks in it before the system's directories) and
//! `-lgcc_s` with an empty archive (the static unwinder, `-lgcc_eh`, replaces it). The lean
//! binary calls no glibc function that needs NSS or `dlopen`. `berth-tools`, `berthd` and
//! the tests are linked as usual. Where glibc's static archives are missing (or with
//! `BERTH_STATIC=0`) `berth` is linked dynamically, as the others.
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".into(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_string(),
        );
    println!("cargo:rustc-env=BERTH_COMMIT={commit}");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
    println!("cargo:rerun-if-env-changed=BERTH_STATIC");
    if std::env::var("BERTH_STATIC").as_deref() == Ok("0") {
        return;
    }
    match static_libs() {
        Ok(dir) => {
            for arg in [
                format!("-L{}", dir.display()),
                "-static".into(),
                "-no-pie".into(),
                "-lgcc_eh".into(),
                "-lgcc".into(),
                "-lc".into(),
            ] {
                println!("cargo:rustc-link-arg-bin=berth={arg}");
            }
        }
        Err(why) => println!("cargo:warning=berth is linked dynamically: {why}"),
    }
}

/// A directory holding glibc's static archives under the names std links, and an empty
/// `libgcc_s.a`.
fn static_libs() -> Result<PathBuf, String> {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    if env("CARGO_CFG_TARGET_OS") != "linux" || env("CARGO_CFG_TARGET_ENV") != "gnu" {
        return Err("not a linux-gnu target".into());
    }
    if env("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static")
    {
        return Err("crt-static is already on".into());
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let libc = Command::new(&cc)
        .arg("-print-file-name=libc.a")
        .output()
        .map_err(|e| format!("{cc}: {e}"))?;
    let libc = PathBuf::from(String::from_utf8_lossy(&libc.stdout).trim());
    let Some(libdir) = libc
        .parent()
        .filter(|_| libc.is_absolute() && libc.is_file())
    else {
        return Err("glibc's static libc.a was not found (install libc6-dev)".into());
    };
    let dir = PathBuf::from(env("OUT_DIR")).join("static-libs");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for lib in ["c", "m", "rt", "pthread", "dl", "util"] {
        let name = format!("lib{lib}.a");
        let (from, to) = (libdir.join(&name), dir.join(&name));
        let _ = std::fs::remove_file(&to);
        if from.is_file() {
            std::os::unix::fs::symlink(&from, &to).map_err(|e| format!("{}: {e}", to.display()))?;
        } else {
            empty_archive(&to)?;
        }
    }
    empty_archive(&dir.join("libgcc_s.a"))?;
    Ok(dir)
}

fn empty_archive(path: &Path) -> Result<(), String> {
    std::fs::write(path, b"!<arch>\n").map_err(|e| format!("{}: {e}", path.display()))
}
