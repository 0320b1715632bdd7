#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pipelines::conntrack::fuzz::tracker(data));
