//! Talking to systemd: readiness, status, reload/stop notices and the watchdog.
//!
//! Every call is a no-op when `NOTIFY_SOCKET` is not set, so the same code runs under systemd,
//! in a terminal and in tests (which point `NOTIFY_SOCKET` at a socket of their own).
//!
//! The watchdog ping is not a timer: it is sent only after the engine answered a ping within
//! half the watchdog interval, so a wedged engine (deadlock, stuck loop) stops the pings and
//! systemd restarts the daemon.

use crate::view::Snapshot;
use sd_notify::NotifyState;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// Started by systemd (as a notify service or socket-activated): stay in the foreground.
pub fn under_systemd() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some() || std::env::var_os("LISTEN_FDS").is_some()
}

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("sd_notify failed: {e}");
    }
}

pub fn notify_ready() {
    send(&[NotifyState::Ready]);
}

pub fn notify_reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn notify_stopping() {
    send(&[NotifyState::Stopping]);
}

pub fn notify_status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// What STATUS= says before the summary until it is resolved: that the daemon runs on its
/// last good configuration, that the last reload was refused. One per [`Note`]. Owned by the
/// daemon instance (cheap to clone), shared by whoever sets a note and [`status_updates`].
#[derive(Clone, Default)]
pub struct Notes(Arc<NotesInner>);

#[derive(Default)]
struct NotesInner {
    notes: Mutex<BTreeMap<Note, String>>,
    changed: Notify,
}

/// The topics of [`Notes::set`], in the order STATUS= shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Note {
    /// Started on the last good copy because the configuration file is broken.
    LastGood,
    /// The last reload was refused.
    ReloadRefused,
}

impl Notes {
    /// Shows (Some) or clears (None) a note in STATUS=.
    pub fn set(&self, topic: Note, text: Option<String>) {
        let mut notes = self.0.notes.lock().unwrap_or_else(|e| e.into_inner());
        let changed = match text {
            Some(t) => notes.insert(topic, t.clone()) != Some(t),
            None => notes.remove(&topic).is_some(),
        };
        if changed {
            self.0.changed.notify_one();
        }
    }

    /// The notes, then the summary; one line (the notify protocol is line-based, and a
    /// configuration error may span lines).
    fn status_text(&self, summary: &str) -> String {
        let notes = self.0.notes.lock().unwrap_or_else(|e| e.into_inner());
        let mut parts: Vec<&str> = notes.values().map(String::as_str).collect();
        parts.push(summary);
        parts
            .join("; ")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Sends STATUS= whenever the summary of the snapshot or a note changes.
pub async fn status_updates(
    mut rx: watch::Receiver<Arc<Snapshot>>,
    notes: Notes,
    shutdown: CancellationToken,
) {
    let mut last = String::new();
    loop {
        let status = notes.status_text(&rx.borrow_and_update().summary());
        if status != last {
            notify_status(&status);
            last = status;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = notes.0.changed.notified() => {}
            r = rx.changed() => if r.is_err() { return },
        }
    }
}

/// WATCHDOG=1 every half interval, each one earned by an engine answer: `ping` resolves to
/// true when the engine answered.
pub async fn watchdog<P, F>(ping: P, shutdown: CancellationToken)
where
    P: Fn() -> F,
    F: Future<Output = bool>,
{
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let period = Duration::from_micros(usec) / 2;
    tracing::debug!(?period, "watchdog enabled");
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match tokio::time::timeout(period, ping()).await {
            Ok(true) => send(&[NotifyState::Watchdog]),
            Ok(false) => tracing::error!("engine did not answer the watchdog: it is stopping"),
            Err(_) => tracing::error!(
                "engine did not answer the watchdog within {period:?}; withholding WATCHDOG=1"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_come_first_on_one_line() {
        let notes = Notes::default();
        assert_eq!(notes.status_text("1 service: 1 up"), "1 service: 1 up");
        notes.set(
            Note::ReloadRefused,
            Some("reload refused: a.cfg: line 2\n  bad".into()),
        );
        notes.set(
            Note::LastGood,
            Some("running on last good configuration: x".into()),
        );
        assert_eq!(
            notes.status_text("1 service: 1 up"),
            "running on last good configuration: x; reload refused: a.cfg: line 2; bad; \
             1 service: 1 up"
        );
        notes.set(Note::LastGood, None);
        notes.set(Note::ReloadRefused, None);
        assert_eq!(notes.status_text("1 service: 1 up"), "1 service: 1 up");
    }
}
