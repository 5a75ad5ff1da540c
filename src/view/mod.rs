//! What readers see: the immutable [`Snapshot`] the engine publishes after every change, one
//! [`ServiceView`] per service, and the ready-made probe answers ([`replies`]).
//!
//! Probe responders, `status`, metrics, the D-Bus bridge, sd_notify STATUS= and the journal's
//! state-change lines read snapshots and never talk to the engine. This module imports no
//! engine code: a view is built from plain facts (configuration, operator state, health,
//! last result), and everything a reader shows — state, reason, HTTP status, agent weight —
//! is derived here, once per change, never on the probe path.

pub mod replies;

use crate::config::ServiceConfig;
use crate::flap::Flap;
use crate::model::{derive_state_held, Admin, CheckCounts, CheckResult, Exit, HealthTracker};
use crate::model::{Micros, Override, State, UnitFact};
use crate::plugin::{self, CheckStyle, Perf, Verdict};
use crate::probe_stats::ProbeStats;
use replies::{weight_from_output, AgentExtra, Replies};
use std::sync::Arc;

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
    pub replies: Replies,
    pub checks_by_result: CheckCounts,
    /// Probe counters and probers; live (atomics), shared with the service's listeners.
    pub probes: Arc<ProbeStats>,
    /// Silence alarm: µs of the last probe, when no probe came for too long.
    pub silent_since: Option<Micros>,
    /// The check's own words: the first line of its output up to `|`, cleaned and bounded.
    pub summary: String,
    /// Performance data of the last run (`check_style = nagios`), at most
    /// [`plugin::PERF_MAX`].
    pub perfdata: Vec<Perf>,
    /// Held out for flapping since (µs); None = not flapping.
    pub flapping_since: Option<Micros>,
    /// The application's unit as last reported (`unit=`; default when none is configured).
    pub unit: UnitFact,
}

/// What the engine holds about one service, from which its view is derived.
pub struct Facts {
    pub cfg: Arc<ServiceConfig>,
    pub admin: Admin,
    pub health: HealthTracker,
    pub last: Option<CheckResult>,
    pub checks: CheckCounts,
    pub probes: Arc<ProbeStats>,
    pub silent_since: Option<Micros>,
    pub flap: Flap,
    pub unit: UnitFact,
}

impl ServiceView {
    pub fn new(f: &Facts) -> ServiceView {
        let cfg = &f.cfg;
        let flapping = f.flap.since.is_some();
        let unit_out = cfg.unit.is_some() && f.unit.out();
        let state = derive_state_held(&f.admin, &f.health, cfg.check.is_some(), flapping, unit_out);
        let summary = f
            .last
            .as_ref()
            .map_or(String::new(), |r| plugin::summary(&r.first_line));
        let perfdata = match &f.last {
            Some(r) if cfg.check_style == CheckStyle::Nagios => {
                // Long-text perfdata only from complete output: a cut tail may start anywhere.
                let rest = match r.output.split_once('\n') {
                    Some((_, rest)) if !r.output.starts_with("[...] ") => rest,
                    _ => "",
                };
                plugin::perfdata(&cfg.name, &r.first_line, rest)
            }
            _ => Vec::new(),
        };
        let reason = if let (State::Down, Some(unit), true) = (state, &cfg.unit, unit_out) {
            unit_reason(unit, &f.unit)
        } else if flapping && state == State::Down {
            format!(
                "Flapping: health changed more than {} times within {}s; held out until stable for {}s",
                cfg.flap.max_changes,
                cfg.flap.window.as_secs_f64(),
                cfg.flap.hold.as_secs_f64()
            )
        } else {
            reason_for(state, &f.admin, &f.last, cfg, &summary)
        };
        let http_status = match state {
            State::Up => 200,
            State::Warning => cfg.warning_status,
            State::Down => 500,
            State::Disabled => cfg.disabled_status,
            State::Paused => cfg.paused_status,
            State::Starting => 503,
        };
        // Parsed here, once per change, so that agent probes only copy bytes.
        let checked = cfg.check.is_some() && !f.admin.checks_stopped;
        let agent = AgentExtra {
            passing: !checked || f.health.healthy == Some(true),
            // The floor applies to what the check asks for; without a weight, HAProxy keeps
            // the server's configured one.
            weight: match &f.last {
                Some(r) if checked && state == State::Up => {
                    weight_from_output(&r.output).map(|w| w.max(cfg.min_weight))
                }
                _ => None,
            },
        };
        ServiceView {
            replies: Replies::with_agent(&cfg.name, state, http_status, &reason, agent),
            agent_weight: agent.weight,
            cfg: cfg.clone(),
            state,
            admin: f.admin.clone(),
            health: f.health,
            last: f.last.clone(),
            checks_count: f.checks.total(),
            reason,
            http_status,
            checks_by_result: f.checks,
            probes: f.probes.clone(),
            silent_since: f.silent_since,
            summary,
            perfdata,
            flapping_since: f.flap.since,
            unit: f.unit.clone(),
        }
    }
}

