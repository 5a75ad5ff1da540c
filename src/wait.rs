//! `disable|enable|pause|run ... --wait`: return when HAProxy has acted, as far as psentinel can
//! know from the probes it answers.
//!
//! The probers that matter are the load balancers seen in the minute before the command
//! ([`RECENT`]): those that have shown they are one ([`balancer`]). Any client of the probe
//! port is a prober, and a person's one `curl` to it would otherwise hold the wait up until its
//! timeout; such a prober is named in the progress and not waited for. A prober has caught up
//! when:
//!
//! - it sends `http-check send-state`: its latest `X-Haproxy-Server-State` says the server is
//!   not `UP` (taking out) or `UP` (putting back). HAProxy sends the state it holds *before*
//!   this probe's answer, so this is HAProxy's word, never a guess;
//! - otherwise: it read (closed after) `haproxy_fall` answers in a row saying "out" (not
//!   2xx/3xx, which HAProxy's `http-check` passes), or `haproxy_rise` saying "up", after which
//!   HAProxy with that fall/rise has acted. An agent-check prober needs one answer of the
//!   current word: `maint`/`drain`/`ready` act at once.
//!
//! A service in *warning* ([`Goal::Warning`]) is waited for as it is answered: out at an
//! agent-check (`drain`), and at an HTTP prober up or out as its `warning_status` says.
//!
//! `--wait=drained` ([`Goal::Drained`]) asks more of a prober that sends send-state: out of
//! rotation *and* `scur=0` in its latest header, i.e. HAProxy holds no session on the server.
//! That number is as fresh as the last check (HAProxy's `inter`, or `downinter` once the
//! server is down). A prober without send-state cannot tell its sessions: it counts as
//! drained once it has taken the server out, and the progress says so.
//!
//! The wait never involves the engine: it watches the service's prober table (a `watch`
//! bumped by the observer after each probe) and re-evaluates. A prober that stops probing
//! keeps the wait from finishing; at the timeout the answer names every prober not caught up.

use crate::model::{micros, Micros, State};
use crate::probe_stats::{Answer, ProbeStats, Prober};
use crate::view::Snapshot;
use std::fmt;
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
    /// disable, pause `--wait=drained`: taken out and no session left on the server.
    Drained,
    /// enable, run of a service whose check passes with a warning (`check_style = nagios`,
    /// exit 1): each prober does what psentinel answers it. An agent-check reads `drain`
    /// (DRAIN, weight 0): out. An HTTP prober reads `warning_status`: 2xx/3xx keeps the
    /// server UP (`http_in`), anything else takes it out (NOLB with `disable-on-404`, else
    /// DOWN).
    Warning { http_in: bool },
}

impl Goal {
    fn action(self) -> &'static str {
        match self {
            Goal::Out => "take it out",
            Goal::In => "put it back",
            Goal::Drained => "take it out and drain its sessions",
            Goal::Warning { http_in: true } => {
                "act on its warning (HTTP probers: put it back; agent-checks: drain it)"
            }
            Goal::Warning { http_in: false } => {
                "act on its warning (take it out of rotation: HTTP probers by warning_status, agent-checks by drain)"
            }
        }
    }

    /// What this goal asks of one kind of prober (`http`, `agent`): never [`Goal::Warning`].
    pub fn for_prober(self, kind: &str) -> Goal {
        match self {
            Goal::Warning { http_in: true } if kind != "agent" => Goal::In,
            Goal::Warning { .. } => Goal::Out,
            g => g,
        }
    }

    /// What the answers say when they ask for this goal.
    fn answers(self) -> &'static str {
        match self {
            Goal::In => "up",
            _ => "out",
        }
    }
}

/// One service to wait for.
pub struct Target {
    pub service: String,
    pub stats: Arc<ProbeStats>,
    pub goal: Goal,
    pub haproxy_fall: u32,
    pub haproxy_rise: u32,
    /// When the daemon started (µs): before that it saw no probe, so a daemon younger than
    /// [`RECENT`] cannot tell "nobody probes" from "nobody has probed *this* process yet".
    pub daemon_started: u64,
}

