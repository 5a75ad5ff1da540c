//! The engine: the one task that owns every service's state.
//!
//! Everything that changes state — operators (Unix socket, D-Bus, signals), check runners,
//! expiry timers, reloads — reaches the engine as a message; after each change the engine
//! publishes an immutable [`Snapshot`] on a `watch` channel. Probe responders, `status`, the
//! D-Bus property bridge and sd_notify STATUS= read snapshots and never wait on the engine, so
//! a probe is never queued behind an operator command or a slow client.
//!
//! The engine also owns the listening sockets of the probe ports, because a reload must bind
//! the new configuration's ports *before* it replaces the old one: a configuration whose ports
//! cannot be bound is refused and the old one keeps serving.

use crate::check::{self, CheckDone, RunnerCmd, RunnerHandle};
use crate::config::{Config, ServiceConfig};
use crate::model::{
    derive_state, micros, Admin, CheckCounts, CheckResult, Expired, HealthTracker, Override,
    Refusal, State,
};
use crate::observer::{Observer, Silence};
use crate::probe;
use crate::probe_stats::{ProbeKind, ProbeStats, Seen, Tap};
use crate::sockets::Sockets;
use crate::state::{Saved, SavedService, Store};
use crate::systemd;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long check results may wait before they are written to the state file.
const HEALTH_FLUSH_DELAY: Duration = Duration::from_secs(1);
/// How long a check killed by SIGTERM from outside waits before it counts: when the whole
/// service is being stopped (a `KillMode=control-group` drop-in), the check dies at the same
/// moment as the daemon learns it is stopping, and may be seen first.
const STOP_SIGNAL_SETTLE: Duration = Duration::from_millis(300);

/// One service as everyone outside the engine sees it. Immutable; replaced on every change.
#[derive(Debug)]
pub struct ServiceView {
    pub cfg: Arc<ServiceConfig>,
    pub state: State,
    pub admin: Admin,
    pub health: HealthTracker,
    pub last: Option<CheckResult>,
    pub checks_count: u64,
    /// Why the service is in its state, in a few words ("Check failed: exit 1").
    pub reason: String,
    pub http_status: u16,
    /// `weight=NN%` from the last check's output while up: sent to HAProxy's agent-check.
    pub agent_weight: Option<u8>,
    /// Ready-made probe answers: the hot path only copies bytes.
    pub replies: probe::Replies,
    pub checks_by_result: CheckCounts,
    /// Probe counters and probers; live (atomics), shared with the service's listeners.
    pub probes: Arc<ProbeStats>,
    /// Silence alarm: µs of the last probe, when no probe came for too long.
    pub silent_since: Option<u64>,
}

/// Everything readers need, consistent at one instant.
#[derive(Debug)]
pub struct Snapshot {
    pub services: BTreeMap<String, Arc<ServiceView>>,
    pub pid: u32,
    pub started: u64,
    pub config_file: std::path::PathBuf,
    pub reloads: u64,
}

impl Snapshot {
    /// "3 services: 2 up, 1 disabled": sd_notify STATUS= and the first line of `status`.
    pub fn summary(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for v in self.services.values() {
            *counts.entry(v.state.as_str()).or_default() += 1;
        }
        let n = self.services.len();
        let parts: Vec<String> = counts.iter().map(|(s, c)| format!("{c} {s}")).collect();
        let silent: Vec<&str> = self
            .services
            .values()
            .filter(|v| v.silent_since.is_some())
            .map(|v| v.cfg.name.as_str())
            .collect();
        format!(
            "{n} service{}: {}{}",
            if n == 1 { "" } else { "s" },
            if parts.is_empty() {
                "none".to_string()
            } else {
                parts.join(", ")
            },
            if silent.is_empty() {
                String::new()
            } else {
                format!("; not probed any more: {}", silent.join(", "))
            }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("no pausable service is configured")]
    NothingPausable,
    #[error("reload refused, the running configuration stays: {0}")]
    Reload(String),
    #[error("the daemon is shutting down")]
    Stopped,
}

/// Who asked, for the record ("root", "alice", "uid 1234", "dbus:1.42").
pub type Actor = String;

enum Op {
    Enable(String),
    Disable(String, String, Option<Duration>),
    Pause(Option<String>, String, Option<Duration>),
    Resume(Option<String>),
    SetChecksStopped(String, bool),
    Reload,
    Ping,
}

enum Request {
    Op(Op, Actor, oneshot::Sender<Result<String, EngineError>>),
    RunCheck(String, oneshot::Sender<Result<CheckResult, EngineError>>),
}

/// The engine's front door. Cheap to clone; every method is answered by the engine task.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Request>,
    snap: watch::Receiver<Arc<Snapshot>>,
}

