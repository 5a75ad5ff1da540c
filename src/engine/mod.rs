//! The engine: the one task that owns every service's state.
//!
//! Everything that changes state — operators (Unix socket, D-Bus, signals), check runners,
//! expiry timers, reloads — reaches the engine as a message; after each change the engine
//! publishes an immutable [`Snapshot`] on a `watch` channel. Probe responders, `status`, the
//! D-Bus property bridge and sd_notify STATUS= read snapshots ([`crate::view`]) and never wait
//! on the engine, so a probe is never queued behind an operator command or a slow client.
//!
//! The engine also owns the listening sockets of the probe ports, because a reload must bind
//! the new configuration's ports *before* it replaces the old one: a configuration whose ports
//! cannot be bound is refused and the old one keeps serving (`apply.rs`).
//!
//! Operations answer with typed [`Outcome`]s; the control socket and D-Bus put them into their
//! own words. The engine's only prose is its journal lines.
//!
//! Parts: `handle.rs` (the front door), `outcome.rs` (answers), `apply.rs` (configuration,
//! listeners, what a restart restores), `ops.rs` (operator commands and their audit lines),
//! `save.rs` (the state file), `clock.rs` (the engine's time).

mod apply;
mod clock;
mod handle;
mod ops;
mod outcome;
mod save;
#[cfg(test)]
mod tests;

pub use handle::{Actor, Handle, UnitReport};
pub use outcome::{CheckRun, EngineError, Outcome, ReloadRefused, Reloaded};

use crate::check::{CheckDone, Processes, RunnerCmd, RunnerHandle};
use crate::config::Config;
use crate::model::Refusal;
use crate::model::{Exit, Expired};
use crate::observer::{Observer, Silence};
use crate::plugin::Verdict;
use crate::probe_stats::Seen;
use crate::sockets::Sockets;
#[cfg(test)]
use crate::state::SavedService;
use crate::state::Store;
use crate::systemd::Notes;
use crate::view::{Facts, ServiceView, Services, Snapshot};
use apply::{ListenKey, Listener};
use clock::Clock;
use handle::Request;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long check results may wait before they are written to the state file. The first
/// result of each service after a start, and every change of health, are written at once:
/// a daemon killed right after them must not come back with an older verdict.
const HEALTH_FLUSH_DELAY: Duration = Duration::from_secs(1);
/// After the application's unit has started, its check runs again this soon after each
/// result until it passes (for at most [`AFTER_START_WINDOW`]): a `Type=simple` application is
/// "active" before it listens, and its first check may well fail.
const AFTER_START_RECHECK: Duration = Duration::from_millis(250);
/// How long the quick re-runs after a start last at most: a minute (`--wait`'s default
/// timeout: `unit_started --wait` waits for them), or the check's interval when longer.
const AFTER_START_WINDOW: Duration = Duration::from_secs(60);
/// How long a check killed by SIGTERM from outside waits before it counts: when the whole
/// service is being stopped (a `KillMode=control-group` drop-in), the check dies at the same
/// moment as the daemon learns it is stopping, and may be seen first.
const STOP_SIGNAL_SETTLE: Duration = Duration::from_millis(300);
/// At most this many check results are recorded before the loop publishes them and looks at
/// requests again: recording one is cheap, publishing is a copy of every service.
const RESULTS_PER_TURN: usize = 1024;

/// One service as the engine holds it.
struct Svc {
    facts: Facts,
    runner: Option<RunnerHandle>,
    listeners: BTreeMap<ListenKey, Listener>,
    /// Derived from `facts`; rebuilt after each change (readers compare views by pointer).
    view: Arc<ServiceView>,
    /// Until when the check reruns quickly after the application's unit started.
    recheck_until: Option<tokio::time::Instant>,
}

impl Svc {
    fn new(facts: Facts) -> Svc {
        Svc {
            view: Arc::new(ServiceView::new(&facts)),
            facts,
            runner: None,
            listeners: BTreeMap::new(),
            recheck_until: None,
        }
    }

