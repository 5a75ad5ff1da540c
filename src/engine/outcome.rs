//! What engine operations answer: typed outcomes, put into words by whoever asked (the
//! control socket, D-Bus), and typed refusals.

use crate::capacity::{Remaining, Shortfall};
use crate::model::{CheckResult, Micros, Override, Refusal};
use crate::probe_stats::ProbeKind;
use crate::view::{count, SaveFailure};
use std::net::SocketAddr;

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `was_disabled` false: there was no disable to lift.
    Enabled {
        service: String,
        was_disabled: bool,
    },
    /// `replaced`: the disable this one took the place of (its reason, who, since, until).
    /// `forced`: what `--force` took it out past (empty: the guard had nothing against it).
    Disabled {
        service: String,
        until: Option<Micros>,
        replaced: Option<Override>,
        forced: Vec<Remaining>,
    },
    /// `replaced`: the pauses this one took the place of, by service.
    Paused {
        services: Vec<String>,
        until: Option<Micros>,
        replaced: Vec<(String, Override)>,
        forced: Vec<Remaining>,
    },
    Resumed {
        services: Vec<String>,
    },
    /// `disable_test`: the check no longer runs; the service counts as passing.
    ChecksStopped {
        service: String,
    },
    /// `enable_test`: the check runs again.
    ChecksRestarted {
        service: String,
    },
    /// `unit_stopping`: the services that follow `unit` are out until it is back.
    UnitStopping {
        unit: String,
        services: Vec<String>,
    },
    /// `unit_started`: the announced stop is over; the services answer from the unit's
    /// state and their checks again.
    UnitStarted {
        unit: String,
        services: Vec<String>,
    },
    Reloaded(Reloaded),
    Pong,
}

/// What `test` (D-Bus `RunCheck`) got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckRun {
    Ran(CheckResult),
    /// No check_script is configured: the service counts as passing.
    NoCheck,
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Services in the new configuration.
    pub services: usize,
    /// Services that were there before and stay (with their manual state and results).
    pub kept: usize,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Kept services whose check command changed: their results were dropped.
    pub check_changed: Vec<String>,
    /// `[general]` keys whose value changed in the file: they take effect at the next restart.
    pub pending_restart: Vec<&'static str>,
}

impl Reloaded {
    /// "2 services (1 kept, added: [b], removed: [c])": the journal line and the control
    /// socket's answer say the same.
    pub fn summary(&self) -> String {
        format!(
            "{} ({} kept, added: [{}], removed: [{}])",
            count(self.services as u64, "service"),
            self.kept,
            self.added.join(", "),
            self.removed.join(", ")
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("no pausable service is configured")]
    NothingPausable,
    #[error(transparent)]
    CapacityGuard(#[from] Shortfall),
    #[error("reload refused, the running configuration stays: {0}")]
    Reload(ReloadRefused),
    #[error("the daemon is shutting down")]
    Stopped,
    /// The change is made and in effect, but the state file could not be written: a
    /// restart before the next successful save would forget it. Saving is retried.
    #[error("the change is in effect, but NOT SAVED to {}: {}; psentinel retries until it is written, a restart before that would forget it", .failure.path.display(), .failure.error)]
    NotSaved {
        outcome: Box<Outcome>,
        failure: SaveFailure,
    },
}

/// Why a new configuration was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadRefused {
    /// The file does not load (the configuration module's own message).
    #[error("{0}")]
    Config(String),
    /// A new port cannot be bound.
    #[error("[{service}] cannot listen on {addr} ({}): {error}", kind.as_str())]
    Listen {
        service: String,
        addr: SocketAddr,
        kind: ProbeKind,
        error: String,
    },
}
