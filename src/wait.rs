//! `disable|enable|pause|run ... --wait`: return when HAProxy has acted, as far as psentinel can
//! know from the probes it answers.
//!
//! The probers that matter are those seen in the minute before the command ([`RECENT`]). A
//! prober has caught up when:
//!
//! - it sends `http-check send-state`: its latest `X-Haproxy-Server-State` says the server is
//!   not `UP` (taking out) or `UP` (putting back). HAProxy sends the state it holds *before*
//!   this probe's answer, so this is HAProxy's word, never a guess;
//! - otherwise: it read (closed after) `haproxy_fall` answers in a row saying "out" (any
//!   non-2xx), or `haproxy_rise` saying "up", after which HAProxy with that fall/rise has
//!   acted. An agent-check prober needs one answer: `maint`/`drain`/`ready` act at once.
//!
//! The wait never involves the engine: it watches the service's prober table (a `watch`
//! bumped by the observer after each probe) and re-evaluates. A prober that stops probing
//! keeps the wait from finishing; at the timeout the answer names every prober not caught up.

use crate::control::proto::Command;
use crate::engine::Snapshot;
use crate::model::{micros, State};
use crate::probe_stats::{ProbeStats, Prober};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// Probers seen this recently before the command are waited for.
pub const RECENT: Duration = Duration::from_secs(60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// disable, pause: HAProxy takes the server out.
    Out,
    /// enable, run: HAProxy puts it back.
    In,
}

/// One service to wait for.
pub struct Target {
    pub service: String,
    pub stats: Arc<ProbeStats>,
    pub goal: Goal,
    pub haproxy_fall: u32,
    pub haproxy_rise: u32,
}

/// What a `--wait` command waits for, known before the command runs (which consumes it).
pub struct Want {
    goal: Goal,
    /// None: every pausable service (`pause`/`run` without a name).
    names: Option<Vec<String>>,
}

impl Want {
    /// None for a command that does not take `--wait`.
    pub fn of(cmd: &Command) -> Option<Want> {
        let (goal, names) = match cmd {
            Command::Disable { service, .. } => (Goal::Out, Some(vec![service.clone()])),
            Command::Enable(s) => (Goal::In, Some(vec![s.clone()])),
            Command::Pause { service, .. } => (Goal::Out, service.clone().map(|s| vec![s])),
            Command::Run(service) => (Goal::In, service.clone().map(|s| vec![s])),
            _ => return None,
        };
        Some(Want { goal, names })
    }

    /// The D-Bus `WaitForHAProxy`: wait for HAProxy to act on the service's current state —
    /// put back when it is up, taken out otherwise.
    pub fn current(service: &str, snap: &Snapshot) -> Want {
        let up = snap
            .services
            .get(service)
            .is_some_and(|v| v.state == State::Up);
        Want {
            goal: if up { Goal::In } else { Goal::Out },
            names: Some(vec![service.to_string()]),
        }
    }

    /// The services to wait for, from the snapshot after the change. Err when HAProxy will
    /// not act (enabled but still paused or failing its check...): waiting would be in vain.
    pub fn targets(self, snap: &Snapshot) -> Result<Vec<Target>, String> {
        let names = self.names.unwrap_or_else(|| {
            snap.services
                .values()
                .filter(|v| v.cfg.pausable)
                .map(|v| v.cfg.name.clone())
                .collect()
        });
        let mut targets = Vec::new();
        for n in names {
            let v = snap
                .services
                .get(&n)
                .ok_or_else(|| format!("{n}: gone before the wait began"))?;
            if (self.goal == Goal::In) != (v.state == State::Up) {
                return Err(format!(
                    "{n} is {} ({}): HAProxy will not {}; not waiting",
                    v.state,
                    v.reason,
                    if self.goal == Goal::In {
                        "put it back"
                    } else {
                        "take it out"
                    }
                ));
            }
            targets.push(Target {
                service: n,
                stats: v.probes.clone(),
                goal: self.goal,
                haproxy_fall: v.cfg.haproxy_fall,
                haproxy_rise: v.cfg.haproxy_rise,
            });
        }
        Ok(targets)
    }
}

