//! Registry commands: `pull`, `push`, `login`, `logout` and `tag`. Thin: parse, call
//! `berth_registry` and the store, print. Progress goes to stderr: a bar per blob on a
//! terminal, a line per step otherwise, nothing with `--quiet`; the result goes to stdout.

use std::collections::HashMap;
use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context as _, Result};
use berth_image::Platform;
use berth_registry::progress::{Event, Progress, Silent};
use berth_registry::{pull, push, ClientOptions, Credentials, DockerConfig, Reference};

use super::Ctx;
use crate::output::{human_size, short_digest};

/// Layers a pull downloads at once unless told.
pub const DEFAULT_PARALLEL: usize = 3;

/// Flags every registry command takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConnectArgs {
    /// Allow plain HTTP to this registry (loopback registries are always allowed it).
    #[arg(long)]
    insecure: bool,
    /// Also trust this CA bundle (PEM) for the registry's certificate (also
    /// $BERTH_REGISTRY_CA).
    #[arg(long)]
    ca: Option<PathBuf>,
}

impl ConnectArgs {
    fn options(&self) -> ClientOptions {
        let mut o = ClientOptions {
            insecure: self.insecure,
            ..ClientOptions::default()
        };
        if let Some(ca) = &self.ca {
            o.ca_file = Some(ca.clone());
        }
        o
    }
}

/// `berth pull`.
#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// Image reference: [registry[:port]/]repository[:tag][@digest].
    reference: String,
    /// Platform to pick from a multi-platform image, as os/arch[/variant] (default: the host's).
    #[arg(long)]
    platform: Option<String>,
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
    /// Layers downloaded at once.
    #[arg(long, default_value_t = DEFAULT_PARALLEL)]
    parallel: usize,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// `berth push`.
#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// Image to push, named as the reference it goes to (see `berth tag`).
    reference: String,
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
    /// Upload blobs larger than this many bytes in chunks of this size (default: one
    /// request per blob).
    #[arg(long)]
    chunk_size: Option<u64>,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// `berth login`.
#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// The registry (`host[:port]`, or docker.io).
    registry: String,
    /// User name.
    #[arg(short, long)]
    username: String,
    /// Password (prefer --password-stdin: a command line is visible to other users).
    #[arg(short, long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// `berth logout`.
#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    /// The registry (`host[:port]`, or docker.io).
    registry: String,
}

/// `berth tag`.
#[derive(clap::Args, Debug)]
pub struct TagArgs {
    /// The image (name or ID prefix).
    source: String,
    /// The new name, a reference ([registry[:port]/]repository[:tag]).
    target: String,
}

/// One line per step on stderr.
struct Lines;

impl Progress for Lines {
    fn event(&self, e: &Event<'_>) {
        match e {
            Event::Resolved { reference, digest } => eprintln!("{reference}: {digest}"),
            Event::Fetching { digest, size } => eprintln!(
                "{}: downloading{}",
                short_digest(digest),
                size.map(|s| format!(" {}", human_size(s)))
                    .unwrap_or_default()
            ),
            Event::Done { digest } => eprintln!("{}: done", short_digest(digest)),
            Event::Exists { digest } => {
                eprintln!("{}: already in the registry", short_digest(digest));
            }
            Event::Mounted { digest, from } => {
                eprintln!("{}: mounted from {from}", short_digest(digest));
            }
            Event::Uploading { digest, size } => {
                eprintln!("{}: uploading {}", short_digest(digest), human_size(*size));
            }
            Event::Bytes { .. } => {}
        }
    }
}

/// A bar per blob on a terminal.
struct Bars {
    multi: indicatif::MultiProgress,
    bars: Mutex<HashMap<String, indicatif::ProgressBar>>,
}

