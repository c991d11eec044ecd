//! A tar stream extracted into a temp dir: any input gives stats or an error, never a panic,
//! and nothing is ever created outside the destination.
//!
//! The first byte picks the input's shape: raw bytes as a tar stream (the parser), or a list
//! of entries built into a valid tar from a small alphabet of hostile names (`..`, absolute
//! paths, symlinks out, whiteouts) so the writer's resolution logic is reached.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let sb = common::Sandbox::new("extract");
    let tar = if sel & 1 == 0 {
        rest.to_vec()
    } else {
        common::build_tar(rest)
    };
    let mode = if sel & 2 == 0 {
        berth_image::Mode::Overlay
    } else {
        berth_image::Mode::Flatten
    };
    let opts = berth_image::ExtractOptions {
        mode,
        rootless: sel & 4 != 0,
        ..Default::default()
    };
    let _ = berth_image::extract::extract_layer_single_thread(&tar[..], &sb.dest, &opts);
    sb.check();
});
