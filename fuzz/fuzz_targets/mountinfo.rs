//! /proc/self/mountinfo parsing: any text parses (skipping bad lines), never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = berth_runtime::mountinfo::parse(&String::from_utf8_lossy(data));
});