/// What a `--wait` command waits for, known before the command runs.
pub struct Want {
    goal: Goal,
    /// None: every pausable service (`pause`/`run` without a name).
    names: Option<Vec<String>>,
}

/// Why a wait does not even begin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotWaiting {
    #[error("{0}: gone before the wait began")]
    Gone(String),
    /// Enabled but still paused or failing its check, or a warning HAProxy's HTTP check keeps
    /// UP asked to be drained...: waiting would be in vain.
    #[error("{service} is {state} ({reason}): HAProxy will not {}; not waiting", goal.action())]
    WillNotAct {
        service: String,
        state: State,
        reason: String,
        goal: Goal,
    },
}

impl Want {
    /// `names` None: every pausable service.
    pub fn new(goal: Goal, names: Option<Vec<String>>) -> Want {
        Want { goal, names }
    }

    /// The D-Bus `WaitForHAProxy`: wait for HAProxy to act on the service's current state —
    /// put back when it is up, as answered when it is warning ([`Goal::Warning`]), taken out
    /// otherwise.
    pub fn current(service: &str, snap: &Snapshot) -> Want {
        let up = snap
            .services
            .get(service)
            .is_some_and(|v| matches!(v.state, State::Up | State::Warning));
        Want {
            goal: if up { Goal::In } else { Goal::Out },
            names: Some(vec![service.to_string()]),
        }
    }

    /// The D-Bus `WaitUntilDrained`: the service is out and HAProxy holds no session on it.
    pub fn drained(service: &str) -> Want {
        Want {
            goal: Goal::Drained,
            names: Some(vec![service.to_string()]),
        }
    }

