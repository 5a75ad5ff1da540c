//! The state of a service and the pure functions that move it.
//!
//! Two independent halves make a service's state:
//! - [`Admin`]: what operators decided (disabled, paused, checks stopped), with who, why and
//!   until when. Changed only by commands and by expiry.
//! - [`HealthTracker`]: what the check script says, smoothed by `rise`/`fall`.
//!
//! [`derive_state`] combines them into the one [`State`] that probes, D-Bus and `status` show.
//! Nothing here does I/O, so every transition is unit tested directly.

use crate::plugin::Verdict;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch: the unit of every time on D-Bus and in `--json`.
pub type Micros = u64;

pub fn micros(t: SystemTime) -> Micros {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub fn from_micros(us: Micros) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us)
}

/// What HAProxy (and everyone else) sees for a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Up,
    /// Passing with a warning (`check_style = nagios`, exit 1): drained, not down.
    Warning,
    Down,
    Disabled,
    Paused,
    Starting,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Up,
        State::Warning,
        State::Down,
        State::Disabled,
        State::Paused,
        State::Starting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Warning => "warning",
            State::Down => "down",
            State::Disabled => "disabled",
            State::Paused => "paused",
            State::Starting => "starting",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One operator decision: kept with who made it, why, since and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub reason: String,
    pub by: String,
    pub since: Micros,
    /// 0 = until an operator lifts it.
    pub until: Micros,
}

impl Override {
    pub fn new(reason: &str, by: &str, now: Micros, for_: Option<Duration>) -> Self {
        Override {
            reason: reason.to_string(),
            by: by.to_string(),
            since: now,
            until: for_.map_or(0, |d| now.saturating_add(d.as_micros() as u64)),
        }
    }

    fn expired(&self, now: Micros) -> bool {
        self.until != 0 && self.until <= now
    }
}

/// Operator-controlled state of one service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Admin {
    pub disabled: Option<Override>,
    pub paused: Option<Override>,
    /// `disable_test` sets this: the check stops running and the service counts as passing.
    #[serde(default)]
    pub checks_stopped: bool,
}

/// Why an operator request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unknown service '{0}'")]
    UnknownService(String),
    #[error("service '{0}' is not pausable (set pausable=yes in its section)")]
    NotPausable(String),
    #[error("no service follows unit '{0}' (unit = {0} in a service's section)")]
    UnknownUnit(String),
}

/// Which kind of timed override ran out, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    Disable,
    Pause,
}

impl Admin {
    /// Returns the disable this one replaces, if there was one.
    pub fn disable(&mut self, ovr: Override) -> Option<Override> {
        self.disabled.replace(ovr)
    }

    pub fn enable(&mut self) -> bool {
        self.disabled.take().is_some()
    }

    /// Returns the pause this one replaces, if there was one.
    pub fn pause(
        &mut self,
        pausable: bool,
        name: &str,
        ovr: Override,
    ) -> Result<Option<Override>, Refusal> {
        if !pausable {
            return Err(Refusal::NotPausable(name.to_string()));
        }
        Ok(self.paused.replace(ovr))
    }

    pub fn resume(&mut self, pausable: bool, name: &str) -> Result<bool, Refusal> {
        if !pausable {
            return Err(Refusal::NotPausable(name.to_string()));
        }
        Ok(self.paused.take().is_some())
    }

    /// Lifts the overrides whose `until` has passed; says which.
    pub fn expire(&mut self, now: Micros) -> Vec<Expired> {
        let mut out = Vec::new();
        if self.disabled.as_ref().is_some_and(|o| o.expired(now)) {
            self.disabled = None;
            out.push(Expired::Disable);
        }
        if self.paused.as_ref().is_some_and(|o| o.expired(now)) {
            self.paused = None;
            out.push(Expired::Pause);
        }
        out
    }

    /// The earliest moment an override runs out, if any does.
    pub fn next_expiry(&self) -> Option<Micros> {
        [&self.disabled, &self.paused]
            .into_iter()
            .flatten()
            .filter(|o| o.until != 0)
            .map(|o| o.until)
            .min()
    }

    pub fn is_default(&self) -> bool {
        *self == Admin::default()
    }
}

