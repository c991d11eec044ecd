//! Network input from the command line: `-p` port mappings and subnets. Never a panic; what
//! parses prints as a string that parses back to the same value.
#![no_main]

use berth_netns::{PortMapping, Subnet};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = s.parse::<PortMapping>() {
        let again: PortMapping = p.to_string().parse().expect("printed mapping parses");
        assert_eq!(again, p, "from {s:?}");
    }
    if let Ok(n) = s.parse::<Subnet>() {
        let again: Subnet = n.to_string().parse().expect("printed subnet parses");
        assert_eq!(again, n, "from {s:?}");
    }
});
