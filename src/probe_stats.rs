//! Probe statistics: per-service probe counters, the table of probers and HAProxy's own view
//! of the server (`http-check send-state`).
//!
//! A probe must never wait, so the probe responders touch only what costs nothing:
//!
//! - **Hot path** ([`Tap::record`], called by [`crate::probe`] once per answered connection):
//!   two relaxed atomic adds and a store on the service's [`ProbeStats`] (answers by HTTP
//!   status / agent word, last probe time), then a `try_send` of a small [`Seen`] record on a
//!   bounded channel to the observer task ([`crate::observer`]). No lock, no engine message,
//!   no allocation unless HAProxy sent its state header (then one copy of that header's
//!   value, at most [`MAX_HEADER`] bytes). When the observer falls behind, records are dropped
//!   and counted (`psentinel_probe_events_dropped_total`), the answers are not.
//! - **Observer** (one task per daemon): folds each [`Seen`] into the bounded prober table
//!   ([`MAX_PROBERS`] per service, the least recently seen evicted) and wakes `--wait`ers
//!   through a `watch`. The table sits behind a `std::sync::Mutex` that only the observer
//!   writes and only readers off the hot path (`status`, metrics, waiters) read, each for a
//!   copy.
//!
//! [`ProbeStats`] is created by the engine per service and kept across reloads for services
//! that stay, so counters and the prober table survive a reload; the engine hands it to the
//! service's listener tasks (inside a [`Tap`]) and puts it in the
//! [`crate::view::ServiceView`] so that every reader of the snapshot finds it.

use crate::linger::Linger;
use crate::model::{micros, Micros, State};
use serde::Serialize;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::{mpsc, watch};

/// Probers remembered per service; past this the least recently seen is forgotten.
pub const MAX_PROBERS: usize = 64;
/// Longest `X-Haproxy-Server-State` value kept (HAProxy's is about 80 bytes).
pub const MAX_HEADER: usize = 256;
/// Probes between the hot path and the observer; past this, records are dropped and counted.
pub const CHANNEL: usize = 8192;
/// Distinct answers counted per service (HTTP statuses and agent words).
const ANSWER_SLOTS: usize = 16;

/// The two kinds of probe port a service may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProbeKind {
    Http,
    Agent,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Http => "http probe",
            ProbeKind::Agent => "agent-check",
        }
    }
}

/// What a probe was answered with, for `psentinel_probes_total{kind,answer}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Http(u16),
    /// The agent word, by the state it stands for.
    Agent(State),
}

impl Answer {
    fn key(self) -> u32 {
        match self {
            Answer::Http(s) => u32::from(s),
            Answer::Agent(st) => 100_000 + st as u32,
        }
    }

    fn from_key(k: u32) -> Option<Answer> {
        match k {
            0 => None,
            k if k >= 100_000 => State::ALL
                .iter()
                .find(|s| **s as u32 == k - 100_000)
                .map(|s| Answer::Agent(*s)),
            k => u16::try_from(k).ok().map(Answer::Http),
        }
    }

    /// Whether HAProxy keeps the server in rotation on this answer: an HTTP status its
    /// `http-check` passes (2xx, 3xx: a `warning_status` of 200 keeps a warning server UP), an
    /// agent `up`. Everything else takes it out: DOWN, NOLB (404 with `disable-on-404`), MAINT,
    /// DRAIN (weight 0: a paused or warning service's agent `drain`).
    pub fn in_rotation(self) -> bool {
        match self {
            Answer::Http(s) => (200..400).contains(&s),
            Answer::Agent(st) => st == State::Up,
        }
    }

    /// The agent word HAProxy acts on (`up`, `down`, `maint`, `drain`); None for HTTP.
    pub fn agent_word(self) -> Option<&'static str> {
        match self {
            Answer::Http(_) => None,
            Answer::Agent(st) => Some(match st {
                State::Up => "up",
                State::Down | State::Starting => "down",
                State::Disabled => "maint",
                State::Paused | State::Warning => "drain",
            }),
        }
    }

    /// ("http", "503") or ("agent", "maint").
    pub fn labels(self) -> (&'static str, String) {
        match self {
            Answer::Http(s) => ("http", s.to_string()),
            Answer::Agent(_) => ("agent", self.agent_word().unwrap_or_default().to_string()),
        }
    }
}

