//! The parallel extractor (`extract_layer_with_workers`: a reading thread, a parsing thread
//! and up to four writer threads fed slices of shared buffers) against the serial one. The
//! same tar stream extracted both ways has the same outcome, and when both succeed the same
//! tree (kinds, content, modes, owners, modification times, link counts, xattrs such as the
//! overlay opaque marker), the same DiffID and the same counts. Never a panic, and nothing is created
//! outside either destination.
//!
//! The first byte picks the input's shape (raw tar bytes, or entries built into a valid tar
//! from the hostile-name alphabet of `common`: `..`, absolute names, symlinks out,
//! whiteouts), the mode (overlay or flatten), rootless, Landlock confinement of the writers,
//! and 0 to 4 worker threads. Small limits bound every input. `FUZZ_WRITE_TAR=<file>` saves
//! the tar an input makes (to look at a finding with `tar tvf`).
#![no_main]

mod common;

use berth_image::extract::{extract_layer_single_thread, extract_layer_with_workers};
use berth_image::{ExtractOptions, ExtractStats, Mode};
use common::{tree, Node, Sandbox, TreeOpts};

/// The stats that must not depend on how the layer was written.
fn comparable(s: &ExtractStats) -> ExtractStats {
    ExtractStats {
        notices: Vec::new(),
        ..s.clone()
    }
}

/// Modification times from `since` on (directories the extractor made for an entry's parent
/// without an entry of their own: their time is the extraction's) as one value.
fn at_extraction(t: &mut std::collections::BTreeMap<String, Node>, since: i64) {
    for n in t.values_mut() {
        if let Node::Dir { mtime, .. } | Node::File { mtime, .. } | Node::Symlink { mtime, .. } = n
        {
            if mtime.0 >= since {
                *mtime = (since, 0);
            }
        }
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let tar = if sel & 1 == 0 {
        rest.to_vec()
    } else {
        common::build_tar(rest)
    };
    if let Some(p) = std::env::var_os("FUZZ_WRITE_TAR") {
        std::fs::write(p, &tar).expect("write the tar");
    }
    let mut opts = ExtractOptions {
        mode: if sel & 2 == 0 {
            Mode::Overlay
        } else {
            Mode::Flatten
        },
        rootless: sel & 4 != 0,
        limits: common::small_limits(),
        ..Default::default()
    };
    let workers = usize::from(sel >> 3) % 5;
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let serial = Sandbox::new("serial");
    let s = extract_layer_single_thread(&tar[..], &serial.dest, &opts);
    serial.check();
    opts.confine = sel & 0x80 != 0;
    let parallel = Sandbox::new("parallel");
    let p = extract_layer_with_workers(&tar[..], &parallel.dest, &opts, workers);
    parallel.check();
    match (&p, &s) {
        (Ok(p), Ok(s)) => {
            assert_eq!(
                comparable(p),
                comparable(s),
                "{workers} workers and the serial path count differently"
            );
            let t = TreeOpts {
                meta: true,
                nlink: true,
                xattrs: true,
            };
            let (mut pt, mut st) = (tree(&parallel.dest, t), tree(&serial.dest, t));
            at_extraction(&mut pt, start);
            at_extraction(&mut st, start);
            if pt != st {
                let only_p: Vec<_> = pt.iter().filter(|(k, v)| st.get(*k) != Some(v)).collect();
                let only_s: Vec<_> = st.iter().filter(|(k, v)| pt.get(*k) != Some(v)).collect();
                panic!(
                    "{workers} workers and the serial path made different trees:\n\
                     parallel only: {only_p:#?}\nserial only: {only_s:#?}"
                );
            }
        }
        (Err(_), Err(_)) => {}
        _ => panic!("{workers} workers: {p:?}; serial: {s:?}"),
    }
});
