#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::rpc::bunker_uri(data));