struct Slot {
    key: AtomicU32,
    count: AtomicU64,
}

/// Per-service probe statistics. See the module doc for who writes what.
pub struct ProbeStats {
    pub service: Arc<str>,
    slots: [Slot; ANSWER_SLOTS],
    last_probe_us: AtomicU64,
    dropped: AtomicU64,
    table: Mutex<Vec<Prober>>,
    /// Bumped by the observer after every change of the table: `--wait` waits on it.
    changed: watch::Sender<u64>,
}

impl std::fmt::Debug for ProbeStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeStats")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// HAProxy's view of the server, from `X-Haproxy-Server-State`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HaproxyView {
    /// `UP`, `UP 2/3` (going down), `DOWN`, `DOWN 1/2` (going up), `NOLB`, `MAINT`...
    pub state: String,
    /// `backend/server`.
    pub name: String,
    /// The HAProxy node (`node` in its global section, else its hostname).
    pub node: String,
    /// `weight=3/10`: this server's effective weight (3), and the total weight of the servers
    /// the backend can use now (10: the active ones, or the backups when no active one is).
    pub weight: Option<u32>,
    pub total_weight: Option<u32>,
    /// `scur=2/7`: sessions HAProxy has on this server (the backend's are not kept).
    pub scur: Option<u32>,
}

impl HaproxyView {
    /// HAProxy sends traffic to the server (UP, whatever its counters say).
    pub fn is_up(&self) -> bool {
        self.state.split_whitespace().next() == Some("UP")
    }

    /// The backend part of `backend/server`.
    pub fn backend(&self) -> &str {
        self.name.split_once('/').map_or(&self.name, |(b, _)| b)
    }

    /// Counted in the backend's usable weight: UP (also while going down) with a weight.
    /// NOLB (draining) and DOWN servers have left the total already.
    pub fn usable(&self) -> bool {
        self.is_up() && self.weight != Some(0)
    }
}

/// The first number of `3/10`.
fn first_number(v: &str) -> Option<u32> {
    v.split('/').next()?.trim().parse().ok()
}

/// Parses `UP 2/3; name=bck/srv1; node=lb1; weight=1/1; scur=0/0; qcur=0` (HAProxy 2.x and
/// later put `address=...; port=...;` before `name`). Called by the observer, never on the
/// probe's path.
pub fn parse_haproxy_state(raw: &str) -> Option<HaproxyView> {
    let mut parts = raw.split(';').map(str::trim);
    let state = parts.next().filter(|s| !s.is_empty())?.to_string();
    let mut v = HaproxyView {
        state,
        name: String::new(),
        node: String::new(),
        weight: None,
        total_weight: None,
        scur: None,
    };
    for p in parts {
        match p.split_once('=') {
            Some(("name", n)) => v.name = n.to_string(),
            Some(("node", n)) => v.node = n.to_string(),
            Some(("weight", w)) => {
                v.weight = first_number(w);
                v.total_weight = w.split_once('/').and_then(|(_, t)| t.trim().parse().ok());
            }
            Some(("scur", n)) => v.scur = first_number(n),
            _ => {}
        }
    }
    Some(v)
}

/// One source of probes for one service.
#[derive(Debug, Clone, Serialize)]
pub struct Prober {
    pub address: IpAddr,
    /// `http` or `agent`.
    pub kind: &'static str,
    pub count: u64,
    /// µs since the epoch.
    pub last_seen: Micros,
    /// The probe before the last one (0: none): a load balancer probes on a cadence, a
    /// person's `curl` once (see `wait::balancer`).
    #[serde(skip)]
    pub prev_seen: Micros,
    /// Present when HAProxy sends `http-check send-state`.
    pub haproxy: Option<HaproxyView>,
    /// Whether the last answers kept the server in rotation ([`Answer::in_rotation`]); None
    /// before any state answer.
    #[serde(skip)]
    pub streak_up: Option<bool>,
    /// How many answers in a row said `streak_up` and were read by the prober (it closed
    /// after our answer): what HAProxy counts against its rise/fall.
    #[serde(skip)]
    pub streak: u32,
    /// The agent word of the streak (agent-check probers only).
    #[serde(skip)]
    pub agent_word: Option<&'static str>,
}