/// How one run of a check ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    TimedOut,
    /// The program could not be started (missing, not executable...): the message says why.
    CannotStart(String),
}

impl Exit {
    pub fn passed(&self) -> bool {
        *self == Exit::Code(0)
    }

    /// One integer for `LastExitStatus` and `last_exit_status`, using the conventions of the
    /// shell and of timeout(1) so operators read it without a table: 128+N for signal N,
    /// 124 for a timeout, 127 for a program that could not start.
    pub fn status_code(&self) -> i32 {
        match self {
            Exit::Code(c) => *c,
            Exit::Signal(s) => 128 + s,
            Exit::TimedOut => 124,
            Exit::CannotStart(_) => 127,
        }
    }
}

impl Exit {
    /// "exit status 0", "exit status 137 (killed by signal 9)": the number, and what it
    /// means where the number alone does not say it.
    pub fn describe(&self) -> String {
        match self {
            Exit::Code(c) => format!("exit status {c}"),
            other => format!("exit status {} ({other})", other.status_code()),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
            Exit::TimedOut => f.write_str("timed out"),
            Exit::CannotStart(why) => write!(f, "cannot start: {why}"),
        }
    }
}

/// Finished checks by how they ended (`psentinel_checks_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckCounts {
    pub pass: u64,
    /// Passed with a warning (`check_style = nagios`, exit 1): neither pass nor fail.
    pub warning: u64,
    pub fail: u64,
    pub timeout: u64,
    pub cannot_start: u64,
}

impl CheckCounts {
    /// Every finished check, however it ended.
    pub fn total(&self) -> u64 {
        self.pass + self.warning + self.fail + self.timeout + self.cannot_start
    }

    /// `verdict`: what the run meant under the service's `check_style`.
    pub fn add(&mut self, exit: &Exit, verdict: Verdict) {
        let n = match exit {
            _ if verdict == Verdict::Warning => &mut self.warning,
            Exit::Code(0) => &mut self.pass,
            Exit::Code(_) | Exit::Signal(_) => &mut self.fail,
            Exit::TimedOut => &mut self.timeout,
            Exit::CannotStart(_) => &mut self.cannot_start,
        };
        *n += 1;
    }
}

/// The record of one finished check run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub exit: Exit,
    /// When the run started.
    pub time: Micros,
    pub duration_us: u64,
    /// The tail of stdout and stderr together, bounded by the runner.
    pub output: String,
    /// The first line of the output (bounded), kept even when the tail is not: where a
    /// monitoring plugin puts its summary and perfdata.
    #[serde(default)]
    pub first_line: String,
}

/// Smoothed check health: `rise` passes in a row to become healthy, `fall` failures to become
/// unhealthy. The first result after start-up decides at once, so that a service with a long
/// interval and rise > 1 does not stay out of the pool for minutes after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HealthTracker {
    /// None until the first result.
    pub healthy: Option<bool>,
    pub passes: u32,
    pub failures: u32,
    /// The last passing result was a warning (`check_style = nagios`, exit 1).
    #[serde(default)]
    pub warning: bool,
}

impl HealthTracker {
    /// Records one result; returns true when `healthy` changed.
    pub fn observe(&mut self, passed: bool, rise: u32, fall: u32) -> bool {
        self.observe_verdict(
            if passed { Verdict::Ok } else { Verdict::Failed },
            rise,
            fall,
        )
    }

    /// Records one result, a warning counting as a pass; returns true when `healthy` changed.
    /// A failure that does not reach `fall` leaves the warning flag as the last pass set it.
    pub fn observe_verdict(&mut self, verdict: Verdict, rise: u32, fall: u32) -> bool {
        let passed = verdict.passed();
        if passed {
            self.warning = verdict == Verdict::Warning;
            self.passes = self.passes.saturating_add(1);
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.passes = 0;
        }
        let next = match self.healthy {
            None => passed,
            Some(true) if !passed && self.failures >= fall => false,
            Some(false) if passed && self.passes >= rise => true,
            Some(h) => h,
        };
        let changed = self.healthy != Some(next);
        self.healthy = Some(next);
        changed
    }
}

