//! The HTTP request-head classifier: any bytes a prober sends, in any split.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| psentinel_fuzz::parse_head(data));
