#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::rpc::sign_event_template(data));
