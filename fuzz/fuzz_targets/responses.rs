#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| yallmp_fuzz::responses::run(data));
