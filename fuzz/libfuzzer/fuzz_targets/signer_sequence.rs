#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::signer::signer_sequence(data));
