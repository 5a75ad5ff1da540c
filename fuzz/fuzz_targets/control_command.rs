//! A control-socket request line, split and parsed exactly as the daemon does.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| psentinel_fuzz::control_command(data));