    /// The application has just started: what its check said before the stop says nothing
    /// now. Out (`starting`) until a check passes; checked at once, and again quickly.
    fn app_started(&mut self) {
        self.facts.health = crate::model::HealthTracker::default();
        self.refresh_view();
        self.recheck_until = None;
        self.recheck_soon();
    }

    /// Checks at once, and again [`AFTER_START_RECHECK`] after each result until one passes
    /// (within [`AFTER_START_WINDOW`]); nothing more while such re-runs are under way.
    fn recheck_soon(&mut self) {
        if self.recheck_until.is_some() {
            return;
        }
        if let Some(r) = &self.runner {
            let (tx, _) = oneshot::channel();
            r.send(RunnerCmd::RunNow(tx));
            let window = self.facts.cfg.interval.max(AFTER_START_WINDOW);
            self.recheck_until = Some(tokio::time::Instant::now() + window);
        }
    }

    fn refresh_view(&mut self) {
        self.view = Arc::new(ServiceView::new(&self.facts));
    }

    /// What the state file keeps of this service; written from its view instead
    /// (`save::SavedViews`), which tests compare with this.
    #[cfg(test)]
    fn saved(&self) -> SavedService {
        SavedService {
            admin: self.facts.admin.clone(),
            health: self.facts.health,
            last: self.facts.last.clone(),
            check: self.facts.cfg.check.clone(),
        }
    }
}

/// What the engine borrows from the daemon that runs it.
pub struct Parts {
    pub sockets: Sockets,
    /// The daemon's record of check processes (see [`crate::check`]).
    pub processes: Processes,
    /// Probe connections being answered: shutdown waits for them.
    pub in_flight: TaskTracker,
    /// What STATUS= says besides the summary (a refused reload).
    pub notes: Notes,
    pub shutdown: CancellationToken,
}

/// What the engine's loop listens to besides requests, and the snapshots it publishes.
struct Inbox {
    snap: watch::Receiver<Arc<Snapshot>>,
    done: mpsc::UnboundedReceiver<CheckDone>,
    silence: mpsc::UnboundedReceiver<Silence>,
    saved: mpsc::UnboundedReceiver<save::Verdict>,
}

pub struct Engine {
    cfg: Config,
    services: BTreeMap<String, Svc>,
    /// `services`' names, shared by every snapshot until the next reload ([`Services`]).
    names: Arc<[String]>,
    /// Something may have moved the next timed expiry; a check result moves it only when it
    /// changes a service's flap record, so a stream of results does not look at every service.
    expiry_stale: bool,
    sockets: Sockets,
    /// The state file ([`save::Saver`]).
    saver: save::Saver,
    snap_tx: watch::Sender<Arc<Snapshot>>,
    done_tx: mpsc::UnboundedSender<CheckDone>,
    next_runner: u64,
    processes: Processes,
    in_flight: TaskTracker,
    notes: Notes,
    shutdown: CancellationToken,
    clock: Clock,
    reloads: u64,
    /// To the observer of probes ([`crate::observer`]), handed to every listener.
    seen_tx: mpsc::Sender<Seen>,
}

impl Engine {
    /// Restores saved state, binds every probe port, publishes the first snapshot and starts
    /// the probe responders and check runners. When this returns Ok, every port answers with
    /// the restored state: the caller may say READY=1.
    pub fn start(cfg: Config, parts: Parts) -> Result<(Handle, JoinHandle<()>), ReloadRefused> {
        let (engine, inbox) = Engine::new(cfg, parts)?;
        let (tx, rx) = mpsc::channel(256);
        let handle = Handle {
            tx,
            snap: inbox.snap,
        };
        let task = tokio::spawn(engine.run(rx, inbox.done, inbox.silence, inbox.saved));
        Ok((handle, task))
    }

