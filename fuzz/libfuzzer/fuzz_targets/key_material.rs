#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::rpc::key_material(data));
