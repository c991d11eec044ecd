//! Registry input: image references (as docker parses them) and `WWW-Authenticate`
//! challenges. Never a panic; a reference that parses prints as a string that parses back to
//! the same reference.
#![no_main]

use berth_registry::auth::parse_challenges;
use berth_registry::reference::Reference;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_challenges(s);
    if let Ok(r) = Reference::parse(s) {
        let printed = r.to_string();
        let again = Reference::parse(&printed)
            .unwrap_or_else(|e| panic!("{s:?} printed as {printed:?}, which fails: {e}"));
        assert_eq!(again.to_string(), printed, "from {s:?}");
        let _ = (
            r.api_host(),
            r.target(),
            r.familiar(),
            r.familiar_repository(),
        );
    }
});
