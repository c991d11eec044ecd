//! `exec --process` documents: any input gives a process or an error, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(p) = berth_runtime::config::parse_process(data) {
        // A parsed process must also convert into the plan the init runs.
        let _ = berth_runtime::process::ProcessPlan::new(&p, None);
    }
});