/// "Unit ourapp.service is failed (failed)", "Unit ourapp.service is stopping: draining".
fn unit_reason(unit: &str, u: &UnitFact) -> String {
    match &u.active {
        Some(a) if !u.stopping => format!("Unit {unit} is {a} ({})", u.sub),
        _ => format!("Unit {unit} is stopping: draining"),
    }
}

/// The reason shown with a state: the probe's reason phrase, `status`, D-Bus `Reason`-like
/// fields. An operator's own words win; without them, who did it. A monitoring plugin's
/// summary is written for people, so with `check_style = nagios` it is the reason of a
/// check-derived state; a plain script's output is not, and psentinel words those itself.
fn reason_for(
    state: State,
    admin: &Admin,
    last: &Option<CheckResult>,
    cfg: &ServiceConfig,
    summary: &str,
) -> String {
    // Only while the last run agrees with the state: during rise/fall the state is the
    // previous runs' and the last run's words would contradict it.
    let agrees = last.as_ref().is_some_and(|r| {
        let verdict = Verdict::of(cfg.check_style, &r.exit);
        matches!(
            (state, verdict),
            (State::Up, Verdict::Ok)
                | (State::Warning, Verdict::Warning)
                | (State::Down, Verdict::Failed)
        )
    });
    if agrees
        && cfg.check_style == CheckStyle::Nagios
        && cfg.check.is_some()
        && !admin.checks_stopped
        && !summary.is_empty()
    {
        return summary.to_string();
    }
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
        State::Warning => match last {
            Some(r) => format!("Check warning: {}", r.exit),
            None => "Check warning".into(),
        },
        State::Down => match last {
            Some(r) if r.exit == Exit::TimedOut => format!(
                "Check failed: timed out after {}s",
                cfg.timeout.as_secs_f64()
            ),
            Some(r) => format!("Check failed: {}", r.exit),
            None => "Check failed".into(),
        },
    }
}

/// Every service's view, in name order; looked up like a map.
///
/// The names are one shared list from one reload to the next, and the views are the engine's
/// own (`Arc`s): publishing a snapshot copies a pointer per service, where a map copied every
/// name and built a tree. With a thousand checks reporting one by one at start-up that copy,
/// per result, was most of the daemon's work. Two snapshots with the same names line up slot
/// by slot, so [`Services::changed_since`] compares pointers, not names.
#[derive(Debug, Clone, Default)]
pub struct Services {
    names: Arc<[String]>,
    views: Box<[Arc<ServiceView>]>,
}

impl Services {
    /// `names` sorted and without duplicates (a map's keys), one view per name, in order.
    pub fn new(names: Arc<[String]>, views: Vec<Arc<ServiceView>>) -> Services {
        assert_eq!(names.len(), views.len(), "one view per service");
        debug_assert!(names.windows(2).all(|w| w[0] < w[1]), "names in order");
        Services {
            names,
            views: views.into_boxed_slice(),
        }
    }

    // Generic like a map's lookups, so that callers read the same as with one.
    fn index<Q: ?Sized + Ord>(&self, name: &Q) -> Option<usize>
    where
        String: std::borrow::Borrow<Q>,
    {
        use std::borrow::Borrow;
        self.names
            .binary_search_by(|n| Borrow::<Q>::borrow(n).cmp(name))
            .ok()
    }

    pub fn get<Q: ?Sized + Ord>(&self, name: &Q) -> Option<&Arc<ServiceView>>
    where
        String: std::borrow::Borrow<Q>,
    {
        self.index(name).map(|i| &self.views[i])
    }

    pub fn contains_key<Q: ?Sized + Ord>(&self, name: &Q) -> bool
    where
        String: std::borrow::Borrow<Q>,
    {
        self.index(name).is_some()
    }

