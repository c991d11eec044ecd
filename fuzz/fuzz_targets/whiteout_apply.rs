//! Whiteout application over a random tree: a lower layer and an upper layer (with
//! whiteouts and opaque markers) built from the input are flattened. Never a panic, nothing
//! outside the destination, and every whiteout whose name the upper layer does not also
//! create is gone afterwards (unless a symlink from either layer aliases a created name onto
//! it: `a -> /` then `a/b/c` legitimately recreates `b`).
#![no_main]

mod common;

use std::collections::HashSet;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mid = data.len() / 2;
    let (lower, upper) = data.split_at(mid);
    let sb = common::Sandbox::new("whiteout");
    let opts = berth_image::ExtractOptions {
        mode: berth_image::Mode::Flatten,
        ..Default::default()
    };
    let lower_tar = common::build_tar(lower);
    if berth_image::extract::extract_layer_single_thread(&lower_tar[..], &sb.dest, &opts).is_err() {
        sb.check();
        return;
    }
    let entries = common::entries(upper);
    let upper_tar = common::build_tar(upper);
    let ok =
        berth_image::extract::extract_layer_single_thread(&upper_tar[..], &sb.dest, &opts).is_ok();
    sb.check();
    // Symlinks in the upper layer can alias a later entry onto a whited-out path (a -> /,
    // then a/b recreates b): the simple expectation holds without them.
    if !ok
        || entries
            .iter()
            .any(|e| e.kind == berth_image::synth::EntryType::Symlink)
    {
        return;
    }
    // Names as the extractor sees them: no empty or '.' components.
    let norm = |n: &str| {
        n.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect::<Vec<_>>()
            .join("/")
    };
    let created: HashSet<String> = entries.iter().map(|e| norm(&e.name)).collect();
    // A symlink left by the lower layer aliases too (a -> /, then the upper's a/b/c creates
    // b/c): when any created name passes through a symlinked parent, nothing is simple.
    let through_symlink = |name: &str| {
        let mut p = sb.dest.clone();
        let comps: Vec<&str> = name.split('/').collect();
        comps[..comps.len().saturating_sub(1)].iter().any(|c| {
            p.push(c);
            std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink())
        })
    };
    if created.iter().any(|c| through_symlink(c)) {
        return;
    }
    for e in &entries {
        let name = norm(&e.name);
        let name = name.as_str();
        let Some((dir, leaf)) = name.rsplit_once('/').map_or(Some(("", name)), Some) else {
            continue;
        };
        let Some(target) = leaf.strip_prefix(".wh.") else {
            continue;
        };
        if target.is_empty() || target.starts_with(".wh.") || target == "." || target == ".." {
            continue;
        }
        let path = if dir.is_empty() {
            target.to_string()
        } else {
            format!("{dir}/{target}")
        };
        // Only plain names (no symlinked parents or '.'/'..' games) have a simple expectation.
        if created.contains(&path)
            || path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            continue;
        }
        if created.iter().any(|c| c.starts_with(&format!("{path}/"))) {
            continue;
        }
        let mut p = sb.dest.clone();
        let mut symlinked = false;
        for comp in dir.split('/').filter(|c| !c.is_empty()) {
            p.push(comp);
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                symlinked = true;
            }
        }
        if symlinked {
            continue;
        }
        p.push(target);
        assert!(
            std::fs::symlink_metadata(&p).is_err(),
            "whiteout {name} left {path} in place"
        );
    }
});
