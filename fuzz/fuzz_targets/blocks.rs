#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oint_fuzz::blocks::run(data));