    pub fn len(&self) -> usize {
        self.views.len()
    }

    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }

    pub fn keys(&self) -> std::slice::Iter<'_, String> {
        self.names.iter()
    }

    pub fn values(&self) -> std::slice::Iter<'_, Arc<ServiceView>> {
        self.views.iter()
    }

    pub fn iter(
        &self,
    ) -> std::iter::Zip<std::slice::Iter<'_, String>, std::slice::Iter<'_, Arc<ServiceView>>> {
        self.names.iter().zip(self.views.iter())
    }

    /// The services whose view is not the one `old` has, with that one (None: new here).
    pub fn changed_since<'a>(
        &'a self,
        old: &'a Services,
    ) -> impl Iterator<
        Item = (
            &'a String,
            Option<&'a Arc<ServiceView>>,
            &'a Arc<ServiceView>,
        ),
    > {
        let aligned = Arc::ptr_eq(&self.names, &old.names);
        self.iter()
            .enumerate()
            .filter_map(move |(i, (name, view))| {
                let before = if aligned {
                    old.views.get(i)
                } else {
                    old.get(name)
                };
                match before {
                    Some(b) if Arc::ptr_eq(b, view) => None,
                    _ => Some((name, before, view)),
                }
            })
    }
}

impl std::ops::Index<&str> for Services {
    type Output = Arc<ServiceView>;

    fn index(&self, name: &str) -> &Arc<ServiceView> {
        self.get(name)
            .unwrap_or_else(|| panic!("no service {name:?}"))
    }
}

impl<'a> IntoIterator for &'a Services {
    type Item = (&'a String, &'a Arc<ServiceView>);
    type IntoIter =
        std::iter::Zip<std::slice::Iter<'a, String>, std::slice::Iter<'a, Arc<ServiceView>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Everything readers need, consistent at one instant.
#[derive(Debug)]
pub struct Snapshot {
    pub services: Services,
    pub pid: u32,
    pub started: Micros,
    pub config_file: std::path::PathBuf,
    /// The drop-in fragments read after it, in order.
    pub config_fragments: Arc<[std::path::PathBuf]>,
    pub reloads: u64,
    /// The last change could not be written to the state file: a restart would forget it.
    /// Retried with backoff until it is written.
    pub unsaved: Option<SaveFailure>,
}

/// Saving the state file fails (a full or read-only `state_dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveFailure {
    pub path: std::path::PathBuf,
    pub error: String,
    /// µs of the first failure of this run of failures.
    pub since: Micros,
}

impl Snapshot {
    /// "3 services: 2 up, 1 disabled": sd_notify STATUS= and the first line of `status`.
    pub fn summary(&self) -> String {
        // Counted in an array (this runs on every published change), shown in name order.
        let mut counts = [0usize; State::ALL.len()];
        for v in self.services.values() {
            counts[State::ALL.iter().position(|s| *s == v.state).unwrap_or(0)] += 1;
        }
        let mut counts: Vec<(&str, usize)> = State::ALL
            .iter()
            .zip(counts)
            .filter(|(_, c)| *c > 0)
            .map(|(s, c)| (s.as_str(), c))
            .collect();
        counts.sort_unstable();
        let parts: Vec<String> = counts.iter().map(|(s, c)| format!("{c} {s}")).collect();
        let silent: Vec<&str> = self
            .services
            .values()
            .filter(|v| v.silent_since.is_some())
            .map(|v| v.cfg.name.as_str())
            .collect();
        let flapping: Vec<&str> = self
            .services
            .values()
            .filter(|v| v.flapping_since.is_some())
            .map(|v| v.cfg.name.as_str())
            .collect();
        format!(
            "{}: {}{}{}{}",
            count(self.services.len() as u64, "service"),
            if parts.is_empty() {
                "none".to_string()
            } else {
                parts.join(", ")
            },
            if silent.is_empty() {
                String::new()
            } else {
                format!("; not probed any more: {}", silent.join(", "))
            },
            if flapping.is_empty() {
                String::new()
            } else {
                format!("; held out for flapping: {}", flapping.join(", "))
            },
            if self.unsaved.is_some() {
                "; state NOT SAVED (see status)"
            } else {
                ""
            }
        )
    }
}

/// "1 service", "2 services": a count with its noun, plural when it is not one.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_agree_in_number() {
        assert_eq!(count(1, "service"), "1 service");
        assert_eq!(count(0, "service"), "0 services");
        assert_eq!(count(3, "check"), "3 checks");
    }
}
