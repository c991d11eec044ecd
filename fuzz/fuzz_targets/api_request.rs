//! berthd's parsers of what an API client sends: the request path (version prefix, percent
//! decoding), the query string and its `filters`, a container create body (docker's JSON into
//! bollard-stubs' types), `since`/`until` times and container names. The first byte picks the
//! parser. Never a panic; an accepted name is one path component.
#![no_main]

use berthd::http::body::parse_json;
use berthd::http::query::{parse_filters, Query};
use berthd::http::parse_path;
use berthd::state::record::validate_name;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 5 {
        0 => {
            if let Ok(path) = std::str::from_utf8(rest) {
                if let Ok((_, segs)) = parse_path(path) {
                    assert!(segs.iter().all(|s| !s.contains('\0') && !s.is_empty()));
                }
            }
        }
        1 => {
            if let Ok(q) = std::str::from_utf8(rest) {
                let q = Query::parse(q);
                let _ = q.filters();
                let _ = q.int("tail");
                let _ = q.flag("all", false);
            }
        }
        2 => {
            let _ = parse_json::<Option<bollard_stubs::models::ContainerCreateBody>>(rest);
        }
        3 => {
            if let Ok(s) = std::str::from_utf8(rest) {
                let _ = parse_filters(s);
                let _ = berthd::time::parse_query_time(s);
            }
        }
        _ => {
            if let Ok(name) = std::str::from_utf8(rest) {
                if validate_name(name).is_ok() {
                    assert!(!name.contains('/') && name != "." && name != "..", "{name:?}");
                }
            }
        }
    }
});
