//! The engine's clock.

use crate::model::{micros, Micros};
use std::time::{Duration, SystemTime};

/// The engine's time: the wall clock at start plus tokio's monotonic time since. Timestamps
/// (since, until) and the timers that act on them then agree: a `--for 30m` lasts 30 minutes
/// even if the wall clock is stepped meanwhile, and tests run the engine on tokio's paused
/// clock.
pub(super) struct Clock {
    pub(super) wall0: Micros,
    pub(super) mono0: tokio::time::Instant,
}

impl Clock {
    pub(super) fn start() -> Clock {
        Clock {
            wall0: micros(SystemTime::now()),
            mono0: tokio::time::Instant::now(),
        }
    }

    pub(super) fn now(&self) -> Micros {
        self.wall0 + self.mono0.elapsed().as_micros() as u64
    }

    /// When, on tokio's clock, the engine's time reaches `t`.
    pub(super) fn instant_at(&self, t: Micros) -> tokio::time::Instant {
        self.mono0 + Duration::from_micros(t.saturating_sub(self.wall0))
    }
}
