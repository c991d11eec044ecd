//! Layer extraction, the second hot path: synthetic layers of 100,000 small files and of a
//! few large files, plain, gzip and zstd, extracted as overlay layers into fresh directories
//! (under `$BERTH_BENCH_DIR`, default the temp dir; point it at the filesystem that matters).
//! `gzip-serial` writes on the parsing thread alone, to show what the parallel workers of
//! [`extract_layer`] gain.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::path::PathBuf;
use std::time::Duration;

use berth_image::extract::{
    extract_layer, extract_layer_with_workers, Compression, ExtractOptions, Mode,
};
use berth_image::synth;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn bench_dir() -> PathBuf {
    std::env::var_os("BERTH_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

fn run(c: &mut Criterion, group: &str, tar: &[u8]) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Bytes(tar.len() as u64));
    for (name, comp, serial) in [
        ("tar", Compression::None, false),
        ("gzip", Compression::Gzip, false),
        ("gzip-serial", Compression::Gzip, true),
        ("zstd", Compression::Zstd, false),
    ] {
        let blob = synth::compress(tar, comp).unwrap();
        let opts = ExtractOptions {
            mode: Mode::Overlay,
            ..ExtractOptions::default()
        };
        g.bench_function(name, |b| {
            b.iter_batched(
                tempfile_dir,
                |dir| {
                    let reader = berth_image::extract::decompress(&blob[..], comp).unwrap();
                    if serial {
                        extract_layer_with_workers(reader, &dir.0, &opts, 0).unwrap();
                    } else {
                        extract_layer(reader, &dir.0, &opts).unwrap();
                    }
                    dir // removed outside the measurement
                },
                BatchSize::PerIteration,
            );
        });
    }
    g.finish();
}

/// A fresh directory, removed on drop.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> Dir {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let p = bench_dir().join(format!(
        "berth-bench-extract-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&p).unwrap();
    Dir(p)
}

fn small_files(c: &mut Criterion) {
    run(
        c,
        "extract_100k_small_files",
        &synth::small_files_layer(100_000, 1),
    );
}

fn large_files(c: &mut Criterion) {
    run(
        c,
        "extract_4x64MiB",
        &synth::large_files_layer(4, 64 << 20, 2),
    );
}

criterion_group!(benches, small_files, large_files);
criterion_main!(benches);
