//! `berth build`: a Dockerfile to an image, daemonless (as buildah), through `berth_build`.
//! The build's text (docker's classic-builder output, and the steps' own output) goes to
//! stdout; `--quiet` prints only the image ID.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use berth_build::{BuildOptions, Progress, Pull};
use berth_engine::NetworkMode;
use berth_image::Platform;

use super::registry::{pull_quietly, ConnectArgs};
use super::Ctx;

/// `berth build`.
#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// The build context: a directory, or `-` for a Dockerfile (no context) or a tar of a
    /// context on stdin.
    context: String,
    /// Name the image (repeatable).
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile); `-` reads it from stdin.
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// A build argument (`KEY=VALUE`, or `KEY` for the caller's value).
    #[arg(long = "build-arg")]
    args: Vec<String>,
    /// The last stage to build.
    #[arg(long)]
    target: Option<String>,
    /// Run every step, using no cached result.
    #[arg(long)]
    no_cache: bool,
    /// The network of RUN steps: bridge, none or host.
    #[arg(long, default_value = "bridge")]
    network: String,
    /// The platform to build for (only the host's).
    #[arg(long)]
    platform: Option<String>,
    /// A label for the image (`KEY=VALUE`, repeatable).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Print only the image ID.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

struct Stdout {
    quiet: bool,
}

impl Progress for Stdout {
    fn stream(&mut self, text: &str) {
        if !self.quiet {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }
}

struct RegistryPull<'a> {
    cx: &'a Ctx,
    connect: &'a ConnectArgs,
}

impl Pull for RegistryPull<'_> {
    fn pull(
        &self,
        reference: &str,
        progress: &mut dyn Progress,
    ) -> std::result::Result<(), String> {
        progress.stream(&format!("Pulling {reference}\n"));
        pull_quietly(self.cx, reference, self.connect).map_err(|e| format!("{e:#}"))
    }
}

fn key_values(list: &[String], what: &str, env_fallback: bool) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for kv in list {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            None if env_fallback && !kv.is_empty() => {
                // As docker: `--build-arg KEY` takes the caller's value, if it has one.
                if let Ok(v) = std::env::var(kv) {
                    out.insert(kv.clone(), v);
                }
            }
            _ => bail!("{what} {kv:?}: expected KEY=VALUE"),
        }
    }
    Ok(out)
}

/// `berth build`.
pub fn build(cx: &Ctx, a: &BuildArgs) -> Result<()> {
    if let Some(p) = &a.platform {
        let want = Platform::parse(p).with_context(|| format!("--platform {p}"))?;
        let host = Platform::host();
        if want.os != host.os || want.architecture != host.architecture {
            bail!(
                "--platform {p}: only the host's platform ({}/{}) can be built",
                host.os,
                host.architecture
            );
        }
    }
    let network = match a.network.as_str() {
        "bridge" | "default" => NetworkMode::Bridge,
        "none" | "host" => NetworkMode::parse(&a.network),
        other => bail!("--network {other:?}: expected bridge, none or host"),
    };
    let store = cx.engine.open_store()?;
    let mut scratch: Option<PathBuf> = None;
    let mut stdin_dockerfile: Option<String> = None;
    let context: PathBuf = if a.context == "-" {
        let mut data = Vec::new();
        std::io::stdin()
            .take(1 << 30)
            .read_to_end(&mut data)
            .context("reading the build context from stdin")?;
        let dir = store.scratch_dir("context")?;
        scratch = Some(dir.clone());
        if !unpack_context(&data, &dir)? {
            stdin_dockerfile =
                Some(String::from_utf8(data).context("the Dockerfile on stdin is not UTF-8")?);
        }
        dir
    } else {
        PathBuf::from(&a.context)
    };
    let result = (|| {
        let dockerfile = match (&stdin_dockerfile, &a.file) {
            (Some(text), _) => text.clone(),
            (None, Some(f)) if f == Path::new("-") => {
                if std::io::stdin().is_terminal() {
                    bail!("-f -: no Dockerfile on stdin");
                }
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("reading the Dockerfile from stdin")?;
                s
            }
            (None, f) => {
                let path = f.clone().unwrap_or_else(|| context.join("Dockerfile"));
                let path = if path.is_relative() && f.is_some() && !path.exists() {
                    context.join(&path)
                } else {
                    path
                };
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading the Dockerfile {}", path.display()))?
            }
        };
        let opts = BuildOptions {
            context: context.clone(),
            dockerfile,
            ignore: None,
            tags: a.tags.clone(),
            build_args: key_values(&a.args, "--build-arg", true)?,
            target: a.target.clone(),
            no_cache: a.no_cache,
            network: network.clone(),
            labels: key_values(&a.labels, "--label", false)?,
            runtime: berth_cli::handover::runtime_path().context("finding the berth binary")?,
        };
        let puller = RegistryPull {
            cx,
            connect: &a.connect,
        };
        let mut out = Stdout { quiet: a.quiet };
        let built = berth_build::build(&cx.engine, &opts, Some(&puller), &mut out)?;
        if a.quiet {
            println!("{}", built.id);
        }
        Ok(())
    })();
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

/// Unpacks a context tar (plain or compressed) read from stdin beneath `dir`; `false` if
/// the data is not a tar archive (then it is a Dockerfile).
fn unpack_context(data: &[u8], dir: &Path) -> Result<bool> {
    let tmp = dir.join(".context.tar");
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    let res = (|| -> Result<bool> {
        let Some(stream) = berth_build::archive::open_tar(&tmp)? else {
            return Ok(false);
        };
        berth_build::archive::unpack(stream, dir, true).context("unpacking the build context")?;
        Ok(true)
    })();
    let _ = std::fs::remove_file(&tmp);
    res
}
