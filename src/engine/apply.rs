//! Making a configuration the running one (at start and on reload): probe ports, check
//! runners, and what a service keeps or restores.
//!
//! Rules:
//! - Binding is all or nothing: every address the old configuration does not hold is bound
//!   first; one failure refuses the whole configuration and the old one keeps serving.
//! - A service that stays keeps its sockets, manual state, probe counters and check result.
//!   Its result is dropped only when its check command changed; other changes (interval,
//!   timeout, rise/fall, statuses) keep it, and a new interval or timeout restarts the runner.
//! - At start, a saved result is trusted only for the same check command and while younger
//!   than interval + timeout + [`RESTART_GRACE`], so a restart does not flap a node that was
//!   up (or down); the first check runs at once and replaces it.
//! - A service whose `unit=` changes forgets what it knew of the old unit; the follower
//!   ([`crate::unit`]) reports the new one.

use super::outcome::{ReloadRefused, Reloaded};
use super::{Engine, Svc};
use crate::check;
use crate::config::{Config, ServiceConfig};
use crate::flap::Flap;
use crate::model::{Admin, CheckCounts, HealthTracker, Micros, Override, UnitFact};
use crate::probe::{self, Port};
use crate::probe_stats::{ProbeKind, ProbeStats, Tap};
use crate::state::{Saved, SavedService};
use crate::view::Facts;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// How much older than interval + timeout a saved result may be at start: a daemon killed
/// (`kill -9`, a crash) is restarted by systemd after RestartSec=1s, and with a one-second
/// interval its last result is then already older than interval + timeout. Without this
/// grace, the restart would answer 503 "starting" for a passing service until its first check
/// ends.
pub(super) const RESTART_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A probe port's accept loop; aborted (closing the socket) when dropped.
pub(super) struct Listener {
    socket: Arc<Port>,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(super) type ListenKey = (SocketAddr, ProbeKind);

fn listen_keys(cfg: &ServiceConfig) -> Vec<ListenKey> {
    let mut keys = vec![(cfg.probe_addr(), ProbeKind::Http)];
    keys.extend(cfg.agent_addr().map(|a| (a, ProbeKind::Agent)));
    keys
}

impl Engine {
    /// Makes `new` the running configuration: binds what is new (all or nothing), keeps the
    /// sockets, runners, health and manual state of services that stay, starts the rest.
    /// `saved` is the state file at start-up (None on reload: the live state is newer).
    pub(super) fn apply(
        &mut self,
        new: Config,
        saved: Option<&Saved>,
    ) -> Result<Reloaded, ReloadRefused> {
        // Phase 1, fallible: bind every address the old configuration does not hold.
        let mut old_sockets: BTreeMap<ListenKey, Arc<Port>> = BTreeMap::new();
        for svc in self.services.values() {
            for (k, l) in &svc.listeners {
                old_sockets.insert(*k, l.socket.clone());
            }
        }
        let mut fresh: BTreeMap<ListenKey, Arc<Port>> = BTreeMap::new();
        for cfg in new.services.values() {
            for key in listen_keys(cfg) {
                if old_sockets.contains_key(&key) || fresh.contains_key(&key) {
                    continue;
                }
                let l = self.sockets.tcp(key.0).and_then(Port::new).map_err(|e| {
                    ReloadRefused::Listen {
                        service: cfg.name.clone(),
                        addr: key.0,
                        kind: key.1,
                        error: e.to_string(),
                    }
                })?;
                fresh.insert(key, Arc::new(l));
            }
        }

        // Phase 2, infallible: move services over.
        let now = self.clock.now();
        let mut old = std::mem::take(&mut self.services);
        let (mut added, mut kept, mut check_changed) = (Vec::new(), 0usize, Vec::new());
        // Accept loops start only once the snapshot that knows their service is published:
        // connections already waiting (socket activation, restart) would otherwise meet a
        // snapshot without the service and be closed unanswered.
        let mut to_spawn: Vec<(String, ListenKey, Arc<Port>)> = Vec::new();
        // Check runners start after the accept loops: the first answers do not queue behind
        // a thousand forks.
        let mut to_run: Vec<String> = Vec::new();
        for (name, cfg) in &new.services {
            let cfg = Arc::new(cfg.clone());
            let mut svc = match old.remove(name) {
                Some(mut p) => {
                    kept += 1;
                    if p.facts.cfg.check != cfg.check || p.facts.cfg.check_style != cfg.check_style
                    {
                        // Another command (or another reading of its exit code): the old
                        // result says nothing about it.
                        p.runner = None;
                        p.facts.health = HealthTracker::default();
                        p.facts.last = None;
                        check_changed.push(name.clone());
                    } else if p.facts.cfg.interval != cfg.interval
                        || p.facts.cfg.timeout != cfg.timeout
                    {
                        // Same command, new timing: the result stands, the runner restarts.
                        p.runner = None;
                    }
                    if !cfg.flap.enabled() && p.facts.flap.release(now, &cfg.flap) {
                        tracing::info!(
                            psentinel_service = %name,
                            "{name}: flap damping turned off; no longer held out"
                        );
                    }
                    if p.facts.cfg.unit != cfg.unit {
                        p.facts.unit = UnitFact::default();
                    }
                    p.facts.cfg = cfg.clone();
                    p
                }
                None => {
                    added.push(name.clone());
                    new_service(cfg.clone(), saved.and_then(|s| s.services.get(name)), now)
                }
            };
            // Listeners: reuse the socket whoever held it, restart the task if it changed hands.
            let mut listeners = std::mem::take(&mut svc.listeners);
            for key in listen_keys(&cfg) {
                if let Some(l) = listeners.remove(&key) {
                    svc.listeners.insert(key, l);
                    continue;
                }
                let socket = old_sockets
                    .get(&key)
                    .or_else(|| fresh.get(&key))
                    .expect("bound in phase 1")
                    .clone();
                to_spawn.push((name.clone(), key, socket));
            }
            drop(listeners); // ports this service no longer uses
            if svc.runner.is_none() && cfg.check.is_some() {
                to_run.push(name.clone());
            }
            svc.refresh_view();
            self.services.insert(name.clone(), svc);
        }
        let removed: Vec<String> = old.keys().cloned().collect();
        // Sockets of removed services close now unless another service took them over.
        for name in &removed {
            tracing::info!(psentinel_service = %name, "{name}: service removed from the configuration");
        }
        drop(old);
        // Only when the set of services changed: snapshots with the same list line up.
        if !self.names.iter().eq(self.services.keys()) {
            self.names = self.services.keys().cloned().collect();
        }
        // [general] is what the daemon started with: sockets and paths are not moved live.
        self.cfg = Config {
            general: self.cfg.general.clone(),
            ..new
        };
        self.publish();
        for (name, key, socket) in to_spawn {
            let Some(probes) = self.services.get(&name).map(|s| s.facts.probes.clone()) else {
                continue;
            };
            let tap = Tap::new(probes, self.seen_tx.clone());
            let listener = self.spawn_listener(socket, &name, key.1, tap);
            if let Some(svc) = self.services.get_mut(&name) {
                svc.listeners.insert(key, listener);
            }
        }
        self.start_runners(&to_run);
        self.persist();
        Ok(Reloaded {
            services: self.services.len(),
            kept,
            added,
            removed,
            check_changed,
            pending_restart: Vec::new(),
        })
    }

