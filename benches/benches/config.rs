//! The start path's pure parts: config.json parse + validate, on the engines' real configs.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{criterion_group, criterion_main, Criterion};

/// An engine's captured config.json, from the repository's fixtures (`tests/fixtures/engines`
/// at the workspace root).
fn engine_config(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../tests/fixtures/engines/{name}.example.config.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("config_parse");
    for name in ["docker", "podman", "containerd"] {
        let doc = engine_config(name);
        group.bench_function(name, |b| {
            b.iter(|| berth_runtime::config::parse(std::hint::black_box(&doc)).unwrap());
        });
    }
    group.finish();
}

fn seccomp_compile(c: &mut Criterion) {
    let doc = engine_config("docker");
    let spec = berth_runtime::config::parse(&doc).unwrap();
    let profile = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
    c.bench_function("seccomp_compile/docker", |b| {
        b.iter(|| berth_seccomp::Filter::compile(std::hint::black_box(&profile)).unwrap());
    });
}

fn seccomp_cached(c: &mut Criterion) {
    let doc = engine_config("docker");
    let spec = berth_runtime::config::parse(&doc).unwrap();
    let profile = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
    let dir = std::env::temp_dir().join(format!("berth-bench-seccomp-{}", std::process::id()));
    let cache = berth_seccomp::cache::Cache::new(&dir);
    cache.get_or_compile(&profile).unwrap();
    c.bench_function("seccomp_cached_load/docker", |b| {
        b.iter(|| {
            cache
                .get_or_compile(std::hint::black_box(&profile))
                .unwrap()
        });
    });
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, parse, seccomp_compile, seccomp_cached);
criterion_main!(benches);
