#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oint_fuzz::alerts::run(data));
