//! Logging: native journald entries with fields when stderr is the journal, plain lines on
//! stderr otherwise.
//!
//! Events carry `psentinel_service`, `psentinel_state`, `psentinel_exit_status`,
//! `psentinel_actor`, `psentinel_reason`: tracing-journald upper-cases field names and, with
//! the field prefix turned off, journald receives them as `PSENTINEL_SERVICE=` ... so
//! `journalctl -u psentinel PSENTINEL_SERVICE=ourapp` selects one service. A field named
//! `message_id` becomes the journal's own `MESSAGE_ID=`.
//!
//! Every change of a service's state is logged once, here, from the difference between two
//! snapshots ([`log_state_changes`]), whatever caused it (check, operator, expiry, reload), with
//! `MESSAGE_ID=`[`MSG_STATE_CHANGED`]: `journalctl MESSAGE_ID=92e5bc9aa0014850ae339116af3cd97a`
//! is the history of every service's state.

use crate::engine::Snapshot;
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

/// `MESSAGE_ID=` of "service changed state" entries (and of the first state of each service
/// at start-up or when a reload adds it). Fixed forever: operators and log tooling match on it.
pub const MSG_STATE_CHANGED: &str = "92e5bc9aa0014850ae339116af3cd97a";

/// Logs every service whose state in `new` differs from `old` (or that `old` did not have).
/// Called by the engine on every publish, so no change is ever coalesced away.
pub fn log_state_changes(old: &Snapshot, new: &Snapshot) {
    for (name, view) in &new.services {
        let before = old.services.get(name).map(|v| v.state);
        if before == Some(view.state) {
            continue;
        }
        let what = match before {
            Some(b) => format!("{name}: {b} -> {}", view.state),
            None => format!("{name}: {}", view.state),
        };
        let previous = before.map_or("none", |b| b.as_str());
        match &view.last {
            Some(last) => tracing::info!(
                message_id = MSG_STATE_CHANGED,
                psentinel_service = %name,
                psentinel_state = view.state.as_str(),
                psentinel_previous_state = previous,
                psentinel_exit_status = last.exit.status_code(),
                psentinel_reason = %view.reason,
                "{what} ({})",
                view.reason
            ),
            None => tracing::info!(
                message_id = MSG_STATE_CHANGED,
                psentinel_service = %name,
                psentinel_state = view.state.as_str(),
                psentinel_previous_state = previous,
                psentinel_reason = %view.reason,
                "{what} ({})",
                view.reason
            ),
        }
    }
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