type Key = (IpAddr, &'static str, Option<String>);

fn key(p: &Prober) -> Key {
    (
        p.address,
        p.kind,
        p.haproxy.as_ref().map(|h| h.name.clone()),
    )
}

/// None when caught up, else why not (for the progress and timeout messages).
pub fn lagging(p: &Prober, goal: Goal, fall: u32, rise: u32) -> Option<String> {
    if let Some(h) = &p.haproxy {
        let done = match goal {
            Goal::Out => !h.is_up(),
            Goal::In => h.is_up(),
        };
        return (!done).then(|| format!("HAProxy {} still reports {}", h.node, h.state));
    }
    let need = match (p.kind, goal) {
        ("agent", _) => 1,
        (_, Goal::Out) => fall,
        (_, Goal::In) => rise,
    };
    let want_up = goal == Goal::In;
    let have = if p.streak_up == Some(want_up) {
        p.streak
    } else {
        0
    };
    (have < need).then(|| {
        format!(
            "{have} of {need} answers saying {}",
            if want_up { "up" } else { "out" }
        )
    })
}

fn done_text(p: &Prober, goal: Goal) -> String {
    match &p.haproxy {
        Some(h) => format!("{}: HAProxy {} reports {}", p.label(), h.node, h.state),
        None => format!(
            "{}: has read {} answers in a row saying {}",
            p.label(),
            p.streak,
            if goal == Goal::In { "up" } else { "out" }
        ),
    }
}

/// Waits for every target; progress lines go to `progress` as they happen. Ok: what was
/// seen; Err: who has not caught up when `timeout` ran out.
pub async fn wait(
    targets: Vec<Target>,
    timeout: Duration,
    progress: mpsc::UnboundedSender<String>,
) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut summary = Vec::new();
    for t in targets {
        let mut changed = t.stats.subscribe();
        let since = micros(SystemTime::now()).saturating_sub(RECENT.as_micros() as u64);
        let keys: Vec<Key> = t
            .stats
            .probers()
            .iter()
            .filter(|p| p.last_seen >= since)
            .map(key)
            .collect();
        if keys.is_empty() {
            summary.push(format!(
                "{}: no prober in the last {}s; nothing to wait for",
                t.service,
                RECENT.as_secs()
            ));
            continue;
        }
        let what = if t.goal == Goal::Out {
            "take it out"
        } else {
            "put it back"
        };
        let _ = progress.send(format!(
            "{}: waiting for {} prober(s) to {what}",
            t.service,
            keys.len()
        ));
        let mut reported: Vec<Key> = Vec::new();
        loop {
            changed.borrow_and_update();
            let table = t.stats.probers();
            let mut pending = Vec::new();
            for k in &keys {
                match table.iter().find(|p| key(p) == *k) {
                    None => pending.push(format!("{} (forgotten: table full)", k.0)),
                    Some(p) => match lagging(p, t.goal, t.haproxy_fall, t.haproxy_rise) {
                        Some(why) => pending.push(format!("{} ({why})", p.label())),
                        None if !reported.contains(k) => {
                            reported.push(k.clone());
                            let _ =
                                progress.send(format!("{}: {}", t.service, done_text(p, t.goal)));
                        }
                        None => {}
                    },
                }
            }
            if pending.is_empty() {
                summary.push(format!(
                    "{}: every recent prober ({}) has acted",
                    t.service,
                    keys.len()
                ));
                break;
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() {
                    return Err(format!("{}: the service went away while waiting", t.service));
                },
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(format!(
                        "{}: timed out after {}s; not caught up: {}",
                        t.service,
                        timeout.as_secs_f64(),
                        pending.join(", ")
                    ));
                }
            }
        }
    }
    Ok(summary.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe_stats::HaproxyView;

    fn prober(streak_up: Option<bool>, streak: u32, hap: Option<&str>) -> Prober {
        Prober {
            address: "127.0.0.1".parse().unwrap(),
            kind: "http",
            count: 10,
            last_seen: 1,
            haproxy: hap.map(|s| HaproxyView {
                state: s.into(),
                name: "b/s".into(),
                node: "lb1".into(),
            }),
            streak_up,
            streak,
        }
    }

    #[test]
    fn caught_up_rules() {
        assert!(lagging(&prober(Some(false), 2, None), Goal::Out, 3, 2).is_some());
        assert!(lagging(&prober(Some(false), 3, None), Goal::Out, 3, 2).is_none());
        assert!(lagging(&prober(Some(true), 5, None), Goal::Out, 3, 2).is_some());
        assert!(lagging(&prober(Some(true), 2, None), Goal::In, 3, 2).is_none());
        // HAProxy's word beats counting.
        assert!(lagging(&prober(Some(false), 9, Some("UP 1/3")), Goal::Out, 3, 2).is_some());
        assert!(lagging(&prober(Some(false), 0, Some("DOWN")), Goal::Out, 3, 2).is_none());
        assert!(lagging(&prober(Some(false), 0, Some("MAINT")), Goal::Out, 3, 2).is_none());
        assert!(lagging(&prober(Some(true), 0, Some("DOWN 1/2")), Goal::In, 3, 2).is_some());
        assert!(lagging(&prober(Some(true), 0, Some("UP")), Goal::In, 3, 2).is_none());
        let mut agent = prober(Some(false), 1, None);
        agent.kind = "agent";
        assert!(lagging(&agent, Goal::Out, 3, 2).is_none());
    }
}
