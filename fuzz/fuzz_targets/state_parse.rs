//! state.json as berth reads it back: any input gives a state or an error, never a panic, and
//! a parsed state serialises to a spec state document.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = serde_json::from_slice::<berth_runtime::ContainerState>(data) {
        let _ = s.spec_state_json_as(berth_runtime::Status::Created);
    }
});