    /// The services to wait for, from the snapshot after the change.
    pub fn targets(self, snap: &Snapshot) -> Result<Vec<Target>, NotWaiting> {
        let names = self.names.unwrap_or_else(|| {
            snap.services
                .values()
                .filter(|v| v.cfg.pausable)
                .map(|v| v.cfg.name.clone())
                .collect()
        });
        let mut targets = Vec::new();
        for n in names {
            let Some(v) = snap.services.get(&n) else {
                return Err(NotWaiting::Gone(n));
            };
            let http_in = Answer::Http(v.cfg.warning_status).in_rotation();
            let goal = match (self.goal, v.state) {
                (Goal::In, State::Up) => Some(Goal::In),
                (Goal::In, State::Warning) => Some(Goal::Warning { http_in }),
                (Goal::In, _) => None,
                // Out of rotation everywhere only when warning_status takes it out too.
                (_, State::Warning) if http_in => None,
                (_, State::Up) => None,
                (g, _) => Some(g),
            };
            let Some(goal) = goal else {
                return Err(NotWaiting::WillNotAct {
                    service: n,
                    state: v.state,
                    reason: v.reason.clone(),
                    goal: self.goal,
                });
            };
            targets.push(Target {
                service: n,
                stats: v.probes.clone(),
                goal,
                haproxy_fall: v.cfg.haproxy_fall,
                haproxy_rise: v.cfg.haproxy_rise,
                daemon_started: snap.started,
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

/// Why a prober has not caught up yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lag {
    /// Its `X-Haproxy-Server-State` still says otherwise.
    Reports { node: String, state: String },
    /// Out of rotation, but HAProxy still holds sessions on the server (`scur`).
    Sessions { node: String, sessions: u32 },
    /// It has read `have` of the `need` answers in a row it takes.
    Answers { have: u32, need: u32, goal: Goal },
}

impl fmt::Display for Lag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lag::Reports { node, state } => write!(f, "HAProxy {node} still reports {state}"),
            Lag::Sessions { node, sessions } => {
                write!(f, "HAProxy {node} still holds {sessions} session(s)")
            }
            Lag::Answers { have, need, goal } => {
                write!(f, "{have} of {need} answers saying {}", goal.answers())
            }
        }
    }
}

/// Whether a prober seen since `since` has shown that it is a load balancer, and so is waited
/// for: it sends HAProxy's send-state header, or it is an agent-check, or it probed at least
/// twice since `since` (a load balancer probes on a cadence; a person's `curl` asks once).
pub fn balancer(p: &Prober, since: Micros) -> bool {
    p.haproxy.is_some() || p.kind == "agent" || p.prev_seen >= since
}

/// None when caught up, else why not.
pub fn lagging(p: &Prober, goal: Goal, fall: u32, rise: u32) -> Option<Lag> {
    let goal = goal.for_prober(p.kind);
    if let Some(h) = &p.haproxy {
        let done = match goal {
            Goal::In => h.is_up(),
            _ => !h.is_up(),
        };
        if !done {
            return Some(Lag::Reports {
                node: h.node.clone(),
                state: h.state.clone(),
            });
        }
        return match (goal, h.scur) {
            (Goal::Drained, Some(n)) if n > 0 => Some(Lag::Sessions {
                node: h.node.clone(),
                sessions: n,
            }),
            _ => None,
        };
    }
    let need = match (p.kind, goal) {
        ("agent", _) => 1,
        (_, Goal::In) => rise,
        (_, _) => fall,
    };
    let have = if p.streak_up == Some(goal == Goal::In) {
        p.streak
    } else {
        0
    };
    (have < need).then_some(Lag::Answers { have, need, goal })
}

/// A line of progress, sent as things happen.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The daemon started less than [`RECENT`] ago and no load balancer has probed it yet.
    Unprobed {
        service: String,
        started_ago: Duration,
        wait_up_to: Duration,
    },
    /// A prober seen lately that has not shown it is a load balancer ([`balancer`]).
    Ignored { service: String, prober: String },
    Waiting {
        service: String,
        probers: usize,
        goal: Goal,
    },
    /// One prober has acted.
    Acted {
        service: String,
        prober: Prober,
        goal: Goal,
    },
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Progress::Unprobed {
                service,
                started_ago,
                wait_up_to,
            } => write!(
                f,
                "{service}: psentinel started {}s ago and has not been probed by a load balancer yet; waiting up to {}s for one",
                started_ago.as_secs(),
                wait_up_to.as_secs()
            ),
            Progress::Ignored { service, prober } => write!(
                f,
                "{service}: not waiting for {prober}: it probed once in the last {}s, without HAProxy's send-state header (a one-off such as curl, not a load balancer)",
                RECENT.as_secs()
            ),
            Progress::Waiting {
                service,
                probers,
                goal,
            } => write!(
                f,
                "{service}: waiting for {probers} prober(s) to {}",
                goal.action()
            ),
            Progress::Acted {
                service,
                prober: p,
                goal,
            } => match &p.haproxy {
                Some(h) if *goal == Goal::Drained => write!(
                    f,
                    "{service}: {}: HAProxy {} reports {}, {} session(s)",
                    p.label(),
                    h.node,
                    h.state,
                    h.scur.unwrap_or(0)
                ),
                Some(h) => write!(
                    f,
                    "{service}: {}: HAProxy {} reports {}",
                    p.label(),
                    h.node,
                    h.state
                ),
                None => write!(
                    f,
                    "{service}: {}: has read {} answers in a row saying {}{}",
                    p.label(),
                    p.streak,
                    goal.for_prober(p.kind).answers(),
                    if *goal == Goal::Drained {
                        "; its sessions are unknown (no http-check send-state)"
                    } else {
                        ""
                    }
                ),
            },
        }
    }
}

/// How the wait ended for one service, when every prober caught up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caught {
    /// Every prober seen in the last [`RECENT`] has acted.
    Acted {
        service: String,
        probers: usize,
        goal: Goal,
    },
    /// No load balancer probed lately: nothing to wait for.
    NoProbers { service: String },
}

impl fmt::Display for Caught {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caught::Acted {
                service,
                probers,
                goal: Goal::Drained,
            } => write!(
                f,
                "{service}: drained: every recent prober ({probers}) has taken it out and holds no session on it"
            ),
            Caught::Acted {
                service, probers, ..
            } => write!(f, "{service}: every recent prober ({probers}) has acted"),
            Caught::NoProbers { service } => write!(
                f,
                "{service}: no load balancer probed in the last {}s; nothing to wait for",
                RECENT.as_secs()
            ),
        }
    }
}

