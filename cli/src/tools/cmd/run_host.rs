//! `berth run IMAGE`'s flags for what the container gets of the host, with docker's meaning:
//! `-v`, `--mount`, `--env-file`, `-m`, `--cpus`, `--cap-add`, `--cap-drop`, `--read-only`,
//! `--init`, `--hostname`. Parsed by the engine (`berth_engine::host_flags`), as berthd
//! parses docker's API.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use berth_engine::host_flags::{self, MountFlag};
use berth_engine::HostOptions;

use super::Ctx;

/// The host flags of `run IMAGE`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct HostArgs {
    /// Image form: bind mount SRC:DST[:ro] (SRC an absolute host path, made if missing, or
    /// a volume name); repeatable.
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Image form: type=bind|volume|tmpfs,source=...,target=...[,readonly]
    /// [,tmpfs-size=N][,tmpfs-mode=OCTAL]; repeatable.
    #[arg(long)]
    pub mount: Vec<String>,
    /// Image form: read KEY=VALUE lines (and bare KEYs, from this environment) from a file;
    /// repeatable.
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// Image form: memory limit (e.g. 512m, 1g).
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Image form: CPUs the container may use (e.g. 1.5).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Image form: add a capability (e.g. NET_ADMIN, or ALL); repeatable.
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Image form: drop a capability (e.g. CHOWN, or ALL); repeatable.
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Image form: a read-only root filesystem.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Image form: run an init (catatonit, docker-init or tini-static from the host) as pid
    /// 1, which reaps zombies and passes signals on.
    #[arg(long)]
    pub init: bool,
    /// Image form: the container's hostname (default: its name).
    #[arg(long)]
    pub hostname: Option<String>,
}

impl HostArgs {
    /// Whether any was given (they make `run` mean `run IMAGE`).
    pub fn any(&self) -> bool {
        !self.volume.is_empty()
            || !self.mount.is_empty()
            || !self.env_file.is_empty()
            || self.memory.is_some()
            || self.cpus.is_some()
            || !self.cap_add.is_empty()
            || !self.cap_drop.is_empty()
            || self.read_only
            || self.init
            || self.hostname.is_some()
    }

    /// The engine's host options these flags ask for (volumes made in the store).
    pub fn options(&self, cx: &Ctx) -> Result<HostOptions> {
        let volume = |name: &str| cx.engine.volume_path(name);
        let mut h = HostOptions::default();
        for v in &self.volume {
            h.binds.push(host_flags::parse_volume(v, &volume)?);
        }
        for m in &self.mount {
            match host_flags::parse_mount(m, &volume)? {
                MountFlag::Bind(b) => h.binds.push(b),
                MountFlag::Tmpfs(t) => h.tmpfs.push(t),
            }
        }
        h.memory = self
            .memory
            .as_deref()
            .map(host_flags::parse_memory)
            .transpose()?;
        h.nano_cpus = self
            .cpus
            .as_deref()
            .map(host_flags::parse_cpus)
            .transpose()?;
        h.cap_add.clone_from(&self.cap_add);
        h.cap_drop.clone_from(&self.cap_drop);
        h.readonly_rootfs = self.read_only;
        if self.init {
            h.init = Some(
                host_flags::init_binary(None)
                    .context("--init: no init binary found (install catatonit or tini)")?,
            );
        }
        Ok(h)
    }

    /// The entries of every `--env-file`, in order: `KEY=VALUE` or a bare `KEY`; blank lines
    /// and `#` comments skipped.
    pub fn env_file_entries(&self) -> Result<Vec<String>> {
        let mut env = Vec::new();
        for path in &self.env_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--env-file {}", path.display()))?;
            env.extend(env_file_lines(&text));
        }
        Ok(env)
    }
}

/// The entries of an env file's text (docker's format: no quoting, no expansion).
fn env_file_lines(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_as_docker_reads_them() {
        let text = "# comment\nA=1\n\n  B=two words\nHOME\nC=\"quoted\"\n";
        let got: Vec<String> = env_file_lines(text).collect();
        assert_eq!(got, ["A=1", "B=two words", "HOME", "C=\"quoted\""]);
    }
}