impl Prober {
    /// Identity in the table: address, kind and HAProxy's server name (one HAProxy may check
    /// this port for several backends, each with its own state).
    fn same(&self, address: IpAddr, kind: &str, name: Option<&str>) -> bool {
        self.address == address
            && self.kind == kind
            && self.haproxy.as_ref().map(|h| h.name.as_str()) == name
    }

    /// A short name for people: `127.0.0.1 (lb1 bck/srv1)`.
    pub fn label(&self) -> String {
        match &self.haproxy {
            Some(h) => format!("{} ({} {})", self.address, h.node, h.name),
            None if self.kind == "agent" => format!("{} (agent-check)", self.address),
            None => self.address.to_string(),
        }
    }
}

/// One answered probe, from the hot path to the observer.
pub struct Seen {
    pub(crate) stats: Arc<ProbeStats>,
    pub(crate) address: IpAddr,
    kind: ProbeKind,
    /// None for a 400/431, which answers no state.
    answer: Option<Answer>,
    /// The prober closed after reading our answer: it has acted on it.
    pub(crate) acked: bool,
    pub(crate) at: Micros,
    haproxy: Option<Box<str>>,
    /// The answered connection, while the observer waits for the prober's close (which
    /// then sets `acked`); see [`crate::linger`].
    pub(crate) linger: Option<Linger>,
}

impl ProbeStats {
    pub fn new(service: &str) -> Arc<ProbeStats> {
        Arc::new(ProbeStats {
            service: Arc::from(service),
            slots: std::array::from_fn(|_| Slot {
                key: AtomicU32::new(0),
                count: AtomicU64::new(0),
            }),
            last_probe_us: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            table: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
        })
    }

    /// Lock-free: find the answer's slot or claim an empty one.
    fn count(&self, a: Answer) {
        let key = a.key();
        for s in &self.slots {
            let k = s.key.load(Relaxed);
            if k == key {
                s.count.fetch_add(1, Relaxed);
                return;
            }
            if k == 0 {
                match s.key.compare_exchange(0, key, Relaxed, Relaxed) {
                    Ok(_) => {
                        s.count.fetch_add(1, Relaxed);
                        return;
                    }
                    Err(k) if k == key => {
                        s.count.fetch_add(1, Relaxed);
                        return;
                    }
                    Err(_) => continue,
                }
            }
        }
        // More distinct answers than slots (statuses change by reload): not counted by kind.
    }

    /// Answers so far, sorted.
    pub fn answers(&self) -> Vec<(Answer, u64)> {
        let mut v: Vec<(Answer, u64)> = self
            .slots
            .iter()
            .filter_map(|s| {
                Answer::from_key(s.key.load(Relaxed)).map(|a| (a, s.count.load(Relaxed)))
            })
            .collect();
        v.sort_by_key(|(a, _)| a.key());
        v
    }

    pub fn probes_total(&self) -> u64 {
        self.answers().iter().map(|(_, c)| c).sum()
    }

