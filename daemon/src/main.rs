//! berthd: serves the Docker Engine API over berth (see the crate's lib doc).

use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use anyhow::{Context, Result};
use berthd::args::{sibling_binary, Args};
use berthd::listen::{bind, Listener};
use berthd::state::{lifecycle, Config, Daemon};
use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Holds the pidfile locked for berthd's life: a second berthd on the same pidfile stops.
fn write_pidfile(path: &std::path::Path) -> Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("--pidfile {}", path.display()))?;
    let lock = berth_sys::lock::Lock::on(
        f.try_clone()?.into(),
        berth_sys::lock::Kind::Exclusive,
        berth_sys::lock::Wait::Try,
    )
    .with_context(|| format!("--pidfile {}: another berthd holds it", path.display()))?;
    std::mem::forget(lock);
    f.set_len(0)?;
    writeln!(f, "{}", std::process::id())?;
    let _ = f.as_raw_fd();
    Ok(f)
}

fn init_logging(level: &str) -> Result<()> {
    let level: tracing::Level = level
        .parse()
        .with_context(|| format!("--log-level {level}: debug, info, warn or error"))?;
    let filter = tracing_subscriber::filter::LevelFilter::from_level(level);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(false),
        )
        .init();
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    init_logging(&args.log_level)?;
    let _pidfile = write_pidfile(&args.pidfile)?;
    let data_root = berth_engine::roots::store_root(args.data_root.as_deref());
    let config = Config {
        init: berthd::args::init_binary(args.init_path.as_deref()),
        data_root,
        exec_root: args.exec_root.clone(),
        runtime: args
            .runtime
            .clone()
            .unwrap_or_else(|| sibling_binary("berth")),
        monitor: args
            .monitor
            .clone()
            .unwrap_or_else(|| sibling_binary("berth-monitor")),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(args, config))
}

async fn serve(args: Args, config: Config) -> Result<()> {
    std::fs::create_dir_all(&config.data_root)
        .with_context(|| format!("--data-root {}", config.data_root.display()))?;
    let daemon = Daemon::new(config).context("loading containers")?;
    lifecycle::recover(&daemon).await;
    // What a build of a killed berthd left (its step containers, their networks and
    // mounts) goes before anything new starts.
    let engine = daemon.engine.clone();
    let reclaimed = tokio::task::spawn_blocking(move || {
        engine.open_store().and_then(|s| engine.reclaim_steps(&s))
    })
    .await;
    if let Ok(Err(e)) = reclaimed {
        tracing::warn!("reclaiming the steps of interrupted builds: {e}");
    }
    let tls = match (&args.tlscert, &args.tlskey) {
        (Some(cert), Some(key)) => Some(berthd::tls::server_config(&berthd::tls::TlsFiles {
            ca: args.tlscacert.as_deref(),
            cert,
            key,
            verify: args.tlsverify,
        })?),
        (None, None) if args.tlsverify => {
            anyhow::bail!("--tlsverify needs --tlscert and --tlskey (and --tlscacert)")
        }
        (None, None) => None,
        _ => anyhow::bail!("--tlscert and --tlskey go together"),
    };
    let mut listeners = Vec::new();
    for host in args.hosts() {
        listeners.push(bind(&host, args.group.as_deref(), tls.clone(), args.tlsverify).await?);
    }
    let mut sockets = Vec::new();
    for l in listeners {
        let d = daemon.clone();
        match l {
            Listener::Unix(l, path) => {
                tracing::info!("API listen on {}", path.display());
                sockets.push(path);
                tokio::spawn(async move {
                    loop {
                        match l.accept().await {
                            Ok((s, _)) => {
                                tokio::spawn(berthd::http::serve_connection(s, d.clone()));
                            }
                            Err(e) => tracing::warn!("accept: {e}"),
                        }
                    }
                });
            }
            Listener::Tcp(l, addr, tls) => {
                tracing::info!(
                    "API listen on {addr}{}",
                    if tls.is_some() { " (TLS)" } else { "" }
                );
                tokio::spawn(async move {
                    loop {
                        match l.accept().await {
                            Ok((s, peer)) => {
                                let d = d.clone();
                                match tls.clone() {
                                    None => {
                                        tokio::spawn(berthd::http::serve_connection(s, d));
                                    }
                                    Some(acceptor) => {
                                        tokio::spawn(async move {
                                            match acceptor.accept(s).await {
                                                Ok(t) => berthd::http::serve_connection(t, d).await,
                                                Err(e) => tracing::info!("TLS from {peer}: {e}"),
                                            }
                                        });
                                    }
                                }
                            }
                            Err(e) => tracing::warn!("accept: {e}"),
                        }
                    }
                });
            }
        }
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping (containers keep running)");
    for s in sockets {
        let _ = std::fs::remove_file(s);
    }
    let _ = Arc::strong_count(&daemon);
    Ok(())
}
