//! Logging: native journald entries with fields when stderr is the journal, plain lines on
//! stderr otherwise.
//!
//! Events carry `psentinel_service`, `psentinel_state`, `psentinel_exit_status`,
//! `psentinel_actor`, `psentinel_reason`: journald receives them as `PSENTINEL_SERVICE=` ...
//! so `journalctl -u psentinel PSENTINEL_SERVICE=ourapp` selects one service.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// `log_level` 0..4 = error, warn, info, debug, trace.
pub fn level(log_level: u8) -> LevelFilter {
    match log_level {
        0 => LevelFilter::ERROR,
        1 => LevelFilter::WARN,
        2 => LevelFilter::INFO,
        3 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// True when systemd connected our stderr to the journal (JOURNAL_STREAM names its device and
/// inode), as opposed to a terminal or a file that merely inherited the variable.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(js) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = js.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

pub fn init(filter: LevelFilter) {
    if stderr_is_journal() {
        if let Ok(j) = tracing_journald::layer() {
            let j = j
                .with_field_prefix(None)
                .with_syslog_identifier("psentinel".into());
            tracing_subscriber::registry()
                .with(j.with_filter(filter))
                .init();
            return;
        }
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(filter)
        .with_target(false)
        .init();
}

use tracing_subscriber::Layer;
