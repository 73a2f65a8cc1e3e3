#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oint_fuzz::bulk::run_csv(data));
