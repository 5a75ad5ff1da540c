//! The engine's front door: [`Handle`], cheap to clone, every method answered by the engine
//! task.

use super::outcome::{CheckRun, EngineError, Outcome};
use crate::view::Snapshot;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Who asked, for the record ("root", "alice", "uid 1234", "dbus:1.42").
pub type Actor = String;

pub(super) enum Op {
    Enable(String),
    /// The last field: `--force`, past the capacity guard.
    Disable(String, String, Option<Duration>, bool),
    Pause(Option<String>, String, Option<Duration>, bool),
    Resume(Option<String>),
    SetChecksStopped(String, bool),
    /// The application's unit is about to stop (`unit_stopping`), or has started again.
    UnitStopping(String),
    UnitStarted(String),
    Reload,
    Ping,
}

/// systemd's word on a unit (from [`crate::unit`]): its `ActiveState` and `SubState`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitReport {
    pub unit: String,
    pub active: String,
    pub sub: String,
}

pub(super) enum Request {
    Op(Op, Actor, oneshot::Sender<Result<Outcome, EngineError>>),
    Unit(UnitReport),
    RunCheck(String, oneshot::Sender<Result<CheckRun, EngineError>>),
}

#[derive(Clone)]
pub struct Handle {
    pub(super) tx: mpsc::Sender<Request>,
    pub(super) snap: watch::Receiver<Arc<Snapshot>>,
}

impl Handle {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snap.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snap.clone()
    }

    async fn op(&self, op: Op, actor: &str) -> Result<Outcome, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Op(op, actor.to_string(), tx))
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    pub async fn enable(&self, service: &str, actor: &str) -> Result<Outcome, EngineError> {
        self.op(Op::Enable(service.into()), actor).await
    }

    /// Guarded by the capacity guard ([`crate::capacity`]).
    pub async fn disable(
        &self,
        service: &str,
        reason: &str,
        for_: Option<Duration>,
        actor: &str,
    ) -> Result<Outcome, EngineError> {
        self.disable_with(service, reason, for_, false, actor).await
    }

    /// `force`: past the capacity guard (the audit line says so).
    pub async fn disable_with(
        &self,
        service: &str,
        reason: &str,
        for_: Option<Duration>,
        force: bool,
        actor: &str,
    ) -> Result<Outcome, EngineError> {
        self.op(
            Op::Disable(service.into(), reason.into(), for_, force),
            actor,
        )
        .await
    }

    /// `service` None: every pausable service. Guarded like [`Handle::disable`].
    pub async fn pause(
        &self,
        service: Option<&str>,
        reason: &str,
        for_: Option<Duration>,
        actor: &str,
    ) -> Result<Outcome, EngineError> {
        self.pause_with(service, reason, for_, false, actor).await
    }

    pub async fn pause_with(
        &self,
        service: Option<&str>,
        reason: &str,
        for_: Option<Duration>,
        force: bool,
        actor: &str,
    ) -> Result<Outcome, EngineError> {
        self.op(
            Op::Pause(service.map(Into::into), reason.into(), for_, force),
            actor,
        )
        .await
    }

    pub async fn resume(&self, service: Option<&str>, actor: &str) -> Result<Outcome, EngineError> {
        self.op(Op::Resume(service.map(Into::into)), actor).await
    }

    pub async fn set_checks_stopped(
        &self,
        service: &str,
        stopped: bool,
        actor: &str,
    ) -> Result<Outcome, EngineError> {
        self.op(Op::SetChecksStopped(service.into(), stopped), actor)
            .await
    }

    /// Every service that follows `unit` goes out until the unit has stopped and started again
    /// (or [`Handle::unit_started`]): what the drain unit's ExecStop says.
    pub async fn unit_stopping(&self, unit: &str, actor: &str) -> Result<Outcome, EngineError> {
        self.op(Op::UnitStopping(unit.into()), actor).await
    }

    pub async fn unit_started(&self, unit: &str, actor: &str) -> Result<Outcome, EngineError> {
        self.op(Op::UnitStarted(unit.into()), actor).await
    }

    /// What systemd reports of a unit; answered by nobody (the follower does not wait).
    pub async fn unit_report(&self, report: UnitReport) -> Result<(), EngineError> {
        self.tx
            .send(Request::Unit(report))
            .await
            .map_err(|_| EngineError::Stopped)
    }

    pub async fn reload(&self, actor: &str) -> Result<Outcome, EngineError> {
        self.op(Op::Reload, actor).await
    }

    /// Answered when the engine's loop is alive: the watchdog's proof of progress.
    pub async fn ping(&self) -> Result<Outcome, EngineError> {
        self.op(Op::Ping, "watchdog").await
    }

    /// Runs the service's check now (after a run in progress) and returns its result.
    pub async fn run_check(&self, service: &str) -> Result<CheckRun, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::RunCheck(service.into(), tx))
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }
}
