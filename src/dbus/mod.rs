//! psentinel on D-Bus (docs/dbus.md): a manager object, one object per service, typed
//! errors, and PropertiesChanged for every change, whatever caused it.
//!
//! The bus is an extra door, never a dependency: [`run`] is spawned beside the probe
//! responders and the control socket and never delays them. If the bus is missing at start
//! or goes away later, it logs once, and keeps trying to connect (with backoff) until the
//! bus is back; probes and `psentinel -c` are not affected meanwhile.
//!
//! Change signals come from one place, the bridge: it watches the engine's snapshots and,
//! for each service, compares the properties it last announced with the new ones. So a
//! check result, a `-c` command, another D-Bus client, an expiry or a reload are all
//! signalled alike, and no call site has to remember to emit anything. Services that appear
//! or disappear on reload become objects or stop being ones; the ObjectManager turns that
//! into InterfacesAdded / InterfacesRemoved.
//!
//! Methods that change state check the caller (its uid, asked from the bus daemon, and
//! polkit when polkitd is installed) with the same [`Auth`] as the control socket: the bus policy
//! is the first fence, this the second.

pub mod error;
pub mod manager;
pub mod service;

use crate::auth::{Auth, Caller, Decision, Request};
use crate::config::DbusMode;
use crate::engine::Handle;
use crate::view::Snapshot;
use error::Error;
use service::{Props, ServiceObject};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::OwnedObjectPath;
use zbus::Connection;

pub const BUS_NAME: &str = "org.psentinel.PSentinel1";
pub const MANAGER_PATH: &str = "/org/psentinel/PSentinel1";
pub const SERVICE_PATH_PREFIX: &str = "/org/psentinel/PSentinel1/service";
pub const SERVICE_INTERFACE: &str = "org.psentinel.PSentinel1.Service";

/// First wait before reconnecting; doubles up to [`RETRY_MAX`]. Connecting to a local
/// socket costs nothing, so the cap is short: the objects are back soon after the bus.
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// A bus that accepts the connection but does not answer Hello / RequestName.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A service name as one element of an object path, escaped as systemd escapes bus labels:
/// every byte outside `[A-Za-z0-9]` becomes `_` and two lowercase hex digits, a leading
/// digit too; the empty name is `_`. `our-app` -> `our_2dapp`.
pub fn bus_label(name: &str) -> String {
    if name.is_empty() {
        return "_".into();
    }
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (b.is_ascii_digit() && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

pub fn service_path(name: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!("{SERVICE_PATH_PREFIX}/{}", bus_label(name)))
        .expect("an escaped bus label is a valid path element")
}

/// What every object on one connection shares.
pub(crate) struct Ctx {
    handle: Handle,
    auth: Arc<Auth>,
}

impl Ctx {
    /// Checks that the caller of `method` may do `req`; returns its name for the record.
    async fn authorise(
        &self,
        conn: &Connection,
        hdr: &Header<'_>,
        method: &str,
        req: Request,
    ) -> Result<String, Error> {
        let sender = hdr
            .sender()
            .ok_or_else(|| Error::AccessDenied(format!("{method}: the call has no sender")))?;
        let dbus = zbus::fdo::DBusProxy::builder(conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        let uid = dbus
            .get_connection_unix_user(sender.clone().into())
            .await
            .map_err(|e| {
                Error::AccessDenied(format!("{method}: cannot tell who {sender} is: {e}"))
            })?;
        let caller = Caller::Bus {
            uid,
            sender: sender.to_string(),
            interactive: hdr
                .primary()
                .flags()
                .contains(zbus::message::Flags::AllowInteractiveAuth),
        };
        let verdict = self
            .auth
            .decide(&caller, &req, &self.handle.snapshot())
            .await;
        let Decision::Refused { groups, polkit } = verdict.decision else {
            return Ok(verdict.actor);
        };
        tracing::warn!(
            psentinel_actor = %verdict.actor,
            "refused D-Bus {method} from {sender}: not authorised"
        );
        // The object names the service; the groups listed are those of this service.
        let why = format!(
            "{} may read state, but {method} needs {}{}",
            verdict.actor,
            crate::auth::who_may(&groups),
            crate::auth::polkit_words(&polkit)
        );
        // As systemd does: a caller that could be allowed after authenticating is told so
        // with the standard error, to call again allowing interaction
        // (busctl --allow-interactive-authorization=yes).
        if polkit == crate::polkit::Answer::Challenge && !caller.interactive() {
            return Err(zbus::fdo::Error::InteractiveAuthorizationRequired(why).into());
        }
        Err(Error::AccessDenied(why))
    }
}

/// Serves on the bus `mode` names until `shutdown`; reconnects whenever the bus goes away.
/// Returns at once for `dbus=off`.
pub async fn run(mode: DbusMode, handle: Handle, auth: Arc<Auth>, shutdown: CancellationToken) {
    if mode == DbusMode::Off {
        tracing::debug!("dbus=off: not on any bus");
        return;
    }
    let mut delay = RETRY_MIN;
    let mut failing = false;
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(CONNECT_TIMEOUT, connect(mode, &handle, &auth)) => {
                r.unwrap_or_else(|_| Err(zbus::Error::Failure(format!(
                    "no answer within {}s", CONNECT_TIMEOUT.as_secs()))))
            }
        };
        match attempt {
            Ok((conn, rx, shown)) => {
                tracing::info!("on the {mode} bus as {BUS_NAME}");
                failing = false;
                delay = RETRY_MIN;
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        conn.graceful_shutdown().await;
                        return;
                    }
                    lost = bridge(&conn, rx, shown) => match lost {
                        Some(why) => tracing::warn!(
                            "lost the {mode} bus ({why}); probes and the control socket go on, \
                             reconnecting"
                        ),
                        None => return, // the engine stopped
                    }
                }
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(
                    "cannot serve {BUS_NAME} on the {mode} bus: {e}; probes and the control \
                     socket go on; retrying"
                );
            }
            Err(e) => tracing::debug!("{mode} bus still unavailable: {e}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(RETRY_MAX);
    }
}