    /// Starts the check runners of `names`, their first runs spread ([`check::first_run_after`]).
    fn start_runners(&mut self, names: &[String]) {
        for (rank, name) in names.iter().enumerate() {
            let Some(svc) = self.services.get_mut(name) else {
                continue;
            };
            let cfg = svc.facts.cfg.clone();
            let Some(argv) = cfg.check.clone() else {
                continue;
            };
            let id = self.next_runner;
            self.next_runner += 1;
            svc.runner = Some(check::spawn_runner(
                &cfg,
                argv,
                id,
                svc.facts.admin.checks_stopped,
                check::first_run_after(rank),
                self.done_tx.clone(),
                self.processes.clone(),
            ));
        }
    }

    fn spawn_listener(&self, socket: Arc<Port>, name: &str, kind: ProbeKind, tap: Tap) -> Listener {
        let task = tokio::spawn(probe::serve(
            socket.clone(),
            Arc::from(name),
            kind,
            self.snap_tx.subscribe(),
            tap,
            self.in_flight.clone(),
            self.shutdown.clone(),
        ));
        Listener { socket, task }
    }
}

/// A service new to the running daemon: its saved state restored (see the module doc), or
/// its configured start state.
fn new_service(cfg: Arc<ServiceConfig>, saved: Option<&SavedService>, now: Micros) -> Svc {
    let mut admin = Admin::default();
    let mut health = HealthTracker::default();
    let mut last = None;
    if let Some(s) = saved {
        admin = s.admin.clone();
        if !cfg.pausable {
            admin.paused = None;
        }
        let max_age = (cfg.interval + cfg.timeout + RESTART_GRACE).as_micros() as u64;
        if let Some(r) = &s.last {
            let ended = r.time.saturating_add(r.duration_us);
            if s.check == cfg.check && now.saturating_sub(ended) < max_age {
                health = s.health;
                last = Some(r.clone());
            }
        }
    } else if cfg.start_paused {
        admin.paused = Some(Override::new("start_paused", "config", now, None));
    }
    Svc::new(Facts {
        probes: ProbeStats::new(&cfg.name),
        cfg,
        admin,
        health,
        last,
        checks: CheckCounts::default(),
        silent_since: None,
        flap: Flap::default(),
        unit: UnitFact::default(),
    })
}
