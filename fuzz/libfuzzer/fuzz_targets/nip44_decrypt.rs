#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::rpc::nip44_decrypt(data));
