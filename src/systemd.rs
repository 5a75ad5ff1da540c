//! Talking to systemd: readiness, status, reload/stop notices and the watchdog.
//!
//! Every call is a no-op when `NOTIFY_SOCKET` is not set, so the same code runs under systemd,
//! in a terminal and in tests (which point `NOTIFY_SOCKET` at a socket of their own).
//!
//! The watchdog ping is not a timer: it is sent only after the engine answered a ping within
//! half the watchdog interval, so a wedged engine (deadlock, stuck loop) stops the pings and
//! systemd restarts the daemon.

use crate::engine::Handle;
use sd_notify::NotifyState;
use std::time::Duration;
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

/// Sends STATUS= whenever the summary of the snapshot changes.
pub async fn status_updates(handle: Handle, shutdown: CancellationToken) {
    let mut rx = handle.subscribe();
    let mut last = String::new();
    loop {
        let summary = rx.borrow_and_update().summary();
        if summary != last {
            notify_status(&summary);
            last = summary;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
    }
}

/// WATCHDOG=1 every half interval, each one earned by an engine answer.
pub async fn watchdog(handle: Handle, shutdown: CancellationToken) {
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
        match tokio::time::timeout(period, handle.ping()).await {
            Ok(Ok(_)) => send(&[NotifyState::Watchdog]),
            Ok(Err(e)) => tracing::error!("engine did not answer the watchdog: {e}"),
            Err(_) => tracing::error!(
                "engine did not answer the watchdog within {period:?}; withholding WATCHDOG=1"
            ),
        }
    }
}