type Connected = (Connection, watch::Receiver<Arc<Snapshot>>, Arc<Snapshot>);

/// Connects, registers every object, and only then takes the name: a client that sees the
/// name finds the objects.
async fn connect(mode: DbusMode, handle: &Handle, auth: &Arc<Auth>) -> zbus::Result<Connected> {
    let ctx = Arc::new(Ctx {
        handle: handle.clone(),
        auth: auth.clone(),
    });
    // Subscribe before reading: a change that lands while we connect is seen by the bridge.
    let mut rx = handle.subscribe();
    let shown = rx.borrow_and_update().clone();
    let mut b = match mode {
        DbusMode::System => zbus::connection::Builder::system()?,
        DbusMode::Session | DbusMode::Off => zbus::connection::Builder::session()?,
    };
    b = b
        .serve_at(MANAGER_PATH, manager::Manager { ctx: ctx.clone() })?
        .serve_at(MANAGER_PATH, zbus::fdo::ObjectManager)?;
    for name in shown.services.keys() {
        b = b.serve_at(
            service_path(name),
            ServiceObject {
                name: name.clone(),
                ctx: ctx.clone(),
            },
        )?;
    }
    let conn = b.name(BUS_NAME)?.build().await?;
    Ok((conn, rx, shown))
}

/// Follows the engine's snapshots until the connection closes (returns why) or the engine
/// stops (returns None).
async fn bridge(
    conn: &Connection,
    mut rx: watch::Receiver<Arc<Snapshot>>,
    mut shown: Arc<Snapshot>,
) -> Option<String> {
    let ctx = {
        let iface = conn
            .object_server()
            .interface::<_, manager::Manager>(MANAGER_PATH)
            .await;
        match iface {
            Ok(m) => m.get().await.ctx.clone(),
            Err(e) => return Some(format!("the manager object is gone: {e}")),
        }
    };
    loop {
        tokio::select! {
            _ = conn.closed() => return Some("connection closed".into()),
            r = rx.changed() => if r.is_err() { return None },
        }
        let next = rx.borrow_and_update().clone();
        if let Err(e) = sync(conn, &ctx, &shown, &next).await {
            if conn.is_closed() {
                return Some(format!("connection closed: {e}"));
            }
            tracing::warn!("D-Bus: cannot announce a change: {e}");
        }
        shown = next;
    }
}

/// Brings the objects and their announced properties from `old` to `new`.
async fn sync(
    conn: &Connection,
    ctx: &Arc<Ctx>,
    old: &Snapshot,
    new: &Snapshot,
) -> zbus::Result<()> {
    let server = conn.object_server();
    for name in old.services.keys() {
        if !new.services.contains_key(name) {
            server
                .remove::<ServiceObject, _>(service_path(name))
                .await?;
            tracing::debug!(psentinel_service = %name, "D-Bus object removed");
        }
    }
    let iface = zbus::names::InterfaceName::from_static_str_unchecked(SERVICE_INTERFACE);
    for (name, view) in &new.services {
        let Some(before) = old.services.get(name) else {
            let obj = ServiceObject {
                name: name.clone(),
                ctx: ctx.clone(),
            };
            server.at(service_path(name), obj).await?;
            tracing::debug!(psentinel_service = %name, "D-Bus object added");
            continue;
        };
        if Arc::ptr_eq(before, view) {
            continue;
        }
        let changed = Props::from_view(view).changed_since(&Props::from_view(before));
        if changed.is_empty() {
            continue;
        }
        let emitter = SignalEmitter::new(conn, service_path(name))?;
        let changed: HashMap<&str, _> = changed.into_iter().collect();
        zbus::fdo::Properties::properties_changed(&emitter, iface.clone(), changed, (&[]).into())
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_escape_like_systemd() {
        assert_eq!(bus_label("our-app"), "our_2dapp");
        assert_eq!(bus_label("web"), "web");
        assert_eq!(bus_label("a.b_c"), "a_2eb_5fc");
        assert_eq!(bus_label("1st"), "_31st");
        assert_eq!(bus_label("v2"), "v2");
        assert_eq!(bus_label(""), "_");
        assert_eq!(
            service_path("our-app").as_str(),
            "/org/psentinel/PSentinel1/service/our_2dapp"
        );
    }
}
