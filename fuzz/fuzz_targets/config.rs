//! The configuration file: INI layer, then validation of every key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psentinel::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = Config::parse(text, std::path::Path::new("/fuzz/psentinel.cfg")) {
        // A configuration that parses must render its socket drop-in without trouble.
        let _ = psentinel::sockets::socket_dropin(&cfg);
    }
});
