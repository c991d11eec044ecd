//! Extracts one layer file (plain, gzip or zstd tar) into a directory: the berth side of
//! `benches/extract/compare.sh`.
//!
//! Usage: `berth-extract [--flatten] [--sync] [--confine] [--rootless] LAYER DEST`

use std::path::PathBuf;
use std::process::ExitCode;

use berth_image::{extract_layer, open_layer, ExtractOptions, Mode};

fn main() -> ExitCode {
    // The limits of the store: the defaults, or the BERTH_MAX_* variables.
    let limits = match berth_image::Limits::from_env() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("berth-extract: {e}");
            return ExitCode::from(2);
        }
    };
    let mut opts = ExtractOptions {
        limits,
        ..ExtractOptions::default()
    };
    let mut paths = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--flatten" => opts.mode = Mode::Flatten,
            "--sync" => opts.sync = true,
            "--confine" => opts.confine = true,
            "--rootless" => opts.rootless = true,
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    let [layer, dest] = paths.as_slice() else {
        eprintln!("usage: berth-extract [--flatten] [--sync] [--confine] [--rootless] LAYER DEST");
        return ExitCode::from(2);
    };
    let res = open_layer(layer, None).and_then(|r| extract_layer(r, dest, &opts));
    match res {
        Ok(stats) => {
            eprintln!(
                "{} entries, {} bytes, {}",
                stats.entries, stats.bytes, stats.diff_id
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth-extract: {e}");
            ExitCode::FAILURE
        }
    }
}
