//! The daemon's life: start-up, serving, reload on SIGHUP, orderly stop.
//!
//! [`run`] takes its sockets and its shutdown signal as arguments, so systemd socket
//! activation, self-bound ports and tests all go through the same path.

use crate::check;
use crate::config::Config;
use crate::control::server::{self as control, Auth, ControlSocket};
use crate::engine::{Engine, Handle, Parts};
use crate::sockets::Sockets;
use crate::systemd;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long the engine gets to stop its checks and save state on shutdown.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long probes accepted before the stop get to be answered (HAProxy sends its request
/// with the connection; only a silent client takes this long).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Serves until `shutdown` is cancelled (SIGTERM, SIGINT, `stop_server`).
/// `on_ready` is called once every port answers and the saved state is restored.
pub async fn run(
    cfg: Config,
    mut sockets: Sockets,
    shutdown: CancellationToken,
    notes: systemd::Notes,
    on_ready: impl FnOnce(),
) -> anyhow::Result<()> {
    raise_fd_limit();
    // This daemon is the process's reaper: it sweeps what checks leave behind.
    let subreaper = check::become_subreaper();
    if let Err(e) = &subreaper {
        tracing::warn!("cannot become a child subreaper ({e}); processes that checks leave behind are reaped by init");
    }
    let processes = check::Processes::new(subreaper.is_ok());
    let in_flight = TaskTracker::new();
    let ctl = ControlSocket::open(
        &cfg.general.sock_file,
        sockets.take_unix(&cfg.general.sock_file),
    )?;
    let auth = Arc::new(Auth::new(&cfg.general.control_group));
    tokio::spawn(check::reaper(processes.clone(), shutdown.clone()));
    let metrics = match cfg.general.metrics_listen {
        Some(a) => Some(sockets.tcp(a).map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on metrics_listen {a} ({}): {e}",
                cfg.file.display()
            )
        })?),
        None => None,
    };
    let parts = Parts {
        sockets,
        processes,
        in_flight: in_flight.clone(),
        notes: notes.clone(),
        shutdown: shutdown.clone(),
    };
    let (handle, engine) = Engine::start(cfg.clone(), parts)?;

    // The bus is an extra door: its task connects (and reconnects) on its own, never
    // delaying READY=1 or the probes.
    tokio::spawn(crate::dbus::run(
        cfg.general.dbus,
        handle.clone(),
        auth.clone(),
        shutdown.clone(),
    ));
    // Always the system bus (where systemd is), whatever `dbus=` says of our own objects.
    tokio::spawn(crate::unit::run(handle.clone(), shutdown.clone()));
    let control = tokio::spawn(control::serve(ctl, handle.clone(), auth, shutdown.clone()));
    tokio::spawn(systemd::status_updates(
        handle.subscribe(),
        notes,
        shutdown.clone(),
    ));
    let pinger = handle.clone();
    tokio::spawn(systemd::watchdog(
        move || {
            let h = pinger.clone();
            async move { h.ping().await.is_ok() }
        },
        shutdown.clone(),
    ));
    tokio::spawn(signals(handle.clone(), shutdown.clone()));
    if let Some(l) = metrics {
        tokio::spawn(crate::metrics::serve(
            l,
            handle.subscribe(),
            shutdown.clone(),
        ));
    }

    tracing::info!(
        config = %cfg.file.display(),
        socket = %cfg.general.sock_file.display(),
        "psentinel {} ready: {}",
        crate::status::VERSION,
        handle.snapshot().summary()
    );
    systemd::notify_ready();
    on_ready();

    shutdown.cancelled().await;
    systemd::notify_stopping();
    tracing::info!("stopping");
    if tokio::time::timeout(STOP_GRACE, engine).await.is_err() {
        tracing::warn!("the engine did not stop within {STOP_GRACE:?}");
    }
    match control.await {
        Ok(Err(e)) => tracing::error!("control socket: {e:#}"),
        Err(e) => tracing::error!("control socket task: {e}"),
        Ok(Ok(())) => {}
    }
    crate::probe::finish_in_flight(&in_flight, DRAIN_GRACE).await;
    Ok(())
}

async fn signals(handle: Handle, shutdown: CancellationToken) {
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stopping");
        shutdown.cancel();
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = term.recv() => { tracing::info!("SIGTERM received"); shutdown.cancel(); }
            _ = int.recv() => { tracing::info!("SIGINT received"); shutdown.cancel(); }
            _ = hup.recv() => {
                // The engine logs the outcome; a refused reload keeps the old configuration.
                let _ = handle.reload("SIGHUP").await;
            }
        }
    }
}

/// Many probers and idle clients each hold a descriptor: use all the hard limit allows.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("cannot raise the open files limit from {soft} to {hard}: {e}");
            }
        }
    }
}