/// What psentinel knows of the application's systemd unit (`unit = ourapp.service`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitFact {
    /// `ActiveState` as systemd last reported it; None while unknown (no system bus yet).
    pub active: Option<String>,
    /// `SubState`, shown beside it ("running", "stop-sigterm", "failed"...).
    pub sub: String,
    /// `unit_stopping` (the drain unit's ExecStop) announced a stop: out while the unit is
    /// still active, until systemd reports it not active or `unit_started` lifts it.
    pub stopping: bool,
}

impl UnitFact {
    /// Whether the unit keeps its service out. `reloading` (and `refreshing`) keep it in: the
    /// application still runs and serves while it reloads (`systemctl reload` is no
    /// deploy). An unknown state keeps nothing out: without a bus, checks alone decide.
    pub fn out(&self) -> bool {
        self.stopping
            || self
                .active
                .as_deref()
                .is_some_and(|a| !matches!(a, "active" | "reloading" | "refreshing"))
    }

    /// Takes systemd's report; returns true when the service goes out or comes back.
    pub fn observe(&mut self, active: &str, sub: &str) -> bool {
        let was = self.out();
        if !matches!(active, "active" | "reloading" | "refreshing") {
            // The stop announced has begun (or the app crashed): the state speaks now.
            self.stopping = false;
        }
        self.active = Some(active.to_string());
        self.sub = sub.to_string();
        was != self.out()
    }
}

/// Operator decisions first (disabled beats paused), then health. A service without a check,
/// or whose check an operator stopped, counts as passing; a flapping one is held down.
pub fn derive_state(admin: &Admin, health: &HealthTracker, has_check: bool) -> State {
    derive_state_held(admin, health, has_check, false, false)
}

/// [`derive_state`], with `flapping` holding a checked service down ([`crate::flap`]) and
/// `unit_out` any service whose application's unit is not active ([`UnitFact`]): below
/// operators, above the check.
pub fn derive_state_held(
    admin: &Admin,
    health: &HealthTracker,
    has_check: bool,
    flapping: bool,
    unit_out: bool,
) -> State {
    if admin.disabled.is_some() {
        State::Disabled
    } else if admin.paused.is_some() {
        State::Paused
    } else if unit_out {
        State::Down
    } else if !has_check || admin.checks_stopped {
        State::Up
    } else if flapping {
        State::Down
    } else {
        match health.healthy {
            None => State::Starting,
            Some(true) if health.warning => State::Warning,
            Some(true) => State::Up,
            Some(false) => State::Down,
        }
    }
}