    /// µs since the epoch of the last answered probe; 0 = never.
    pub fn last_probe(&self) -> Micros {
        self.last_probe_us.load(Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// A copy of the prober table, most recently seen first.
    pub fn probers(&self) -> Vec<Prober> {
        let mut v = self.table.lock().expect("prober table").clone();
        v.sort_by_key(|p| std::cmp::Reverse(p.last_seen));
        v
    }

    /// Woken after every change of the prober table.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Observer side: folds one probe into the table.
    pub(crate) fn observe(&self, seen: &Seen) {
        let kind = match seen.kind {
            ProbeKind::Http => "http",
            ProbeKind::Agent => "agent",
        };
        let view = seen.haproxy.as_deref().and_then(parse_haproxy_state);
        let name = view.as_ref().map(|v| v.name.as_str());
        {
            let mut t = self.table.lock().expect("prober table");
            let i = match t.iter().position(|p| p.same(seen.address, kind, name)) {
                Some(i) => i,
                None => {
                    if t.len() >= MAX_PROBERS {
                        let oldest = (0..t.len())
                            .min_by_key(|&i| t[i].last_seen)
                            .expect("table is full");
                        t.swap_remove(oldest);
                    }
                    t.push(Prober {
                        address: seen.address,
                        kind,
                        count: 0,
                        last_seen: 0,
                        prev_seen: 0,
                        haproxy: None,
                        streak_up: None,
                        streak: 0,
                        agent_word: None,
                    });
                    t.len() - 1
                }
            };
            let p = &mut t[i];
            p.count += 1;
            if seen.at >= p.last_seen {
                p.prev_seen = p.last_seen;
                p.last_seen = seen.at;
            } else {
                // Reached the observer late (probes run concurrently): still one of the two.
                p.prev_seen = p.prev_seen.max(seen.at);
            }
            if view.is_some() {
                p.haproxy = view;
            }
            if let Some(a) = seen.answer {
                let up = a.in_rotation();
                // An agent word acts at once, each differently (MAINT, DRAIN): a new word
                // starts a new streak even when the server stays out of rotation, so that
                // `--wait` sees HAProxy read `drain` after `maint`, not only "out".
                if p.streak_up != Some(up) || p.agent_word != a.agent_word() {
                    p.agent_word = a.agent_word();
                    // A different answer: HAProxy's count starts again (at 1 if it read it).
                    p.streak_up = Some(up);
                    p.streak = 0;
                }
                if seen.acked {
                    p.streak = p.streak.saturating_add(1);
                }
            }
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// What the hot path holds for one service: its stats and the way to the observer.
#[derive(Clone)]
pub struct Tap {
    pub stats: Arc<ProbeStats>,
    pub(crate) tx: mpsc::Sender<Seen>,
}

impl Tap {
    pub fn new(stats: Arc<ProbeStats>, tx: mpsc::Sender<Seen>) -> Tap {
        Tap { stats, tx }
    }

    /// One answered probe whose close was already seen (`acked`) or will never be. Never
    /// blocks, never locks.
    pub fn record(
        &self,
        address: IpAddr,
        kind: ProbeKind,
        answer: Answer,
        state: Option<State>,
        acked: bool,
        haproxy: Option<&[u8]>,
    ) {
        self.send(address, kind, answer, state, acked, haproxy, None);
    }

    /// One answered probe whose connection the observer watches for the prober's close.
    /// When the observer cannot take it (its queue is full) the connection closes at once:
    /// the answer was written whole, and the request was read whole.
    pub fn record_lingering(
        &self,
        address: IpAddr,
        kind: ProbeKind,
        answer: Answer,
        state: Option<State>,
        haproxy: Option<&[u8]>,
        linger: Linger,
    ) {
        self.send(address, kind, answer, state, false, haproxy, Some(linger));
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        address: IpAddr,
        kind: ProbeKind,
        answer: Answer,
        state: Option<State>,
        acked: bool,
        haproxy: Option<&[u8]>,
        linger: Option<Linger>,
    ) {
        let at = micros(SystemTime::now());
        self.stats.count(answer);
        self.stats.last_probe_us.fetch_max(at, Relaxed);
        let seen = Seen {
            stats: self.stats.clone(),
            // `::ffff:127.0.0.1` (a dual-stack socket's view of an IPv4 peer) shown as `127.0.0.1`.
            address: address.to_canonical(),
            kind,
            answer: state.map(|_| answer),
            acked,
            at,
            haproxy: haproxy.map(|h| {
                let h = &h[..h.len().min(MAX_HEADER)];
                String::from_utf8_lossy(h).into()
            }),
            linger,
        };
        if self.tx.try_send(seen).is_err() {
            self.stats.dropped.fetch_add(1, Relaxed);
        }
    }
}

/// Finds the value of `X-Haproxy-Server-State` in a request head, without allocating.
/// The cheapest test first: most probes have no such header.
pub fn haproxy_header(head: &[u8]) -> Option<&[u8]> {
    const NAME: &[u8] = b"x-haproxy-server-state:";
    let mut rest = head;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        rest = &rest[nl + 1..];
        if rest.len() >= NAME.len() && rest[..NAME.len()].eq_ignore_ascii_case(NAME) {
            let v = &rest[NAME.len()..];
            let end = v.iter().position(|&b| b == b'\n').unwrap_or(v.len());
            return Some(v[..end].trim_ascii());
        }
        if rest.starts_with(b"\r\n") || rest.starts_with(b"\n") {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_state_header() {
        let v =
            parse_haproxy_state("UP 2/3; name=bck/srv1; node=lb1; weight=1/1; scur=0/0; qcur=0")
                .unwrap();
        assert_eq!(
            v,
            HaproxyView {
                state: "UP 2/3".into(),
                name: "bck/srv1".into(),
                node: "lb1".into(),
                weight: Some(1),
                total_weight: Some(1),
                scur: Some(0),
            }
        );
        assert!(v.is_up() && v.usable());
        assert_eq!(v.backend(), "bck");
        let v = parse_haproxy_state(
            "UP; address=127.0.0.1; port=80; name=be/a; node=lb2; weight=0/3; scur=4/9; qcur=0",
        )
        .unwrap();
        assert_eq!(
            (v.weight, v.total_weight, v.scur, v.usable()),
            (Some(0), Some(3), Some(4), false)
        );
        let v = parse_haproxy_state("NOLB; name=be/a; weight=2/3; scur=1/1").unwrap();
        assert!(!v.usable());
        assert!(!parse_haproxy_state("DOWN 1/2; name=b/s").unwrap().is_up());
        assert!(!parse_haproxy_state("NOLB; name=b/s").unwrap().is_up());
        assert!(parse_haproxy_state("").is_none());

        let head = b"OPTIONS / HTTP/1.0\r\nHost: x\r\nX-Haproxy-Server-State: UP; name=b/s\r\n\r\n";
        assert_eq!(haproxy_header(head), Some(&b"UP; name=b/s"[..]));
        let head = b"OPTIONS / HTTP/1.0\r\nx-haproxy-server-state:DOWN\n\n";
        assert_eq!(haproxy_header(head), Some(&b"DOWN"[..]));
        assert_eq!(
            haproxy_header(b"OPTIONS / HTTP/1.0\r\n\r\nX-Haproxy-Server-State: UP\r\n"),
            None
        );
        assert_eq!(haproxy_header(b"GET / HTTP/1.0\r\n\r\n"), None);
    }

    #[test]
    fn answers_count_lock_free_slots() {
        let s = ProbeStats::new("web");
        for _ in 0..3 {
            s.count(Answer::Http(200));
        }
        s.count(Answer::Http(503));
        s.count(Answer::Agent(State::Disabled));
        assert_eq!(
            s.answers(),
            vec![
                (Answer::Http(200), 3),
                (Answer::Http(503), 1),
                (Answer::Agent(State::Disabled), 1)
            ]
        );
        assert_eq!(
            Answer::Agent(State::Disabled).labels(),
            ("agent", "maint".into())
        );
        assert_eq!(s.probes_total(), 5);
    }

    fn seen(s: &Arc<ProbeStats>, ip: [u8; 4], state: State, acked: bool, at: u64) -> Seen {
        Seen {
            stats: s.clone(),
            address: IpAddr::from(ip),
            kind: ProbeKind::Http,
            answer: Some(Answer::Http(if state == State::Up { 200 } else { 503 })),
            acked,
            at,
            haproxy: None,
            linger: None,
        }
    }

    #[test]
    fn table_is_bounded_and_counts_streaks() {
        let s = ProbeStats::new("web");
        for i in 0..(MAX_PROBERS as u64 + 5) {
            let ip = [10, 0, (i / 256) as u8, (i % 256) as u8];
            s.observe(&seen(&s, ip, State::Up, true, 1000 + i));
        }
        let t = s.probers();
        assert_eq!(t.len(), MAX_PROBERS);
        assert!(
            t.iter().all(|p| p.last_seen >= 1005),
            "the oldest were evicted"
        );
        let s = ProbeStats::new("web");
        s.observe(&seen(&s, [1, 1, 1, 1], State::Up, true, 1));
        s.observe(&seen(&s, [1, 1, 1, 1], State::Disabled, true, 2));
        s.observe(&seen(&s, [1, 1, 1, 1], State::Disabled, false, 3));
        s.observe(&seen(&s, [1, 1, 1, 1], State::Down, true, 4));
        let p = &s.probers()[0];
        assert_eq!((p.count, p.streak_up, p.streak), (4, Some(false), 2));
        s.observe(&seen(&s, [1, 1, 1, 1], State::Up, false, 5));
        let p = &s.probers()[0];
        assert_eq!((p.streak_up, p.streak), (Some(true), 0));
    }
}
