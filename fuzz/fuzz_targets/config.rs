//! The configuration file: INI layer, then validation of every key.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| psentinel_fuzz::config(data));