impl Handle {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snap.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snap.clone()
    }

    async fn op(&self, op: Op, actor: &str) -> Result<String, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Op(op, actor.to_string(), tx))
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    pub async fn enable(&self, service: &str, actor: &str) -> Result<String, EngineError> {
        self.op(Op::Enable(service.into()), actor).await
    }

    pub async fn disable(
        &self,
        service: &str,
        reason: &str,
        for_: Option<Duration>,
        actor: &str,
    ) -> Result<String, EngineError> {
        self.op(Op::Disable(service.into(), reason.into(), for_), actor)
            .await
    }

    /// `service` None: every pausable service.
    pub async fn pause(
        &self,
        service: Option<&str>,
        reason: &str,
        for_: Option<Duration>,
        actor: &str,
    ) -> Result<String, EngineError> {
        self.op(
            Op::Pause(service.map(Into::into), reason.into(), for_),
            actor,
        )
        .await
    }

    pub async fn resume(&self, service: Option<&str>, actor: &str) -> Result<String, EngineError> {
        self.op(Op::Resume(service.map(Into::into)), actor).await
    }

    pub async fn set_checks_stopped(
        &self,
        service: &str,
        stopped: bool,
        actor: &str,
    ) -> Result<String, EngineError> {
        self.op(Op::SetChecksStopped(service.into(), stopped), actor)
            .await
    }

    pub async fn reload(&self, actor: &str) -> Result<String, EngineError> {
        self.op(Op::Reload, actor).await
    }

    /// Answered when the engine's loop is alive: the watchdog's proof of progress.
    pub async fn ping(&self) -> Result<String, EngineError> {
        self.op(Op::Ping, "watchdog").await
    }

    /// Runs the service's check now (after a run in progress) and returns its result.
    pub async fn run_check(&self, service: &str) -> Result<CheckResult, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::RunCheck(service.into(), tx))
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }
}

/// A probe port's accept loop; aborted (closing the socket) when dropped.
struct Listener {
    socket: Arc<TcpListener>,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type ListenKey = (SocketAddr, ProbeKind);

struct Svc {
    cfg: Arc<ServiceConfig>,
    admin: Admin,
    health: HealthTracker,
    last: Option<CheckResult>,
    checks_count: u64,
    checks_by_result: CheckCounts,
    probes: Arc<ProbeStats>,
    silent_since: Option<u64>,
    runner: Option<RunnerHandle>,
    listeners: BTreeMap<ListenKey, Listener>,
    view: Arc<ServiceView>,
}

impl Svc {
    fn refresh_view(&mut self) {
        self.view = Arc::new(ServiceView {
            checks_by_result: self.checks_by_result,
            probes: self.probes.clone(),
            silent_since: self.silent_since,
            ..build_view(
                &self.cfg,
                &self.admin,
                &self.health,
                &self.last,
                self.checks_count,
                &self.probes,
            )
        });
    }

