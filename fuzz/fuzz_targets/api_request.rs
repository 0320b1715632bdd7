#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| control::fuzz::api_request(data));
