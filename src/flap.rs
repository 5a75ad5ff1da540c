//! Flap damping: a service whose health keeps changing is held out of the pool until it has
//! been stable for a while, so that a check alternating pass/fail does not make HAProxy bounce
//! the server on every run.
//!
//! A *change* is the smoothed health (after `rise`/`fall`) going from passing to failing or
//! back; the first result after start-up is not a change. More than `flap_max_changes` changes
//! within `flap_window` make the service *flapping*: it answers as down whatever its check
//! says, until `flap_hold` has passed without a change. Pure: the engine passes the time in.

use crate::model::Micros;
use std::collections::VecDeque;
use std::time::Duration;

/// The service keys `flap_max_changes` (0 = damping off), `flap_window`, `flap_hold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlapPolicy {
    pub max_changes: u32,
    pub window: Duration,
    pub hold: Duration,
}

impl Default for FlapPolicy {
    fn default() -> Self {
        FlapPolicy {
            max_changes: 0,
            window: Duration::from_secs(300),
            hold: Duration::from_secs(300),
        }
    }
}

impl FlapPolicy {
    pub fn enabled(&self) -> bool {
        self.max_changes > 0
    }
}

fn us(d: Duration) -> Micros {
    d.as_micros().min(u128::from(u64::MAX)) as Micros
}

/// The recent health changes of one service and whether it is held out for flapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flap {
    /// When the health changed, oldest first; only those within the window (and at most
    /// `max_changes + 1` of them) are kept.
    changes: VecDeque<Micros>,
    /// Since when the service is held out; None = not flapping.
    pub since: Option<Micros>,
    last_change: Micros,
}

impl Flap {
    /// Records a change of health at `now`; true when this change starts the hold.
    pub fn change(&mut self, now: Micros, p: &FlapPolicy) -> bool {
        if !p.enabled() {
            return false;
        }
        self.last_change = now;
        self.changes.push_back(now);
        let oldest = now.saturating_sub(us(p.window));
        while self.changes.front().is_some_and(|t| *t < oldest) {
            self.changes.pop_front();
        }
        while self.changes.len() > p.max_changes as usize + 1 {
            self.changes.pop_front();
        }
        if self.since.is_none() && self.changes.len() > p.max_changes as usize {
            self.since = Some(now);
            return true;
        }
        false
    }

    /// Changes counted in the window ending `now`.
    pub fn recent(&self, now: Micros, p: &FlapPolicy) -> usize {
        let oldest = now.saturating_sub(us(p.window));
        self.changes.iter().filter(|t| **t >= oldest).count()
    }

    /// When the hold ends if nothing changes meanwhile; None when not flapping.
    pub fn release_at(&self, p: &FlapPolicy) -> Option<Micros> {
        self.since
            .map(|_| self.last_change.saturating_add(us(p.hold)))
    }

    /// Ends the hold when the service has been stable for `hold` (or damping was turned off);
    /// true when it ended.
    pub fn release(&mut self, now: Micros, p: &FlapPolicy) -> bool {
        if self.since.is_none() {
            return false;
        }
        if p.enabled() && self.release_at(p).is_some_and(|t| now < t) {
            return false;
        }
        *self = Flap::default();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Micros = 1_000_000;

    fn policy(max: u32) -> FlapPolicy {
        FlapPolicy {
            max_changes: max,
            window: Duration::from_secs(60),
            hold: Duration::from_secs(30),
        }
    }

    #[test]
    fn off_never_flaps() {
        let mut f = Flap::default();
        for t in 0..100 {
            assert!(!f.change(t * S, &policy(0)));
        }
        assert_eq!(f.since, None);
    }

    #[test]
    fn more_than_max_changes_in_the_window_holds_until_stable() {
        let p = policy(2);
        let mut f = Flap::default();
        assert!(!f.change(0, &p));
        assert!(!f.change(10 * S, &p));
        assert!(f.change(20 * S, &p), "the third change within 60s");
        assert_eq!(f.since, Some(20 * S));
        assert!(!f.change(25 * S, &p), "already flapping");
        assert_eq!(f.release_at(&p), Some(55 * S), "30s after the last change");
        assert!(!f.release(54 * S, &p));
        assert!(f.release(55 * S, &p));
        assert_eq!(f.since, None);
        assert_eq!(f.recent(55 * S, &p), 0, "a release starts the count again");
    }

    #[test]
    fn changes_spread_wider_than_the_window_do_not_flap() {
        let p = policy(2);
        let mut f = Flap::default();
        for i in 0..20 {
            assert!(!f.change(i * 31 * S, &p), "change {i}");
        }
        assert_eq!(f.recent(19 * 31 * S, &p), 2);
    }

    #[test]
    fn turning_damping_off_releases_at_once() {
        let mut f = Flap::default();
        f.change(0, &policy(1));
        assert!(f.change(S, &policy(1)));
        assert!(f.release(2 * S, &policy(0)));
    }
}