    fn saved(&self) -> SavedService {
        SavedService {
            admin: self.admin.clone(),
            health: self.health,
            last: self.last.clone(),
            check: self.cfg.check.clone(),
        }
    }
}

fn listen_keys(cfg: &ServiceConfig) -> Vec<ListenKey> {
    let mut keys = vec![(cfg.probe_addr(), ProbeKind::Http)];
    keys.extend(cfg.agent_addr().map(|a| (a, ProbeKind::Agent)));
    keys
}

fn build_view(
    cfg: &Arc<ServiceConfig>,
    admin: &Admin,
    health: &HealthTracker,
    last: &Option<CheckResult>,
    checks_count: u64,
    probes: &Arc<ProbeStats>,
) -> ServiceView {
    let state = derive_state(admin, health, cfg.check.is_some());
    let reason = reason_for(state, admin, last, cfg);
    let http_status = match state {
        State::Up => 200,
        State::Down => 500,
        State::Disabled => cfg.disabled_status,
        State::Paused => cfg.paused_status,
        State::Starting => 503,
    };
    // Parsed here, once per change, so that agent probes only copy bytes.
    let checked = cfg.check.is_some() && !admin.checks_stopped;
    let agent = probe::AgentExtra {
        passing: !checked || health.healthy == Some(true),
        weight: match last {
            Some(r) if checked && state == State::Up => probe::weight_from_output(&r.output),
            _ => None,
        },
    };
    ServiceView {
        replies: probe::Replies::with_agent(&cfg.name, state, http_status, &reason, agent),
        agent_weight: agent.weight,
        cfg: cfg.clone(),
        state,
        admin: admin.clone(),
        health: *health,
        last: last.clone(),
        checks_count,
        reason,
        http_status,
        checks_by_result: CheckCounts::default(),
        probes: probes.clone(),
        silent_since: None,
    }
}

fn reason_for(
    state: State,
    admin: &Admin,
    last: &Option<CheckResult>,
    cfg: &ServiceConfig,
) -> String {
    fn with_reason(word: &str, o: &Override) -> String {
        if o.reason.is_empty() {
            format!("{word} by {}", o.by)
        } else {
            format!("{word}: {}", o.reason)
        }
    }
    match state {
        State::Disabled => with_reason("Disabled", admin.disabled.as_ref().expect("disabled")),
        State::Paused => with_reason("Paused", admin.paused.as_ref().expect("paused")),
        State::Starting => "Starting: no check result yet".into(),
        State::Up if cfg.check.is_none() => "OK: no check configured".into(),
        State::Up if admin.checks_stopped => "OK: check stopped by an operator".into(),
        State::Up => "OK: check passed".into(),
        State::Down => match last {
            Some(r) if r.exit == crate::model::Exit::TimedOut => format!(
                "Check failed: timed out after {}s",
                cfg.timeout.as_secs_f64()
            ),
            Some(r) => format!("Check failed: {}", r.exit),
            None => "Check failed".into(),
        },
    }
}

pub struct Engine {
    cfg: Config,
    services: BTreeMap<String, Svc>,
    sockets: Sockets,
    store: Store,
    snap_tx: watch::Sender<Arc<Snapshot>>,
    done_tx: mpsc::UnboundedSender<CheckDone>,
    next_runner: u64,
    shutdown: CancellationToken,
    started: u64,
    reloads: u64,
    health_dirty: bool,
    /// Results killed by SIGTERM that have waited [`STOP_SIGNAL_SETTLE`]: (service, runner,
    /// time of the result).
    settled: std::collections::HashSet<(String, u64, u64)>,
    /// To the observer of probes ([`crate::observer`]), handed to every listener.
    seen_tx: mpsc::Sender<Seen>,
}

impl Engine {
    /// Restores saved state, binds every probe port, publishes the first snapshot and starts
    /// the probe responders and check runners. When this returns Ok, every port answers with
    /// the restored state: the caller may say READY=1.
    pub fn start(
        cfg: Config,
        sockets: Sockets,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(Handle, JoinHandle<()>)> {
        let store = Store::new(&cfg.general.state_dir);
        let saved = store.load();
        let started = micros(SystemTime::now());
        let placeholder = Arc::new(Snapshot {
            services: BTreeMap::new(),
            pid: std::process::id(),
            started,
            config_file: cfg.file.clone(),
            reloads: 0,
        });
        let (snap_tx, snap_rx) = watch::channel(placeholder);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (observer, seen_tx, silence_rx) = Observer::new(cfg.general.silence_min);
        tokio::spawn(observer.run(shutdown.clone()));
        let mut engine = Engine {
            cfg: Config {
                services: BTreeMap::new(),
                ..cfg.clone()
            },
            services: BTreeMap::new(),
            sockets,
            store,
            snap_tx,
            done_tx,
            next_runner: 1,
            shutdown,
            started,
            reloads: 0,
            health_dirty: false,
            settled: Default::default(),
            seen_tx,
        };
        engine
            .apply(cfg, Some(&saved))
            .map_err(anyhow::Error::msg)?;
        engine.sockets.warn_unused();
        let (tx, rx) = mpsc::channel(256);
        let handle = Handle { tx, snap: snap_rx };
        let task = tokio::spawn(engine.run(rx, done_rx, silence_rx));
        Ok((handle, task))
    }

    fn publish(&self) {
        let snap = Snapshot {
            services: self
                .services
                .iter()
                .map(|(n, s)| (n.clone(), s.view.clone()))
                .collect(),
            pid: std::process::id(),
            started: self.started,
            config_file: self.cfg.file.clone(),
            reloads: self.reloads,
        };
        let snap = Arc::new(snap);
        let old = self.snap_tx.send_replace(snap.clone());
        crate::logging::log_state_changes(&old, &snap);
    }

    fn persist(&mut self) {
        let saved = Saved {
            version: 1,
            services: self
                .services
                .iter()
                .map(|(n, s)| (n.clone(), s.saved()))
                .collect(),
        };
        if let Err(e) = self.store.save(&saved) {
            tracing::error!(path = %self.store.path().display(), "cannot save state: {e}");
        }
        self.health_dirty = false;
    }

    /// Makes `new` the running configuration: binds what is new (all or nothing), keeps the
    /// sockets, runners, health and manual state of services that stay, starts the rest.
    /// `saved` is the state file at start-up (None on reload: the live state is newer).
    fn apply(&mut self, new: Config, saved: Option<&Saved>) -> Result<String, String> {
        // Phase 1, fallible: bind every address the old configuration does not hold.
        let mut old_sockets: BTreeMap<ListenKey, Arc<TcpListener>> = BTreeMap::new();
        for svc in self.services.values() {
            for (k, l) in &svc.listeners {
                old_sockets.insert(*k, l.socket.clone());
            }
        }
        let mut fresh: BTreeMap<ListenKey, Arc<TcpListener>> = BTreeMap::new();
        for cfg in new.services.values() {
            for key in listen_keys(cfg) {
                if old_sockets.contains_key(&key) || fresh.contains_key(&key) {
                    continue;
                }
                let l = self.sockets.tcp(key.0).map_err(|e| {
                    format!(
                        "[{}] cannot listen on {} ({}): {e}",
                        cfg.name,
                        key.0,
                        key.1.as_str()
                    )
                })?;
                fresh.insert(key, Arc::new(l));
            }
        }

        // Phase 2, infallible: move services over.
        let now = micros(SystemTime::now());
        let mut old = std::mem::take(&mut self.services);
        let (mut added, mut kept) = (Vec::new(), 0usize);
        // Accept loops start only once the snapshot that knows their service is published:
        // connections already waiting (socket activation, restart) would otherwise meet a
        // snapshot without the service and be closed unanswered.
        let mut to_spawn: Vec<(String, ListenKey, Arc<TcpListener>)> = Vec::new();
        for (name, cfg) in &new.services {
            let cfg = Arc::new(cfg.clone());
            let prev = old.remove(name);
            let mut svc = match prev {
                Some(mut p) => {
                    kept += 1;
                    let same_check = p.cfg.check == cfg.check
                        && p.cfg.interval == cfg.interval
                        && p.cfg.timeout == cfg.timeout;
                    if !same_check {
                        p.runner = None;
                        p.health = HealthTracker::default();
                        p.last = None;
                    }
                    p.cfg = cfg.clone();
                    p
                }
                None => {
                    added.push(name.clone());
                    self.new_service(cfg.clone(), saved.and_then(|s| s.services.get(name)), now)
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
            if svc.runner.is_none() {
                svc.runner = cfg.check.clone().map(|argv| {
                    let id = self.next_runner;
                    self.next_runner += 1;
                    check::spawn_runner(
                        &cfg,
                        argv,
                        id,
                        svc.admin.checks_stopped,
                        self.done_tx.clone(),
                    )
                });
            }
            svc.refresh_view();
            self.services.insert(name.clone(), svc);
        }
        let removed: Vec<String> = old.keys().cloned().collect();
        // Sockets of removed services close now unless another service took them over.
        for name in &removed {
            tracing::info!(psentinel_service = %name, "service removed from the configuration");
        }
        drop(old);
        // [general] is what the daemon started with: sockets and paths are not moved live.
        self.cfg = Config {
            general: self.cfg.general.clone(),
            ..new
        };
        self.publish();
        for (name, key, socket) in to_spawn {
            let Some(probes) = self.services.get(&name).map(|s| s.probes.clone()) else {
                continue;
            };
            let tap = Tap::new(probes, self.seen_tx.clone());
            let listener = self.spawn_listener(socket, &name, key.1, tap);
            if let Some(svc) = self.services.get_mut(&name) {
                svc.listeners.insert(key, listener);
            }
        }
        self.persist();
        Ok(format!(
            "{} services ({} kept, added: [{}], removed: [{}])",
            self.services.len(),
            kept,
            added.join(", "),
            removed.join(", ")
        ))
    }

    fn new_service(&self, cfg: Arc<ServiceConfig>, saved: Option<&SavedService>, now: u64) -> Svc {
        let mut admin = Admin::default();
        let mut health = HealthTracker::default();
        let mut last = None;
        if let Some(s) = saved {
            admin = s.admin.clone();
            if !cfg.pausable {
                admin.paused = None;
            }
            // A result is trusted while younger than interval + timeout, and only for the same
            // check command: then a restart does not flap a node that was up (or down).
            let max_age = (cfg.interval + cfg.timeout).as_micros() as u64;
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
        let probes = ProbeStats::new(&cfg.name);
        let view = Arc::new(build_view(&cfg, &admin, &health, &last, 0, &probes));
        Svc {
            cfg,
            admin,
            health,
            last,
            checks_count: 0,
            checks_by_result: CheckCounts::default(),
            probes,
            silent_since: None,
            runner: None,
            listeners: BTreeMap::new(),
            view,
        }
    }

    fn spawn_listener(
        &self,
        socket: Arc<TcpListener>,
        name: &str,
        kind: ProbeKind,
        tap: Tap,
    ) -> Listener {
        let task = tokio::spawn(probe::serve(
            socket.clone(),
            Arc::from(name),
            kind,
            self.snap_tx.subscribe(),
            tap,
            self.shutdown.clone(),
        ));
        Listener { socket, task }
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        mut done_rx: mpsc::UnboundedReceiver<CheckDone>,
        mut silence_rx: mpsc::UnboundedReceiver<Silence>,
    ) {
        let mut flush_at: Option<tokio::time::Instant> = None;
        loop {
            let expiry = self.next_expiry();
            tokio::select! {
                // Stopping comes first: a check that ended meanwhile was most likely killed by
                // the stop itself, and is not a result.
                biased;
                _ = self.shutdown.cancelled() => break,
                req = rx.recv() => match req {
                    Some(req) => self.handle(req),
                    None => break,
                },
                Some(done) = done_rx.recv() => {
                    self.on_check_done(done);
                    if self.health_dirty && flush_at.is_none() {
                        flush_at = Some(tokio::time::Instant::now() + HEALTH_FLUSH_DELAY);
                    }
                }
                Some(s) = silence_rx.recv() => self.on_silence(s),
                _ = sleep_until_opt(expiry) => self.expire(),
                _ = sleep_until_opt(flush_at) => {
                    flush_at = None;
                    if self.health_dirty {
                        self.persist();
                    }
                }
            }
            if !self.health_dirty {
                flush_at = None;
            }
        }
        // Stop the checks (runners abort and kill their groups), keep the latest results.
        for svc in self.services.values_mut() {
            svc.runner = None;
        }
        self.persist();
    }

    fn next_expiry(&self) -> Option<tokio::time::Instant> {
        let next = self
            .services
            .values()
            .filter_map(|s| s.admin.next_expiry())
            .min()?;
        let now = micros(SystemTime::now());
        Some(tokio::time::Instant::now() + Duration::from_micros(next.saturating_sub(now)))
    }

    fn expire(&mut self) {
        let now = micros(SystemTime::now());
        let mut changed = false;
        for (name, svc) in self.services.iter_mut() {
            let lifted = svc.admin.expire(now);
            for what in &lifted {
                let what = match what {
                    Expired::Disable => "disable",
                    Expired::Pause => "pause",
                };
                tracing::info!(
                    psentinel_service = %name,
                    psentinel_actor = "expiry",
                    "the timed {what} of {name} ran out; lifted"
                );
            }
            if !lifted.is_empty() {
                svc.refresh_view();
                changed = true;
            }
        }
        if changed {
            self.after_admin_change();
        }
    }

    /// The silence alarm changed (see [`crate::observer`]): shown in status and STATUS=.
    fn on_silence(&mut self, s: Silence) {
        if let Some(svc) = self.services.get_mut(&s.service) {
            svc.silent_since = s.since;
            svc.refresh_view();
            self.publish();
        }
    }

    fn on_check_done(&mut self, done: CheckDone) {
        let Some(svc) = self.services.get_mut(&done.service) else {
            return;
        };
        if svc.runner.as_ref().map(|r| r.id) != Some(done.runner) {
            return; // a runner replaced by a reload finished late
        }
        if self.shutdown.is_cancelled() {
            // The daemon is stopping and kills its checks: what they report now is the stop,
            // not the service. Never recorded, saved or shown.
            return;
        }
        // psentinel never sends SIGTERM to a check itself before a timeout (reported as
        // such): one killed by it was most likely killed by the stop of the whole service.
        // Counted only if the daemon is still running a moment later.
        if done.result.exit == crate::model::Exit::Signal(libc::SIGTERM) {
            let key = (done.service.clone(), done.runner, done.result.time);
            if !self.settled.remove(&key) {
                self.settled.insert(key);
                let tx = self.done_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(STOP_SIGNAL_SETTLE).await;
                    let _ = tx.send(done);
                });
                return;
            }
        }
        let passed = done.result.exit.passed();
        svc.health.observe(passed, svc.cfg.rise, svc.cfg.fall);
        let exit = done.result.exit.clone();
        svc.last = Some(done.result);
        svc.checks_count += 1;
        svc.checks_by_result.add(&exit);
        svc.refresh_view();
        // A change of state is logged by publish() (logging::log_state_changes).
        tracing::debug!(
            psentinel_service = %done.service,
            "{}: check finished: {exit}",
            done.service
        );
        self.health_dirty = true;
        self.publish();
    }

    fn after_admin_change(&mut self) {
        self.publish();
        self.persist();
    }

    fn handle(&mut self, req: Request) {
        match req {
            Request::RunCheck(name, reply) => match self.services.get(&name) {
                None => {
                    let _ = reply.send(Err(Refusal::UnknownService(name).into()));
                }
                Some(svc) => match &svc.runner {
                    Some(r) => {
                        // The runner answers `test` directly; the engine stays free.
                        let (tx, rx) = oneshot::channel();
                        r.send(RunnerCmd::RunNow(tx));
                        tokio::spawn(async move {
                            let res = rx.await.map_err(|_| EngineError::Stopped);
                            let _ = reply.send(res);
                        });
                    }
                    None => {
                        let _ = reply.send(Ok(CheckResult {
                            exit: crate::model::Exit::Code(0),
                            time: micros(SystemTime::now()),
                            duration_us: 0,
                            output: "no check_script configured: the service counts as passing"
                                .into(),
                        }));
                    }
                },
            },
            Request::Op(op, actor, reply) => {
                let res = self.op(op, &actor);
                // The asker may have gone (client hung up): the change stands all the same.
                let _ = reply.send(res);
            }
        }
    }

    fn svc_mut(&mut self, name: &str) -> Result<&mut Svc, EngineError> {
        self.services
            .get_mut(name)
            .ok_or_else(|| Refusal::UnknownService(name.into()).into())
    }

    /// Names of the services a pause/run acts on: the one named (which must be pausable), or
    /// every pausable one.
    fn pausable_targets(&self, name: Option<&str>) -> Result<Vec<String>, EngineError> {
        match name {
            Some(n) => {
                let svc = self
                    .services
                    .get(n)
                    .ok_or_else(|| Refusal::UnknownService(n.into()))?;
                if !svc.cfg.pausable {
                    return Err(Refusal::NotPausable(n.into()).into());
                }
                Ok(vec![n.into()])
            }
            None => {
                let all: Vec<String> = self
                    .services
                    .values()
                    .filter(|s| s.cfg.pausable)
                    .map(|s| s.cfg.name.clone())
                    .collect();
                if all.is_empty() {
                    Err(EngineError::NothingPausable)
                } else {
                    Ok(all)
                }
            }
        }
    }

    fn op(&mut self, op: Op, actor: &str) -> Result<String, EngineError> {
        let now = micros(SystemTime::now());
        let msg = match op {
            Op::Ping => return Ok("pong".into()),
            Op::Reload => {
                systemd::notify_reloading();
                let res = Config::load(&self.cfg.file)
                    .map_err(|e| e.to_string())
                    .and_then(|c| {
                        if c.general != self.cfg.general {
                            tracing::warn!(
                                "[general] changed in {}: it takes effect at the next restart",
                                c.file.display()
                            );
                        }
                        self.apply(c, None)
                    });
                systemd::notify_ready();
                return match res {
                    Ok(msg) => {
                        self.reloads += 1;
                        self.publish();
                        crate::last_good::remember(&self.cfg);
                        systemd::set_note(systemd::Note::LastGood, None);
                        systemd::set_note(systemd::Note::ReloadRefused, None);
                        tracing::info!(psentinel_actor = actor, "configuration reloaded: {msg}");
                        Ok(format!("reloaded: {msg}"))
                    }
                    Err(e) => {
                        tracing::error!(
                            psentinel_actor = actor,
                            "reload refused, keeping the running configuration: {e}"
                        );
                        systemd::set_note(
                            systemd::Note::ReloadRefused,
                            Some(format!("reload refused: {e}")),
                        );
                        Err(EngineError::Reload(e))
                    }
                };
            }
            Op::Enable(name) => {
                let svc = self.svc_mut(&name)?;
                let was = svc.admin.enable();
                svc.refresh_view();
                audit(&name, actor, "enable", "", 0);
                if was {
                    format!("{name} enabled")
                } else {
                    format!("{name} was not disabled; nothing to do")
                }
            }
            Op::Disable(name, reason, for_) => {
                let svc = self.svc_mut(&name)?;
                let ovr = Override::new(&reason, actor, now, for_);
                let until = ovr.until;
                svc.admin.disable(ovr);
                svc.refresh_view();
                audit(&name, actor, "disable", &reason, until);
                format!("{name} disabled{}", until_text(until))
            }
            Op::Pause(name, reason, for_) => {
                let targets = self.pausable_targets(name.as_deref())?;
                let ovr = Override::new(&reason, actor, now, for_);
                let until = ovr.until;
                for n in &targets {
                    let svc = self.svc_mut(n)?;
                    svc.admin.pause(true, n, ovr.clone())?;
                    svc.refresh_view();
                    audit(n, actor, "pause", &reason, until);
                }
                format!("paused: {}{}", targets.join(", "), until_text(until))
            }
            Op::Resume(name) => {
                let targets = self.pausable_targets(name.as_deref())?;
                for n in &targets {
                    let svc = self.svc_mut(n)?;
                    svc.admin.resume(true, n)?;
                    svc.refresh_view();
                    audit(n, actor, "run", "", 0);
                }
                format!("running: {}", targets.join(", "))
            }
            Op::SetChecksStopped(name, stopped) => {
                let svc = self.svc_mut(&name)?;
                svc.admin.checks_stopped = stopped;
                if let Some(r) = &svc.runner {
                    r.send(RunnerCmd::SetStopped(stopped));
                }
                svc.refresh_view();
                let what = if stopped {
                    "disable_test"
                } else {
                    "enable_test"
                };
                audit(&name, actor, what, "", 0);
                if stopped {
                    format!("{name}: check stopped; the service counts as passing")
                } else {
                    format!("{name}: check restarted")
                }
            }
        };
        self.after_admin_change();
        Ok(msg)
    }
}

fn until_text(until: u64) -> String {
    if until == 0 {
        String::new()
    } else {
        format!(
            " until {}",
            humantime::format_rfc3339_seconds(crate::model::from_micros(until))
        )
    }
}

/// One log line per manual change, with who, what, why and until when.
fn audit(service: &str, actor: &str, what: &str, reason: &str, until: u64) {
    tracing::info!(
        psentinel_service = service,
        psentinel_actor = actor,
        psentinel_reason = reason,
        psentinel_until = until,
        "{actor}: {what} {service}{}{}",
        if reason.is_empty() {
            String::new()
        } else {
            format!(" ({reason})")
        },
        until_text(until)
    );
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
