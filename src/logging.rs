//! Logging: native journald entries with fields when stderr is the journal, plain lines on
//! stderr otherwise.
//!
//! Events carry `psentinel_service`, `psentinel_state`, `psentinel_exit_status`,
//! `psentinel_actor`, `psentinel_reason`: tracing-journald upper-cases field names and, with
//! the field prefix turned off, journald receives them as `PSENTINEL_SERVICE=` ... so
//! `journalctl -u psentinel PSENTINEL_SERVICE=ourapp` selects one service. A field named
//! `message_id` becomes the journal's own `MESSAGE_ID=`.
//!
//! Levels: psentinel's own events follow `log_level`; every other crate's (zbus, tokio ...) are
//! shown from `warn` up, so `log_level=4` is psentinel's trace, not the bus library's message
//! dumps. [`LOG_ENV`] (`PSENTINEL_LOG=zbus=debug,tokio=trace`, tracing's `target=level` list)
//! raises other crates when debugging them. On stderr, their lines carry the crate's
//! module path (`zbus::connection: ...`), psentinel's do not.
//!
//! Every change of a service's state is logged once, here, from the difference between two
//! snapshots ([`log_state_changes`]), whatever caused it (check, operator, expiry, reload), with
//! `MESSAGE_ID=`[`MSG_STATE_CHANGED`]: `journalctl MESSAGE_ID=92e5bc9aa0014850ae339116af3cd97a`
//! is the history of every service's state.

use crate::view::Snapshot;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

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
    // Only the views that changed: this runs on every publish, for every service.
    for (name, before, view) in new.services.changed_since(&old.services) {
        let before = before.map(|v| v.state);
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

/// Environment variable with `target=level` directives for other crates' events.
pub const LOG_ENV: &str = "PSENTINEL_LOG";
/// psentinel's own events: the library's and the binary's modules.
const OWN: &str = "psentinel";

/// Other crates' levels: warn, unless [`LOG_ENV`] says otherwise (its error is returned
/// to be logged once logging is up).
fn others() -> (Targets, Option<String>) {
    let base = Targets::new().with_default(LevelFilter::WARN);
    let Ok(spec) = std::env::var(LOG_ENV) else {
        return (base, None);
    };
    match spec.parse::<Targets>() {
        Ok(extra) => {
            let base = match extra.default_level() {
                Some(l) => base.with_default(l),
                None => base,
            };
            (base.with_targets(extra), None)
        }
        Err(e) => (
            base,
            Some(format!(
                "{LOG_ENV}={spec:?} ignored: {e} (e.g. zbus=debug,tokio=trace)"
            )),
        ),
    }
}

pub fn init(level: LevelFilter) {
    let (others, bad_env) = others();
    let others = others.with_target(OWN, LevelFilter::OFF);
    let own = Targets::new().with_target(OWN, level);
    let mut done = false;
    if stderr_is_journal() {
        if let Ok(j) = tracing_journald::layer() {
            let j = j
                .with_field_prefix(None)
                .with_syslog_identifier("psentinel".into());
            let both = others.clone().with_target(OWN, level);
            tracing_subscriber::registry()
                .with(j.with_filter(both))
                .init();
            done = true;
        }
    }
    if !done {
        use tracing_subscriber::fmt::layer;
        tracing_subscriber::registry()
            .with(
                layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_filter(own),
            )
            .with(layer().with_writer(std::io::stderr).with_filter(others))
            .init();
    }
    if let Some(why) = bad_env {
        tracing::warn!("{why}");
    }
}
