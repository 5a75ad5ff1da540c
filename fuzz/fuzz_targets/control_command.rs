//! A control-socket request line, split and parsed exactly as the daemon does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psentinel::control::proto::Command;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(words) = shlex::split(text.trim_end_matches(['\n', '\r'])) {
        if let Ok(cmd) = Command::parse(&words) {
            let _ = cmd.changes_state();
        }
    }
});