    /// The engine with its configuration applied, before its loop runs.
    fn new(cfg: Config, parts: Parts) -> Result<(Engine, Inbox), ReloadRefused> {
        let store = Store::new(&cfg.general.state_dir);
        let saved = store.load();
        let clock = Clock::start();
        let placeholder = Arc::new(Snapshot {
            services: Services::default(),
            pid: std::process::id(),
            started: clock.wall0,
            config_file: cfg.file.clone(),
            config_fragments: cfg.fragments.clone(),
            reloads: 0,
            unsaved: None,
        });
        let (snap_tx, snap_rx) = watch::channel(placeholder);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (saver, saved_rx) = save::Saver::new(store);
        let (observer, seen_tx, silence_rx) = Observer::new(cfg.general.silence_min);
        // Tracked with the probe connections: it holds answered ones until their probers close.
        parts.in_flight.spawn(observer.run(parts.shutdown.clone()));
        let mut engine = Engine {
            cfg: Config {
                services: BTreeMap::new(),
                ..cfg.clone()
            },
            services: BTreeMap::new(),
            names: Arc::from([]),
            expiry_stale: true,
            sockets: parts.sockets,
            saver,
            snap_tx,
            done_tx,
            next_runner: 1,
            processes: parts.processes,
            in_flight: parts.in_flight,
            notes: parts.notes,
            shutdown: parts.shutdown,
            clock,
            reloads: 0,
            seen_tx,
        };
        engine.apply(cfg, Some(&saved))?;
        engine.sockets.warn_unused();
        let inbox = Inbox {
            snap: snap_rx,
            done: done_rx,
            silence: silence_rx,
            saved: saved_rx,
        };
        Ok((engine, inbox))
    }

    /// Every service's current view, under the shared names.
    fn views(&self) -> Services {
        Services::new(
            self.names.clone(),
            self.services.values().map(|s| s.view.clone()).collect(),
        )
    }

    fn publish(&self) {
        let snap = Snapshot {
            services: self.views(),
            pid: std::process::id(),
            started: self.clock.wall0,
            config_file: self.cfg.file.clone(),
            config_fragments: self.cfg.fragments.clone(),
            reloads: self.reloads,
            unsaved: self.saver.failure().cloned(),
        };
        let snap = Arc::new(snap);
        let old = self.snap_tx.send_replace(snap.clone());
        crate::logging::log_state_changes(&old, &snap);
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        mut done_rx: mpsc::UnboundedReceiver<CheckDone>,
        mut silence_rx: mpsc::UnboundedReceiver<Silence>,
        mut saved_rx: mpsc::UnboundedReceiver<save::Verdict>,
    ) {
        let mut flush_at: Option<tokio::time::Instant> = None;
        let mut expiry = None;
        loop {
            if std::mem::take(&mut self.expiry_stale) {
                expiry = self.next_expiry();
            }
            // Requests and expiry may move it; check results say so themselves.
            let mut stale = false;
            let retry_at = self.saver.retry_at();
            tokio::select! {
                // Stopping comes first: a check that ended meanwhile was most likely killed by
                // the stop itself, and is not a result.
                biased;
                _ = self.shutdown.cancelled() => break,
                req = rx.recv() => match req {
                    Some(req) => {
                        self.handle(req);
                        stale = true;
                    }
                    None => break,
                },
                Some(done) = done_rx.recv() => {
                    // Results that came in together (a thousand checks started at once) are
                    // taken in one go: one snapshot and one state-file write for the lot, not
                    // one of each per result, each of them a copy of every service.
                    let mut save = self.record_check_done(done);
                    for _ in 1..RESULTS_PER_TURN {
                        let Ok(done) = done_rx.try_recv() else { break };
                        save |= self.record_check_done(done);
                    }
                    self.publish();
                    if save {
                        self.persist_soon();
                    } else if self.saver.health_dirty() && flush_at.is_none() {
                        flush_at = Some(tokio::time::Instant::now() + HEALTH_FLUSH_DELAY);
                    }
                }
                Some(s) = silence_rx.recv() => self.on_silence(s),
                _ = sleep_until_opt(expiry) => {
                    self.expire();
                    stale = true;
                }
                Some(v) = saved_rx.recv() => self.on_saved(v),
                // Its turn has come: the write starts (and `write_due` is cleared).
                _ = sleep_until_opt(self.saver.write_due()) => self.persist_soon(),
                _ = sleep_until_opt(flush_at) => {
                    flush_at = None;
                    if self.saver.health_dirty() {
                        self.persist_soon();
                    }
                }
                // Any request or result meanwhile tried to save too: the wait restarts from
                // there, which is still a retry at least every SAVE_RETRY_MAX.
                _ = sleep_until_opt(retry_at) => {
                    if !self.persist() {
                        self.saver.back_off();
                    }
                }
            }
            if !self.saver.health_dirty() {
                flush_at = None;
            }
            self.expiry_stale |= stale;
        }
        // Stop the checks (runners abort and kill their groups), keep the latest results.
        for svc in self.services.values_mut() {
            svc.runner = None;
        }
        self.persist();
    }

