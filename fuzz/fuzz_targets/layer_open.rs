//! Layer blobs as the store opens them (`open_layer`): the compression sniffed from the
//! magic bytes (gzip, zstd, else plain) and checked against a declared media type, then the
//! stream decompressed into the extractor under small limits, so a decompression bomb ends
//! at `max_layer_bytes`. Never a panic; a media type that is a layer type and agrees with the
//! content always opens; a tar compressed by `synth::compress` (gzip, zstd, several members
//! or frames) opens to the very same bytes and DiffID unless the harness corrupted it.
//!
//! The first byte picks the blob's shape (raw bytes, or a tar — raw or built from entries —
//! compressed once or twice, optionally with a byte flipped or the end cut off); the second
//! the declared media type.
#![no_main]

mod common;

use std::io::Read;

use berth_image::extract::{extract_layer_with_workers, open_layer, Compression};
use berth_image::synth::compress;
use berth_image::{Digest, ExtractOptions, Mode};
use common::{Input, Sandbox};

const MEDIA_TYPES: &[Option<&str>] = &[
    None,
    Some("application/vnd.oci.image.layer.v1.tar"),
    Some("application/vnd.oci.image.layer.v1.tar+gzip"),
    Some("application/vnd.oci.image.layer.v1.tar+zstd"),
    Some("application/vnd.docker.image.rootfs.diff.tar.gzip"),
    Some("application/vnd.docker.image.rootfs.diff.tar"),
    Some("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"),
    Some("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
    Some("application/vnd.oci.image.layer.v1.tar+gzip; charset=x"),
    Some(" application/vnd.oci.image.layer.v1.tar+zstd "),
    Some("application/vnd.oci.image.config.v1+json"),
    Some("application/octet-stream"),
    Some(""),
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let shape = input.byte();
    let media_type = *input.pick(MEDIA_TYPES);
    let flip = input.u16();
    let rest = input.rest();
    // The blob, and the tar it must open to when the harness did not damage it.
    let (blob, original) = match shape % 4 {
        0 => (rest.to_vec(), None),
        n => {
            let tar = if shape & 4 == 0 {
                rest.to_vec()
            } else {
                common::build_tar(rest)
            };
            let c = if shape & 8 == 0 {
                Compression::Gzip
            } else {
                Compression::Zstd
            };
            let mut blob = compress(&tar, c).expect("compress in memory");
            if n == 2 {
                // Two members or frames: the stream is their concatenation.
                let half = tar.len() / 2;
                blob = compress(&tar[..half], c).expect("compress in memory");
                blob.extend(compress(&tar[half..], c).expect("compress in memory"));
            }
            let mut damaged = false;
            if n == 3 && !blob.is_empty() {
                let at = usize::from(flip) % blob.len();
                if shape & 0x10 == 0 {
                    blob[at] ^= (shape >> 5) | 1;
                } else {
                    blob.truncate(at);
                }
                damaged = true;
            }
            (blob, (!damaged).then_some(tar))
        }
    };
    let sb = Sandbox::new("open");
    let path = sb.base.join("blob");
    std::fs::write(&path, &blob).expect("write the blob");

    let found = Compression::sniff(&blob);
    let should_open = media_type.is_none_or(|mt| {
        Compression::from_media_type(mt).is_some_and(|declared| {
            declared == found || declared == Compression::None || found == Compression::None
        })
    });
    let limits = common::small_limits();
    match open_layer(&path, media_type) {
        Err(e) => assert!(!should_open, "{media_type:?} over {found:?}: {e}"),
        Ok(mut r) => {
            let mut out = Vec::new();
            let read = (&mut r)
                .take(limits.max_layer_bytes + 1)
                .read_to_end(&mut out);
            if let Some(tar) = &original {
                assert!(read.is_ok(), "{found:?} of our own: {read:?}");
                assert!(out == *tar, "{found:?} of our own opens to other bytes");
            }
        }
    }
    if should_open {
        let reader = open_layer(&path, media_type).expect("opened before");
        let opts = ExtractOptions {
            mode: if shape & 0x40 == 0 {
                Mode::Overlay
            } else {
                Mode::Flatten
            },
            limits,
            ..Default::default()
        };
        let res = extract_layer_with_workers(reader, &sb.dest, &opts, 0);
        if let Ok(stats) = &res {
            assert!(
                stats.bytes <= limits.max_layer_bytes,
                "{} bytes",
                stats.bytes
            );
        }
        if let (Some(tar), Ok(stats)) = (&original, &res) {
            assert_eq!(stats.bytes, tar.len() as u64);
            assert_eq!(stats.diff_id, Digest::of(tar).to_string());
        }
    }
    sb.check_with(&["blob"]);
});
