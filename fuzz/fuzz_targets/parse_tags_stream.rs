#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| yallmp_fuzz::parse_tags_stream::run(data));
