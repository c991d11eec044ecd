//! Image commands: `images`, `image import|inspect|ls|rm|prune`, `rmi` and `unpack`, over the
//! store and the engine.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use berth_engine::{find_image, image_id, ProcessOverrides, UnpackRequest};
use berth_image::store::ImportOptions;
use berth_image::{Digest, Platform};
use serde_json::json;

use super::Ctx;
use crate::output::{human_size, short_digest};

/// `image ls` / `images` output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ListFormat {
    /// Aligned columns.
    Table,
    /// A JSON array of image records.
    Json,
}

/// `berth image ...`.
#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// Import an OCI image layout, OCI archive or docker-archive (`docker save` output).
    Import(ImportArgs),
    /// Print an image's record and config as JSON.
    Inspect {
        /// Image name (`name[:tag]`) or ID prefix.
        image: String,
    },
    /// List images.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Remove images (their layers go once no image or container uses them).
    #[command(alias = "remove")]
    Rm(RemoveArgs),
    /// Remove blobs and layers no image or container uses, and leftovers of dead imports.
    Prune,
}

/// `berth rmi` / `berth image rm`.
#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    /// Remove an image named by its ID even when it has several names (all of them go).
    #[arg(short, long)]
    pub force: bool,
    /// Image names, IDs or ID prefixes: a name removes that name (the image goes with its
    /// last name); an ID removes the image with every name it has.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `berth images` / `berth image ls`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: ListFormat,
    /// Print only names.
    #[arg(short, long)]
    quiet: bool,
}

/// `berth image import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// A directory (OCI layout or unpacked docker-archive) or a tar (OCI archive or
    /// docker-archive; gzip and zstd are recognised).
    path: PathBuf,
    /// Name for the image (required when the source names none).
    #[arg(long)]
    name: Option<String>,
    /// Platform to select from an index, as os/arch[/variant] (default: the host's).
    #[arg(long)]
    platform: Option<String>,
}

/// How a bundle is made from an image (`unpack` and the image form of `run`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ImageProcessArgs {
    /// Environment variable KEY=VALUE (overrides the image's), repeatable.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory (overrides the image's WorkingDir).
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// User as name|uid[:group|gid], resolved through the image's /etc/passwd and /etc/group.
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Replace the image's Entrypoint (and its Cmd, unless a command is given).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// A flattened copy of the layers instead of an overlay mount.
    #[arg(long)]
    pub flat: bool,
}

impl ImageProcessArgs {
    /// The engine's process overrides, with `command` replacing the image's Cmd.
    pub fn overrides(&self, command: &[String]) -> ProcessOverrides {
        ProcessOverrides {
            command: command.to_vec(),
            entrypoint: self.entrypoint.clone().map(|e| vec![e]),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
        }
    }

    /// Whether any image-only flag was given (they make `run` mean `run IMAGE`).
    pub fn any(&self) -> bool {
        !self.env.is_empty()
            || self.workdir.is_some()
            || self.user.is_some()
            || self.entrypoint.is_some()
            || self.flat
    }
}

/// `berth unpack`.
#[derive(clap::Args, Debug)]
pub struct UnpackArgs {
    #[command(flatten)]
    process: ImageProcessArgs,
    /// Image name or ID prefix.
    image: String,
    /// Bundle directory to create (must not hold a config.json).
    bundle: PathBuf,
    /// The rootfs is only for looking at or copying files, not for a container: mounted
    /// nosuid,nodev, so the image's setuid programs and device nodes give nobody anything.
    #[arg(long)]
    inspect: bool,
    /// Command and arguments (replace the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `berth images` / `berth image ls`.
pub fn list(cx: &Ctx, a: &ListArgs) -> Result<()> {
    let store = cx.engine.open_store()?;
    // Named images by name, then untagged ones (builds without -t) by ID.
    let images = store.all_images()?;
    let mut out = std::io::stdout().lock();
    let shown = |r: &berth_image::ImageRecord| -> String {
        if r.name.is_empty() {
            "<none>".to_string()
        } else {
            r.name.clone()
        }
    };
    if a.quiet {
        for r in &images {
            let line = if r.name.is_empty() {
                r.config.clone()
            } else {
                r.name.clone()
            };
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    match a.format {
        ListFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&images)?)?,
        ListFormat::Table => {
            let w = images
                .iter()
                .map(|r| shown(r).len())
                .max()
                .unwrap_or(0)
                .max(4);
            writeln!(
                out,
                "{:w$}  {:12}  {:14}  {:>6}  SIZE",
                "NAME", "IMAGE ID", "PLATFORM", "LAYERS"
            )?;
            for r in &images {
                let size: u64 = r.layers.iter().map(|l| l.size).sum();
                writeln!(
                    out,
                    "{:w$}  {:12}  {:14}  {:>6}  {}",
                    shown(r),
                    short_digest(image_id(r)),
                    r.platform,
                    r.layers.len(),
                    human_size(size)
                )?;
            }
        }
    }
    Ok(())
}

/// `berth image ...`.
pub fn image_command(cx: &Ctx, cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::Import(a) => import(cx, &a),
        ImageCommand::Inspect { image } => {
            let doc = image_doc(cx, &image)?;
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(())
        }
        ImageCommand::Ls(a) => list(cx, &a),
        ImageCommand::Rm(a) => remove(cx, &a).map(drop),
        ImageCommand::Prune => {
            let p = cx.engine.prune_images()?;
            println!(
                "removed {} blobs, {} layers, {} leftovers of interrupted imports, {} bundles of killed runs or unpacks",
                p.stats.blobs,
                p.stats.layers,
                p.stats.temporaries,
                p.reclaimed.len()
            );
            Ok(())
        }
    }
}

