#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pipelines::fuzz::offload(data));
