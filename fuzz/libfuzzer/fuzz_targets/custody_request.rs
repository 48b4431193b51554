#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::custody::custody_request(data));
