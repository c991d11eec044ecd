//! Mount option lists: any strings give options or an error, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let opts: Vec<String> = text.split(',').map(str::to_owned).collect();
    let _ = berth_runtime::mount_options::parse(&opts, 0);
});