impl Bars {
    fn bar(&self, digest: &str, size: Option<u64>, verb: &str) {
        // Sizes as everywhere else (human_size), not indicatif's binary units.
        let style = indicatif::ProgressStyle::with_template(
            "{prefix} {msg:12} [{bar:30}] {done}/{total} {rate}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .with_key(
            "done",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&human_size(s.pos()));
            },
        )
        .with_key(
            "total",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&human_size(s.len().unwrap_or(0)));
            },
        )
        .with_key(
            "rate",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/s", human_size(s.per_sec() as u64));
            },
        )
        .progress_chars("=> ");
        let pb = self
            .multi
            .add(indicatif::ProgressBar::new(size.unwrap_or(0)).with_style(style));
        pb.set_prefix(short_digest(digest).to_string());
        pb.set_message(verb.to_string());
        if let Ok(mut m) = self.bars.lock() {
            m.insert(digest.to_string(), pb);
        }
    }

    fn with(&self, digest: &str, f: impl FnOnce(&indicatif::ProgressBar)) {
        if let Some(pb) = self.bars.lock().ok().and_then(|m| m.get(digest).cloned()) {
            f(&pb);
        }
    }
}

impl Progress for Bars {
    fn event(&self, e: &Event<'_>) {
        match e {
            Event::Resolved { reference, digest } => {
                let _ = self.multi.println(format!("{reference}: {digest}"));
            }
            Event::Fetching { digest, size } => self.bar(digest, *size, "downloading"),
            Event::Uploading { digest, size } => self.bar(digest, Some(*size), "uploading"),
            Event::Bytes { digest, bytes } => self.with(digest, |pb| pb.inc(*bytes)),
            Event::Done { digest } => self.with(digest, |pb| pb.finish_with_message("done")),
            Event::Exists { digest } => {
                let _ = self
                    .multi
                    .println(format!("{}: already in the registry", short_digest(digest)));
            }
            Event::Mounted { digest, from } => {
                let _ = self
                    .multi
                    .println(format!("{}: mounted from {from}", short_digest(digest)));
            }
        }
    }
}

fn progress(quiet: bool) -> Arc<dyn Progress> {
    if quiet {
        Arc::new(Silent)
    } else if std::io::stderr().is_terminal() {
        Arc::new(Bars {
            multi: indicatif::MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        })
    } else {
        Arc::new(Lines)
    }
}

fn parse_ref(s: &str) -> Result<Reference> {
    Ok(Reference::parse(s)?)
}

/// `berth pull REF`: prints `NAME DIGEST` (the name images are listed and run by).
pub fn pull(cx: &Ctx, a: &PullArgs) -> Result<()> {
    let report = pull_image(
        cx,
        &a.reference,
        a.platform.as_deref(),
        a.parallel,
        a.quiet,
        &a.connect,
    )?;
    println!("{} {}", report.record.name, report.digest);
    Ok(())
}

/// Pulls `reference` into the store (for `pull`, and `run --pull`), progress on stderr
/// unless `quiet`.
pub fn pull_image(
    cx: &Ctx,
    reference: &str,
    platform: Option<&str>,
    parallel: usize,
    quiet: bool,
    connect: &ConnectArgs,
) -> Result<pull::PullReport> {
    let r = parse_ref(reference)?;
    let store = cx.engine.open_store()?;
    let mut opts = pull::PullOptions {
        parallel,
        ..pull::PullOptions::default()
    };
    if let Some(p) = platform {
        opts.platform = Platform::parse(p).with_context(|| format!("--platform {p}"))?;
        opts.require_platform = true;
    }
    let client = berth_registry::client_for(&r, connect.options())?;
    let report = pull::pull(&client, &store, &r, &opts, progress(quiet))
        .with_context(|| format!("pulling {}", r.familiar()))?;
    if !quiet {
        eprintln!(
            "pulled {} ({}): {} blobs downloaded, {} received, {} resumed downloads",
            report.record.name,
            report.record.platform,
            report.stats.blobs_fetched,
            human_size(report.stats.bytes_received),
            report.stats.resumes
        );
    }
    Ok(report)
}