/// A prober that has not caught up: its label and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub prober: String,
    /// None: forgotten (the prober table was full).
    pub lag: Option<Lag>,
}

impl fmt::Display for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.lag {
            Some(lag) => write!(f, "{} ({lag})", self.prober),
            None => write!(f, "{} (forgotten: table full)", self.prober),
        }
    }
}

/// Why the wait ended before every prober caught up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotCaught {
    #[error("{service}: timed out after {}s; not caught up: {}", timeout.as_secs_f64(), list(pending))]
    TimedOut {
        service: String,
        timeout: Duration,
        pending: Vec<Pending>,
    },
    /// The timeout ran out before any load balancer reached a daemon that had just started.
    #[error("{service}: timed out after {}s; no load balancer has reached psentinel since it started, so whether HAProxy has acted is unknown", timeout.as_secs_f64())]
    Unprobed { service: String, timeout: Duration },
    #[error("{0}: the service went away while waiting")]
    Gone(String),
}

fn list(pending: &[Pending]) -> String {
    let v: Vec<String> = pending.iter().map(ToString::to_string).collect();
    v.join(", ")
}

/// The probers seen in the last [`RECENT`]: the load balancers to wait for, and the labels of
/// the others.
fn recent(stats: &ProbeStats) -> (Vec<Key>, Vec<String>) {
    let since = micros(SystemTime::now()).saturating_sub(RECENT.as_micros() as u64);
    let (lbs, others): (Vec<Prober>, Vec<Prober>) = stats
        .probers()
        .into_iter()
        .filter(|p| p.last_seen >= since)
        .partition(|p| balancer(p, since));
    (
        lbs.iter().map(key).collect(),
        others.iter().map(Prober::label).collect(),
    )
}

