//! What each fuzz target does with one input, shared by the targets (fuzz_targets/) and by the
//! stable test suite, which replays every file of fuzz/seeds/<target> through the same function
//! (tests/it/fuzz_seeds.rs): the seeds stay a regression test without nightly.

use psentinel::probe::{Head, MAX_HEAD};

/// The HTTP request-head classifier: any bytes a prober sends, in any split.
pub fn parse_head(data: &[u8]) {
    // The daemon calls it with at most MAX_HEAD bytes; longer input checks the bound holds.
    for eof in [false, true] {
        let h = psentinel::probe::parse_head(data, eof);
        // At EOF there is nothing to wait for, and past the limit nothing more is read.
        assert!(!(eof && h == Head::Partial), "Partial at EOF: {data:?}");
        assert!(
            !(data.len() >= MAX_HEAD && h == Head::Partial),
            "Partial past MAX_HEAD"
        );
    }
    // Every prefix, as the bytes trickle in: classifying must never panic.
    if data.len() <= 512 {
        for i in 0..data.len() {
            let _ = psentinel::probe::parse_head(&data[..i], false);
        }
    }
}

/// A control-socket request line, split and parsed exactly as the daemon does.
pub fn control_command(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(words) = shlex::split(text.trim_end_matches(['\n', '\r'])) {
        if let Ok(cmd) = psentinel::control::proto::Command::parse(&words) {
            let _ = cmd.changes_state();
        }
    }
}

/// The configuration file: INI layer, then validation of every key.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("/fuzz/psentinel.cfg");
    if let Ok(cfg) = psentinel::config::Config::parse(text, path) {
        // A configuration that parses must render its socket drop-in without trouble.
        let _ = psentinel::sockets::socket_dropin(&cfg);
    }
}
