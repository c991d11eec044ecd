//! config.json parse + validate: any input gives a config or an error, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = berth_runtime::config::parse(data);
});