/// A service name: letters, digits, `_`, `-`, `.`: one plain word on the command line and in
/// the journal, escaped into a D-Bus object path.
pub fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ovr(until: Micros) -> Override {
        Override {
            reason: "deploy".into(),
            by: "root".into(),
            since: 1,
            until,
        }
    }

    #[test]
    fn disabled_beats_paused_beats_health() {
        let mut a = Admin::default();
        let mut h = HealthTracker::default();
        assert_eq!(derive_state(&a, &h, true), State::Starting);
        h.observe(false, 1, 1);
        assert_eq!(derive_state(&a, &h, true), State::Down);
        a.pause(true, "x", ovr(0)).unwrap();
        assert_eq!(derive_state(&a, &h, true), State::Paused);
        assert_eq!(a.disable(ovr(0)), None);
        assert_eq!(
            a.disable(ovr(5)),
            Some(ovr(0)),
            "a second disable says what it replaced"
        );
        assert_eq!(derive_state(&a, &h, true), State::Disabled);
        assert!(a.enable());
        assert!(!a.enable());
        assert_eq!(derive_state(&a, &h, true), State::Paused);
        assert!(a.resume(true, "x").unwrap());
        assert_eq!(derive_state(&a, &h, true), State::Down);
    }

    #[test]
    fn no_check_or_stopped_check_counts_as_passing() {
        let mut a = Admin::default();
        let mut h = HealthTracker::default();
        h.observe(false, 1, 1);
        assert_eq!(derive_state(&a, &h, false), State::Up);
        a.checks_stopped = true;
        assert_eq!(derive_state(&a, &h, true), State::Up);
    }

    #[test]
    fn a_unit_not_active_takes_the_service_out_below_operators() {
        let mut u = UnitFact::default();
        assert!(!u.out(), "unknown: checks alone decide");
        assert!(!u.observe("active", "running"));
        for (active, out) in [
            ("reloading", false),
            ("deactivating", true),
            ("failed", true),
            ("inactive", true),
            ("activating", true),
            ("active", false),
        ] {
            u.observe(active, "x");
            assert_eq!(u.out(), out, "{active}");
        }
        u.stopping = true;
        assert!(u.out());
        assert!(
            !u.observe("active", "running"),
            "a late 'active' keeps a stop announced"
        );
        assert!(!u.observe("deactivating", "stop-sigterm"));
        assert!(!u.stopping, "the stop has begun: the state speaks");
        assert!(u.observe("active", "running"));
        let mut a = Admin::default();
        let h = HealthTracker::default();
        assert_eq!(derive_state_held(&a, &h, false, false, true), State::Down);
        a.disable(ovr(0));
        assert_eq!(
            derive_state_held(&a, &h, false, false, true),
            State::Disabled
        );
    }

    #[test]
    fn pause_refused_when_not_pausable() {
        let mut a = Admin::default();
        assert_eq!(
            a.pause(false, "db", ovr(0)),
            Err(Refusal::NotPausable("db".into()))
        );
        assert!(a.resume(false, "db").is_err());
        assert!(a.paused.is_none());
    }

    #[test]
    fn rise_and_fall_count_consecutive_results() {
        let mut h = HealthTracker::default();
        assert!(h.observe(true, 3, 2), "first result decides at once");
        assert!(!h.observe(false, 3, 2));
        assert_eq!(h.healthy, Some(true));
        assert!(!h.observe(true, 3, 2), "a pass resets the failure count");
        assert!(!h.observe(false, 3, 2));
        assert!(h.observe(false, 3, 2));
        assert_eq!(h.healthy, Some(false));
        assert!(!h.observe(true, 3, 2));
        assert!(!h.observe(true, 3, 2));
        assert!(h.observe(true, 3, 2));
        assert_eq!(h.healthy, Some(true));
    }

    #[test]
    fn a_warning_passes_and_shows_until_a_failure_reaches_fall() {
        let a = Admin::default();
        let mut h = HealthTracker::default();
        h.observe_verdict(Verdict::Warning, 1, 2);
        assert_eq!(derive_state(&a, &h, true), State::Warning);
        h.observe_verdict(Verdict::Failed, 1, 2);
        assert_eq!(derive_state(&a, &h, true), State::Warning, "1 of fall=2");
        h.observe_verdict(Verdict::Ok, 1, 2);
        assert_eq!(derive_state(&a, &h, true), State::Up);
        h.observe_verdict(Verdict::Warning, 1, 2);
        assert_eq!(derive_state_held(&a, &h, true, true, false), State::Down);
        h.observe_verdict(Verdict::Failed, 1, 2);
        h.observe_verdict(Verdict::Failed, 1, 2);
        assert_eq!(derive_state(&a, &h, true), State::Down);
    }

    #[test]
    fn expiry_lifts_only_what_ran_out() {
        let mut a = Admin::default();
        a.disable(ovr(100));
        a.pause(true, "x", ovr(0)).unwrap();
        assert_eq!(a.next_expiry(), Some(100));
        assert!(a.expire(99).is_empty());
        assert_eq!(a.expire(100), vec![Expired::Disable]);
        assert!(a.disabled.is_none());
        assert!(a.paused.is_some(), "an untimed pause stays");
        assert_eq!(a.next_expiry(), None);
    }

    #[test]
    fn exit_status_codes_follow_shell_conventions() {
        assert_eq!(Exit::Code(3).status_code(), 3);
        assert_eq!(Exit::Signal(9).status_code(), 137);
        assert_eq!(Exit::TimedOut.status_code(), 124);
        assert_eq!(Exit::CannotStart("x".into()).status_code(), 127);
        assert!(Exit::Code(0).passed());
        assert!(!Exit::Signal(0).passed());
    }

    #[test]
    fn service_names() {
        assert!(valid_service_name("our-app_2.v1"));
        assert!(!valid_service_name(""));
        assert!(!valid_service_name("a b"));
        assert!(!valid_service_name("a/b"));
    }
}
