#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::releases::announcement_event(data));
