#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::formats::signature_events(data));
