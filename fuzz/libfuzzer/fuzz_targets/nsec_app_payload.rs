#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::grants::nsec_app_payload(data));