    /// The next timed override to lift or flap hold to end.
    fn next_expiry(&self) -> Option<tokio::time::Instant> {
        let next = self
            .services
            .values()
            .flat_map(|s| {
                let flap = s.facts.flap.release_at(&s.facts.cfg.flap);
                [s.facts.admin.next_expiry(), flap]
            })
            .flatten()
            .min()?;
        Some(self.clock.instant_at(next))
    }

    fn expire(&mut self) {
        let now = self.clock.now();
        let mut changed = false;
        let mut flap_released = false;
        for (name, svc) in self.services.iter_mut() {
            let lifted = svc.facts.admin.expire(now);
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
            let policy = svc.facts.cfg.flap;
            if svc.facts.flap.release(now, &policy) {
                tracing::info!(
                    psentinel_service = %name,
                    psentinel_flapping = false,
                    "{name}: stable for {}s; no longer held out for flapping",
                    policy.hold.as_secs_f64()
                );
                svc.refresh_view();
                flap_released = true;
            }
        }
        if changed {
            self.after_admin_change();
        } else if flap_released {
            self.publish();
        }
    }

    /// The silence alarm changed (see [`crate::observer`]): shown in status and STATUS=.
    fn on_silence(&mut self, s: Silence) {
        if let Some(svc) = self.services.get_mut(&s.service) {
            svc.facts.silent_since = s.since;
            svc.refresh_view();
            self.publish();
        }
    }

    /// Records a finished check; true when it must be saved at once (the service's first
    /// result since the start, or its health changed), else it waits for the next flush.
    /// [`Engine::record_check_done`], then publishes (the loop does both for a batch).
    #[cfg(test)]
    fn on_check_done(&mut self, done: CheckDone) -> bool {
        let save = self.record_check_done(done);
        self.publish();
        save
    }