/// Waits for every target; progress goes to `progress` as it happens. Ok: how each service
/// ended; Err: the first service whose probers had not caught up when `timeout` ran out.
pub async fn wait(
    targets: Vec<Target>,
    timeout: Duration,
    progress: mpsc::UnboundedSender<Progress>,
) -> Result<Vec<Caught>, NotCaught> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut summary = Vec::new();
    for t in targets {
        let mut changed = t.stats.subscribe();
        let (mut keys, mut ignored) = recent(&t.stats);
        if keys.is_empty() {
            // Just after a restart (an upgrade) the probers of the last minute probed the
            // previous process: wait for the first load balancer to reach this one (shown
            // by its header, or by its second probe), else a deploy script's
            // `disable --wait` would go ahead while HAProxy still sends traffic.
            let now = micros(SystemTime::now());
            let blind_until = t.daemon_started.saturating_add(RECENT.as_micros() as u64);
            if now < blind_until {
                let left = Duration::from_micros(blind_until - now);
                let _ = progress.send(Progress::Unprobed {
                    service: t.service.clone(),
                    started_ago: Duration::from_micros(now.saturating_sub(t.daemon_started)),
                    wait_up_to: left,
                });
                let until = tokio::time::Instant::now() + left;
                let timed_out = deadline < until;
                loop {
                    changed.borrow_and_update();
                    (keys, ignored) = recent(&t.stats);
                    if !keys.is_empty() {
                        break;
                    }
                    tokio::select! {
                        r = changed.changed() => if r.is_err() {
                            return Err(NotCaught::Gone(t.service));
                        },
                        _ = tokio::time::sleep_until(deadline.min(until)) => break,
                    }
                }
                if keys.is_empty() && timed_out {
                    return Err(NotCaught::Unprobed {
                        service: t.service,
                        timeout,
                    });
                }
            }
        }
        for prober in ignored {
            let _ = progress.send(Progress::Ignored {
                service: t.service.clone(),
                prober,
            });
        }
        if keys.is_empty() {
            summary.push(Caught::NoProbers { service: t.service });
            continue;
        }
        let _ = progress.send(Progress::Waiting {
            service: t.service.clone(),
            probers: keys.len(),
            goal: t.goal,
        });
        let mut reported: Vec<Key> = Vec::new();
        loop {
            changed.borrow_and_update();
            let table = t.stats.probers();
            let mut pending = Vec::new();
            for k in &keys {
                match table.iter().find(|p| key(p) == *k) {
                    None => pending.push(Pending {
                        prober: k.0.to_string(),
                        lag: None,
                    }),
                    Some(p) => match lagging(p, t.goal, t.haproxy_fall, t.haproxy_rise) {
                        Some(lag) => pending.push(Pending {
                            prober: p.label(),
                            lag: Some(lag),
                        }),
                        None if !reported.contains(k) => {
                            reported.push(k.clone());
                            let _ = progress.send(Progress::Acted {
                                service: t.service.clone(),
                                prober: p.clone(),
                                goal: t.goal,
                            });
                        }
                        None => {}
                    },
                }
            }
            if pending.is_empty() {
                summary.push(Caught::Acted {
                    service: t.service.clone(),
                    probers: keys.len(),
                    goal: t.goal,
                });
                break;
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() {
                    return Err(NotCaught::Gone(t.service));
                },
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(NotCaught::TimedOut { service: t.service, timeout, pending });
                }
            }
        }
    }
    Ok(summary)
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
            prev_seen: 0,
            haproxy: hap.map(|s| HaproxyView {
                state: s.into(),
                name: "b/s".into(),
                node: "lb1".into(),
                weight: Some(1),
                total_weight: Some(2),
                scur: Some(0),
            }),
            streak_up,
            streak,
            agent_word: None,
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

    #[test]
    fn a_warning_is_caught_up_when_each_prober_has_what_it_was_answered() {
        let kept = Goal::Warning { http_in: true };
        let out = Goal::Warning { http_in: false };
        let mut agent = prober(Some(false), 1, None);
        agent.kind = "agent";
        // The agent-check reads `drain`: one answer and it is out (DRAIN), either way.
        assert_eq!(lagging(&agent, kept, 3, 2), None);
        assert_eq!(lagging(&agent, out, 3, 2), None);
        agent.streak_up = Some(true);
        assert!(lagging(&agent, kept, 3, 2).is_some(), "still `up`");
        // warning_status 2xx/3xx: HTTP probers keep it UP, after `rise` of them.
        assert_eq!(lagging(&prober(Some(true), 2, None), kept, 3, 2), None);
        assert_eq!(
            lagging(&prober(Some(true), 1, None), kept, 3, 2),
            Some(Lag::Answers {
                have: 1,
                need: 2,
                goal: Goal::In
            })
        );
        assert_eq!(
            lagging(&prober(Some(true), 0, Some("UP")), kept, 3, 2),
            None
        );
        assert!(lagging(&prober(Some(true), 0, Some("DOWN 1/2")), kept, 3, 2).is_some());
        // Otherwise (404 with disable-on-404: NOLB) out, after `fall` of them.
        assert_eq!(lagging(&prober(Some(false), 3, None), out, 3, 2), None);
        assert!(lagging(&prober(Some(false), 2, None), out, 3, 2).is_some());
        assert_eq!(
            lagging(&prober(Some(false), 0, Some("NOLB")), out, 3, 2),
            None
        );
        assert!(lagging(&prober(Some(false), 0, Some("UP")), out, 3, 2).is_some());
    }

    /// One probe of `kind` answered for `state` (HTTP with `status`; a warning's agent word is
    /// `drain up`), folded in as the observer would.
    fn answered(t: &Target, kind: crate::probe_stats::ProbeKind, state: State, status: u16) {
        use crate::probe_stats::{Answer, ProbeKind, Tap};
        let (tx, mut rx) = mpsc::channel(1);
        let answer = match kind {
            ProbeKind::Http => Answer::Http(status),
            ProbeKind::Agent => Answer::Agent(state),
        };
        Tap::new(t.stats.clone(), tx).record(
            "10.0.0.1".parse().unwrap(),
            kind,
            answer,
            Some(state),
            true,
            None,
        );
        t.stats.observe(&rx.try_recv().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn enable_wait_of_a_warning_returns_once_http_keeps_it_and_the_agent_drains_it() {
        use crate::probe_stats::ProbeKind::{Agent, Http};
        let old = micros(SystemTime::now()) - 2 * RECENT.as_micros() as u64;
        let mut t = unprobed(old);
        t.goal = Goal::Warning { http_in: true };
        let stats = t.stats.clone();
        // Disabled, then enabled into a warning: 503 then warning_status=200; agent `maint`
        // then `drain` (out both times, but HAProxy shows DRAIN only once it has read it).
        answered(&t, Http, State::Disabled, 503);
        answered(&t, Agent, State::Disabled, 0);
        answered(&t, Http, State::Warning, 200);
        answered(&t, Agent, State::Warning, 0);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let waiter = tokio::spawn(wait(vec![t], Duration::from_secs(60), tx));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!waiter.is_finished(), "1 of rise=2 HTTP answers");
        let later = Target {
            stats,
            ..unprobed(old)
        };
        answered(&later, Http, State::Warning, 200);
        let done = waiter.await.unwrap().unwrap();
        assert_eq!(
            done[0].to_string(),
            "web: every recent prober (2) has acted"
        );
        let lines: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            lines,
            [
                "web: waiting for 2 prober(s) to act on its warning (HTTP probers: put it back; agent-checks: drain it)",
                "web: 10.0.0.1 (agent-check): has read 1 answers in a row saying out",
                "web: 10.0.0.1: has read 2 answers in a row saying up",
            ]
        );

        // warning_status=404: every prober takes it out.
        let mut t = unprobed(old);
        t.goal = Goal::Warning { http_in: false };
        for _ in 0..3 {
            answered(&t, Http, State::Warning, 404);
        }
        let (tx, _rx) = mpsc::unbounded_channel();
        let done = wait(vec![t], Duration::from_secs(5), tx).await.unwrap();
        assert_eq!(
            done[0].to_string(),
            "web: every recent prober (1) has acted"
        );
    }

    #[test]
    fn a_prober_is_waited_for_once_it_has_shown_it_is_a_load_balancer() {
        let since = 1_000;
        // A person's curl: once, no header.
        let mut curl = prober(Some(true), 1, None);
        curl.last_seen = 2_000;
        assert!(!balancer(&curl, since));
        // Twice, but the first long ago: still a one-off each time.
        curl.prev_seen = 500;
        assert!(!balancer(&curl, since));
        // A second probe within the window: a load balancer without send-state.
        curl.prev_seen = 1_500;
        assert!(balancer(&curl, since));
        // HAProxy's header, or an agent-check: its first probe counts (after a restart).
        let hap = prober(Some(true), 1, Some("UP"));
        assert!(balancer(&hap, since));
        let mut agent = prober(Some(true), 1, None);
        agent.kind = "agent";
        assert!(balancer(&agent, since));
    }

    fn unprobed(daemon_started: u64) -> Target {
        Target {
            service: "web".into(),
            stats: ProbeStats::new("web"),
            goal: Goal::Out,
            haproxy_fall: 3,
            haproxy_rise: 2,
            daemon_started,
        }
    }

    /// One probe by hand, as the observer folds it in.
    fn curl(t: &Target) {
        use crate::probe_stats::{Answer, ProbeKind, Tap};
        let (tx, mut rx) = mpsc::channel(1);
        let ip = "127.0.0.1".parse().unwrap();
        let up = Some(State::Up);
        Tap::new(t.stats.clone(), tx).record(
            ip,
            ProbeKind::Http,
            Answer::Http(200),
            up,
            true,
            None,
        );
        t.stats.observe(&rx.try_recv().unwrap());
    }

    #[test]
    fn drained_means_out_and_no_session() {
        let mut p = prober(Some(false), 0, Some("DOWN"));
        let sessions = |p: &mut Prober, n| p.haproxy.as_mut().unwrap().scur = Some(n);
        sessions(&mut p, 2);
        assert_eq!(lagging(&p, Goal::Out, 3, 2), None, "out is out");
        assert_eq!(
            lagging(&p, Goal::Drained, 3, 2),
            Some(Lag::Sessions {
                node: "lb1".into(),
                sessions: 2
            })
        );
        sessions(&mut p, 0);
        assert_eq!(lagging(&p, Goal::Drained, 3, 2), None);
        // Still in rotation with no session: not drained.
        let up = prober(Some(false), 9, Some("UP 2/3"));
        assert!(matches!(
            lagging(&up, Goal::Drained, 3, 2),
            Some(Lag::Reports { .. })
        ));
        // Without send-state: as for out (sessions unseen).
        assert_eq!(
            lagging(&prober(Some(false), 3, None), Goal::Drained, 3, 2),
            None
        );
    }

    /// A probe with HAProxy's header, folded in as the observer would.
    fn hap(t: &Target, header: &str) {
        use crate::probe_stats::{Answer, ProbeKind, Tap};
        let (tx, mut rx) = mpsc::channel(1);
        Tap::new(t.stats.clone(), tx).record(
            "10.0.0.1".parse().unwrap(),
            ProbeKind::Http,
            Answer::Http(503),
            Some(State::Disabled),
            true,
            Some(header.as_bytes()),
        );
        t.stats.observe(&rx.try_recv().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn wait_drained_returns_when_the_last_session_ends_or_names_who_holds_them() {
        let old = micros(SystemTime::now()) - 2 * RECENT.as_micros() as u64;
        let mut t = unprobed(old);
        t.goal = Goal::Drained;
        hap(&t, "DOWN; name=be/web1; node=lb1; weight=1/1; scur=2/2");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let err = wait(vec![t], Duration::from_secs(3), tx.clone())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "web: timed out after 3s; not caught up: 10.0.0.1 (lb1 be/web1) (HAProxy lb1 still holds 2 session(s))"
        );

        let mut t = unprobed(old);
        t.goal = Goal::Drained;
        hap(&t, "DOWN; name=be/web1; node=lb1; weight=1/1; scur=1/1");
        let stats = t.stats.clone();
        let waiter = tokio::spawn(wait(vec![t], Duration::from_secs(60), tx));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished(), "one session left");
        let later = Target {
            stats,
            ..unprobed(old)
        };
        hap(&later, "DOWN; name=be/web1; node=lb1; weight=1/1; scur=0/0");
        let done = waiter.await.unwrap().unwrap();
        assert_eq!(
            done[0].to_string(),
            "web: drained: every recent prober (1) has taken it out and holds no session on it"
        );
        let lines: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|p| p.to_string())
            .collect();
        assert!(
            lines
                .iter()
                .any(|l| l.ends_with("reports DOWN, 0 session(s)")),
            "{lines:?}"
        );
    }

    #[tokio::test]
    async fn a_curl_is_named_and_not_waited_for_nor_taken_for_the_first_load_balancer() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let old = unprobed(micros(SystemTime::now()) - 2 * RECENT.as_micros() as u64);
        curl(&old);
        let out = wait(vec![old], Duration::from_secs(5), tx.clone()).await;
        assert_eq!(
            out,
            Ok(vec![Caught::NoProbers {
                service: "web".into()
            }])
        );
        let line = rx.try_recv().unwrap().to_string();
        assert!(
            line.starts_with("web: not waiting for 127.0.0.1: it probed once"),
            "{line}"
        );

        // A daemon that just started keeps waiting for a load balancer.
        let young = unprobed(micros(SystemTime::now()));
        curl(&young);
        let err = wait(vec![young], Duration::from_millis(100), tx)
            .await
            .unwrap_err();
        assert!(matches!(err, NotCaught::Unprobed { .. }), "{err}");
    }

    #[tokio::test]
    async fn unprobed_service_nothing_to_wait_for_only_once_the_daemon_is_a_minute_old() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let old = micros(SystemTime::now()) - 2 * RECENT.as_micros() as u64;
        let out = wait(vec![unprobed(old)], Duration::from_secs(5), tx.clone())
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![Caught::NoProbers {
                service: "web".into()
            }]
        );

        let young = micros(SystemTime::now());
        let err = wait(vec![unprobed(young)], Duration::from_millis(100), tx)
            .await
            .unwrap_err();
        assert!(matches!(err, NotCaught::Unprobed { .. }), "{err}");
    }
}
