//! Manifest, index and config parsing and platform selection: any input gives a document or
//! an error, never a panic.
#![no_main]

use berth_image::image::{self, Document, Platform};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(Document::Index(idx)) = image::parse_document(data, "fuzz") {
        for p in ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"] {
            let _ = image::select_manifest(&idx, &Platform::parse(p).unwrap(), "fuzz");
        }
    }
    let _ = image::parse_config(data, "fuzz");
    let _ = image::parse_manifest(data, "fuzz");
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Platform::parse(s);
        let _ = image::Digest::parse(s);
        let _ = berth_image::store::normalize_name(s);
    }
});