    /// Records a finished run without publishing it; true when the state file must be
    /// written (the first result, or a change of health).
    fn record_check_done(&mut self, mut done: CheckDone) -> bool {
        let Some(svc) = self.services.get_mut(&done.service) else {
            return false;
        };
        if svc.runner.as_ref().map(|r| r.id) != Some(done.runner) {
            return false; // a runner replaced by a reload finished late
        }
        if self.shutdown.is_cancelled() {
            // The daemon is stopping and kills its checks: what they report now is the stop,
            // not the service. Never recorded, saved or shown.
            return false;
        }
        // psentinel never sends SIGTERM to a check itself before a timeout (reported as
        // such): one killed by it was most likely killed by the stop of the whole service.
        // Counted only if the daemon is still running a moment later.
        if done.result.exit == Exit::Signal(libc::SIGTERM) && !done.settled {
            done.settled = true;
            let tx = self.done_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(STOP_SIGNAL_SETTLE).await;
                let _ = tx.send(done);
            });
            return false;
        }
        let cfg = svc.facts.cfg.clone();
        let verdict = Verdict::of(cfg.check_style, &done.result.exit);
        let before = svc.facts.health.healthy;
        let first = svc.facts.checks.total() == 0;
        let changed = svc
            .facts
            .health
            .observe_verdict(verdict, cfg.rise, cfg.fall);
        // The first result after start-up is not a change of health.
        if changed && before.is_some() {
            let now = self.clock.now();
            self.expiry_stale = true;
            if svc.facts.flap.change(now, &cfg.flap) {
                tracing::warn!(
                    psentinel_service = %done.service,
                    psentinel_flapping = true,
                    "{}: flapping: health changed more than {} times within {}s; held out until stable for {}s",
                    done.service,
                    cfg.flap.max_changes,
                    cfg.flap.window.as_secs_f64(),
                    cfg.flap.hold.as_secs_f64()
                );
            }
        }
        let exit = done.result.exit.clone();
        if let (Some(until), Some(r)) = (svc.recheck_until, &svc.runner) {
            if svc.facts.health.healthy == Some(true) || tokio::time::Instant::now() >= until {
                svc.recheck_until = None;
            } else {
                r.send(RunnerCmd::Soon(AFTER_START_RECHECK));
            }
        }
        svc.facts.last = Some(done.result);
        svc.facts.checks.add(&exit, verdict);
        svc.refresh_view();
        // A change of state is logged by publish() (logging::log_state_changes).
        tracing::debug!(psentinel_service = %done.service, "{}: check finished: {exit}", done.service);
        self.saver.set_health_dirty();
        first || changed
    }

    /// Saves first, so that the snapshot published says whether the change is saved.
    fn after_admin_change(&mut self) {
        self.persist();
        self.publish();
    }

    /// systemd reports a unit's state: its services go out (a crash, a stop) or come back.
    /// A service that comes back runs its check at once: its last result may date from
    /// before the stop.
    fn on_unit(&mut self, r: UnitReport) {
        let mut changed = false;
        for (name, svc) in self.services.iter_mut() {
            if svc.facts.cfg.unit.as_deref() != Some(r.unit.as_str()) {
                continue;
            }
            let before = svc.facts.unit.clone();
            let moved = svc.facts.unit.observe(&r.active, &r.sub);
            if svc.facts.unit == before {
                continue;
            }
            changed = true;
            svc.refresh_view();
            if moved {
                tracing::info!(
                    psentinel_service = %name,
                    psentinel_unit = %r.unit,
                    "{name}: unit {} is {} ({}): {}",
                    r.unit,
                    r.active,
                    r.sub,
                    if svc.facts.unit.out() { "out" } else { "back, checking now" }
                );
                if !svc.facts.unit.out() {
                    svc.app_started();
                }
            }
        }
        if changed {
            self.publish();
        }
    }

    fn handle(&mut self, req: Request) {
        match req {
            Request::RunCheck(name, reply) => self.run_check(name, reply),
            Request::Unit(report) => self.on_unit(report),
            Request::Op(op, actor, reply) => {
                let res = self.op(op, &actor);
                // The asker may have gone (client hung up): the change stands all the same.
                let _ = reply.send(res);
            }
        }
    }

    fn run_check(&mut self, name: String, reply: oneshot::Sender<Result<CheckRun, EngineError>>) {
        let Some(svc) = self.services.get(&name) else {
            let _ = reply.send(Err(Refusal::UnknownService(name).into()));
            return;
        };
        match &svc.runner {
            Some(r) => {
                // The runner answers `test` directly; the engine stays free.
                let (tx, rx) = oneshot::channel();
                r.send(RunnerCmd::RunNow(tx));
                tokio::spawn(async move {
                    let res = rx
                        .await
                        .map(CheckRun::Ran)
                        .map_err(|_| EngineError::Stopped);
                    let _ = reply.send(res);
                });
            }
            None => {
                let _ = reply.send(Ok(CheckRun::NoCheck));
            }
        }
    }

    fn svc_mut(&mut self, name: &str) -> Result<&mut Svc, EngineError> {
        self.services
            .get_mut(name)
            .ok_or_else(|| Refusal::UnknownService(name.into()).into())
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