/// Pulls `reference` with default options and no progress output (for `berth build`'s
/// base images).
pub fn pull_quietly(cx: &Ctx, reference: &str, connect: &ConnectArgs) -> Result<()> {
    pull_image(cx, reference, None, DEFAULT_PARALLEL, true, connect).map(|_| ())
}

/// `berth push REF`: prints `REF@DIGEST`.
pub fn push(cx: &Ctx, a: &PushArgs) -> Result<()> {
    let r = parse_ref(&a.reference)?;
    let store = cx.engine.open_store()?;
    let local = if store.image(&a.reference).is_ok() {
        a.reference.clone()
    } else {
        r.familiar()
    };
    if store.image(&local).is_err() {
        bail!(
            "no image named {local:?} in the store {}; name one so with `berth tag IMAGE {}`",
            cx.engine.store_root().display(),
            a.reference
        );
    }
    let client = berth_registry::client_for(&r, a.connect.options())?;
    let opts = push::PushOptions {
        chunk_size: a.chunk_size,
    };
    let report =
        push::push(&client, &store, &local, &r, &opts, &progress(a.quiet)).with_context(|| {
            if local == r.familiar() {
                format!("pushing {local}")
            } else {
                format!("pushing {local} to {r}")
            }
        })?;
    if !a.quiet {
        eprintln!(
            "pushed {}: {} blobs uploaded, {} already there, {} mounted, {} sent",
            r.familiar(),
            report.uploaded,
            report.existing,
            report.mounted,
            human_size(report.stats.bytes_sent)
        );
    }
    println!("{}@{}", r.familiar_repository(), report.digest);
    Ok(())
}

/// The registry as docker keys it (`docker.io` for Hub's aliases).
fn registry_name(s: &str) -> String {
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    match s {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        other => other.to_string(),
    }
}

/// `berth login REGISTRY -u USER (--password-stdin | -p PASSWORD)`: checks the credentials
/// with the registry, then stores them in docker's config.json.
pub fn login(a: &LoginArgs) -> Result<()> {
    let registry = registry_name(&a.registry);
    let password = match (&a.password, a.password_stdin) {
        (Some(p), _) => p.clone(),
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("give the password with --password-stdin (or -p)"),
    };
    if password.is_empty() {
        bail!("empty password");
    }
    let creds = Credentials {
        username: a.username.clone(),
        password,
    };
    let mut opts = a.connect.options();
    opts.credentials = Some(creds.clone());
    berth_registry::check_login(&registry, opts)
        .with_context(|| format!("logging in to {registry}"))?;
    let mut cfg = DockerConfig::load_default()?;
    cfg.set(&registry, &creds);
    cfg.save()?;
    println!("Login Succeeded ({} in {})", registry, cfg.path().display());
    Ok(())
}

/// `berth logout REGISTRY`.
pub fn logout(a: &LogoutArgs) -> Result<()> {
    let registry = registry_name(&a.registry);
    let mut cfg = DockerConfig::load_default()?;
    if !cfg.remove(&registry) {
        bail!("not logged in to {registry}");
    }
    cfg.save()?;
    println!("Removed login credentials for {registry}");
    Ok(())
}

/// `berth tag SOURCE TARGET`: the image under a second name (a reference, stored as docker
/// shows it: `busybox:latest`, `localhost:5000/app:v1`).
pub fn tag(cx: &Ctx, a: &TagArgs) -> Result<()> {
    let store = cx.engine.open_store()?;
    let src = berth_engine::find_image(&store, &a.source)?;
    let dst = parse_ref(&a.target)?;
    if dst.digest.is_some() {
        bail!("{}: a tag cannot name a digest", a.target);
    }
    let rec = store.tag_image(&src.name, &dst.familiar())?;
    println!("{} {}", rec.name, rec.config);
    Ok(())
}