/// `image inspect`'s document of the image `reference` (a name, ID or ID prefix): its record
/// and config.
pub fn image_doc(cx: &Ctx, reference: &str) -> Result<serde_json::Value> {
    let store = cx.engine.open_store()?;
    let r = find_image(&store, reference)?;
    let config = store.image_config(&r)?;
    Ok(json!({
        "name": r.name,
        "id": r.config,
        "manifest": r.manifest,
        "platform": r.platform,
        "layers": r.layers,
        "config": serde_json::to_value(&config)?,
    }))
}

fn import(cx: &Ctx, a: &ImportArgs) -> Result<()> {
    let store = cx.engine.open_store()?;
    let mut opts = ImportOptions {
        name: a.name.clone(),
        ..ImportOptions::default()
    };
    if let Some(p) = &a.platform {
        opts.platform = Platform::parse(p).with_context(|| format!("--platform {p}"))?;
    }
    let records = store
        .import_path(&a.path, &opts)
        .with_context(|| format!("importing {}", a.path.display()))?;
    for r in records {
        println!("{} {}", r.name, r.config);
    }
    Ok(())
}

/// `berth rmi` / `berth image rm`: `removed NAME` for each name removed (`removed ID` for an
/// image without one); every image that can go goes, each one that cannot is reported on
/// stderr, and the status is then 1, as docker does.
pub fn remove(cx: &Ctx, a: &RemoveArgs) -> Result<u8> {
    let store = cx.engine.open_store()?;
    let mut failed = false;
    for arg in &a.images {
        if let Err(e) = remove_one(&store, arg, a.force) {
            failed = true;
            eprintln!("berth: {e:#}");
        }
    }
    Ok(u8::from(failed))
}

/// Removes what `arg` names: a name the store has is that name; anything else (an ID, an ID
/// prefix) the image, with every name it has.
fn remove_one(store: &berth_image::Store, arg: &str, force: bool) -> Result<()> {
    if let Some(r) = store.image_by_name(arg)? {
        store.remove_image(&r.name)?;
        println!("removed {}", r.name);
        return Ok(());
    }
    let r = find_image(store, arg)?;
    let id = Digest::parse(&r.config)?;
    let (names, _) = store
        .remove_image_id(&id, force)
        .with_context(|| format!("removing {arg}"))?;
    if names.is_empty() {
        println!("removed {id}");
    }
    for n in names {
        println!("removed {n}");
    }
    Ok(())
}

/// `berth unpack IMAGE BUNDLE [CMD...]`.
pub fn unpack(cx: &Ctx, a: &UnpackArgs) -> Result<()> {
    let u = cx.engine.unpack(&UnpackRequest {
        image: a.image.clone(),
        dir: a.bundle.clone(),
        process: a.process.overrides(&a.command),
        flat: a.process.flat,
        inspect: a.inspect,
    })?;
    println!(
        "{}: {} rootfs of {}",
        u.bundle.dir.display(),
        if u.bundle.overlay { "overlay" } else { "flat" },
        u.image
    );
    Ok(())
}
