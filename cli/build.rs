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
    link_order();
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

/// Lays the lean binary's code out in the order a container start runs it (`berth.order`,
/// written by `benches/e2e/order.sh`), and writes the link map when `BERTH_LINK_MAP` names a
/// file (the order script reads it).
///
/// Why: the kernel maps a file's pages around each page fault (64 KiB), so the few hundred
/// KiB a `run` executes, spread over 2.8 MiB of text, made nearly all of it resident. Grouped,
/// they fault in as a few windows. Only LLD reads a symbol order, and rustc links with LLD on
/// x86_64 Linux from 1.90 on; a symbol the file names and the code lacks is skipped, so a stale
/// order costs memory, never correctness.
fn link_order() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let order = manifest.join("berth.order");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-env-changed=BERTH_LINK_MAP");
    if !links_with_lld() {
        return;
    }
    if order.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=berth=-Wl,--symbol-ordering-file={},--no-warn-symbol-ordering",
            order.display()
        );
    }
    if let Ok(map) = std::env::var("BERTH_LINK_MAP") {
        println!("cargo:rustc-link-arg-bin=berth=-Wl,-Map={map},--no-demangle");
    }
}

/// Whether rustc links this target with its own LLD: x86_64 Linux (GNU) from rustc 1.90 on,
/// unless the build's flags pick another linker.
fn links_with_lld() -> bool {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    if env("TARGET") != "x86_64-unknown-linux-gnu" {
        return false;
    }
    let flags = env("CARGO_ENCODED_RUSTFLAGS");
    if flags.contains("linker") || flags.contains("link-self-contained") {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&out.stdout);
    let minor = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
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
