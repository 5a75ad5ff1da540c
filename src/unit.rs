//! Following the applications' systemd units (`unit = ourapp.service`) on the system bus.
//!
//! systemd says when a unit changes state: psentinel asks it to (`Subscribe`), listens to
//! `PropertiesChanged` of each unit's object, reads the state once after listening began (so
//! no change falls between), and hands every report to the engine, which takes the service
//! out while its unit is not active ([`crate::model::UnitFact`]). Nothing is polled: a crash
//! of the application reaches the probe answers as soon as systemd has noticed it.
//!
//! Like psentinel's own D-Bus objects, this is an extra, never a dependency: without a system
//! bus (tests on a laptop, containers without systemd) it says so once, the services answer
//! from their checks alone, and it keeps trying to connect. When the bus goes away, the last
//! states reported stay (systemd is not there to say otherwise) until it is back. A reload
//! that adds, changes or removes `unit=` is followed: the set of units is read again from
//! each snapshot after a reload (only a reload changes it; reading it from every snapshot,
//! one per check result, was a walk over every service per result).

use crate::engine::{Handle, UnitReport};
use futures_util::StreamExt;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use zbus::fdo::PropertiesProxy;
use zbus::names::InterfaceName;
use zbus::Connection;

const SYSTEMD: &str = "org.freedesktop.systemd1";
const SYSTEMD_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const UNIT: &str = "org.freedesktop.systemd1.Unit";
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A unit's object path, as systemd names it: `ourapp.service` ->
/// `/org/freedesktop/systemd1/unit/ourapp_2eservice`. systemd loads a unit asked for by path.
pub fn unit_path(unit: &str) -> String {
    format!("{SYSTEMD_PATH}/unit/{}", crate::dbus::bus_label(unit))
}

/// Which service follows which unit. Followed again whenever this changes: a service that
/// took another unit forgot the old one's state and needs the new one's.
fn wanted(handle: &Handle) -> BTreeSet<(String, String)> {
    handle
        .snapshot()
        .services
        .values()
        .filter_map(|v| Some((v.cfg.name.clone(), v.cfg.unit.clone()?)))
        .collect()
}

/// Waits for a snapshot published after a reload other than `seen`: the reload count it
/// has, or None when the engine is gone.
async fn reloaded(
    snaps: &mut tokio::sync::watch::Receiver<std::sync::Arc<crate::view::Snapshot>>,
    seen: u64,
) -> Option<u64> {
    loop {
        snaps.changed().await.ok()?;
        let reloads = snaps.borrow_and_update().reloads;
        if reloads != seen {
            return Some(reloads);
        }
    }
}

/// Follows every configured unit until `shutdown`; follows reloads; reconnects.
pub async fn run(handle: Handle, shutdown: CancellationToken) {
    let mut snaps = handle.subscribe();
    let mut delay = RETRY_MIN;
    let mut said_missing = false;
    loop {
        // Read before the units: a reload in between is seen again, never missed.
        let mut seen = snaps.borrow_and_update().reloads;
        let pairs = wanted(&handle);
        let units: BTreeSet<String> = pairs.iter().map(|(_, u)| u.clone()).collect();
        if units.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = reloaded(&mut snaps, seen) => if r.is_none() { return },
            }
            continue;
        }
        let conn = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = tokio::time::timeout(CONNECT_TIMEOUT, connect()) => {
                c.unwrap_or_else(|_| Err(zbus::Error::Failure(format!(
                    "no answer within {}s", CONNECT_TIMEOUT.as_secs()))))
            }
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                if !said_missing {
                    said_missing = true;
                    tracing::warn!(
                        "cannot follow {} on the system bus ({e}): while there is none, those \
                         services answer from their checks alone; retrying",
                        units.iter().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                    r = reloaded(&mut snaps, seen) => if r.is_none() { return },
                }
                delay = (delay * 2).min(RETRY_MAX);
                continue;
            }
        };
        tracing::info!(
            "following {} on the system bus",
            units.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        said_missing = false;
        delay = RETRY_MIN;
        let mut followers = JoinSet::new();
        for u in &units {
            followers.spawn(follow(conn.clone(), u.clone(), handle.clone()));
        }
        // Until the set of units changes, the bus goes, or the daemon stops.
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = reloaded(&mut snaps, seen) => {
                    let Some(r) = r else { return };
                    seen = r;
                    if wanted(&handle) != pairs {
                        break;
                    }
                }
                Some(res) = followers.join_next() => {
                    if let Ok(Err(e)) = res {
                        tracing::warn!("lost systemd's signals ({e}); reconnecting");
                        break;
                    }
                }
            }
        }
        followers.abort_all();
    }
}

/// Connects and asks systemd to send its signals (it sends none to nobody).
async fn connect() -> zbus::Result<Connection> {
    let conn = Connection::system().await?;
    conn.call_method(Some(SYSTEMD), SYSTEMD_PATH, Some(MANAGER), "Subscribe", &())
        .await?;
    Ok(conn)
}

/// One unit: listen first, then read its state, then report every change.
async fn follow(conn: Connection, unit: String, handle: Handle) -> zbus::Result<()> {
    let props = PropertiesProxy::builder(&conn)
        .destination(SYSTEMD)?
        .path(unit_path(&unit))?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let mut changes = props.receive_properties_changed().await?;
    let iface = InterfaceName::from_static_str_unchecked(UNIT);
    let read = |name: &'static str| {
        let (props, iface) = (props.clone(), iface.clone());
        async move {
            let v = props.get(iface, name).await?;
            String::try_from(v).map_err(zbus::Error::from)
        }
    };
    let report = |active: String, sub: String| UnitReport {
        unit: unit.clone(),
        active,
        sub,
    };
    let first = report(read("ActiveState").await?, read("SubState").await?);
    if handle.unit_report(first).await.is_err() {
        return Ok(()); // the engine stopped
    }
    while let Some(signal) = changes.next().await {
        let Ok(args) = signal.args() else { continue };
        if args.interface_name.as_str() != UNIT {
            continue;
        }
        let value = |k: &str| -> Option<String> {
            let v = args.changed_properties.get(k)?;
            String::try_from(v.try_clone().ok()?).ok()
        };
        let (active, sub) = match (value("ActiveState"), value("SubState")) {
            (Some(a), Some(s)) => (a, s),
            // Invalidated or partial: ask.
            _ => (read("ActiveState").await?, read("SubState").await?),
        };
        if handle.unit_report(report(active, sub)).await.is_err() {
            return Ok(());
        }
    }
    Err(zbus::Error::Failure("the signal stream ended".into()))
}
