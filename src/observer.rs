//! The observer: the one task per daemon that folds answered probes into the prober tables
//! ([`crate::probe_stats`]) and keeps the silence alarm.
//!
//! It runs off the hot path: probe responders hand it a [`Seen`] record through a bounded
//! channel and never wait for it. The record carries the answered socket
//! ([`crate::linger`]). The first record wakes the observer; it waits `COALESCE` (5 ms) for
//! more, takes what queued, and folds each record whose prober has closed by then (answer
//! read). Records whose prober has not closed yet linger and are looked at again every
//! `LOOK_AGAIN` (20 ms) until it does, or gives up (not read, after 1 s). A close is thus
//! seen at most 20 ms after it happens, as when each responder waited for it; at idle the
//! observer sleeps without a timer.
//!
//! Why these paces (docs/performance.md): one wake-up per 5 ms instead of one per probe (a
//! wake-up was a quarter of a probe's cost), while the sockets folded per wake-up (a read and a
//! close each) stay few enough not to hold up the probes that arrive meanwhile: gathering for
//! 20 ms, 32 probers at once saw a p99 of 3.9 ms (nginx 1.7 ms), for 5 ms 2.1 ms. For 2 ms,
//! serial probes paid for the extra wake-ups (p99 95 → 168 µs, +0.4 µs of CPU each). A prober
//! that holds its connection open after the answer costs a read per 20 ms, not per 5 ms.
//!
//! # Silence alarm
//!
//! A service that was being probed (at least [`MIN_PROBES_FOR_SILENCE`] probes seen) and gets
//! no probe for longer than `max(10 × median gap of its last probes, silence_min)` is silent:
//! the observer logs a warning once and tells the engine (a message on a channel of its own,
//! only on transitions), which shows it in `status` and STATUS=. The next probe clears it. The
//! observer arms one timer, for the earliest deadline of all services: no polling while idle.

use crate::model::{micros, Micros};
use crate::probe_stats::{ProbeStats, Seen, CHANNEL};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Probe times kept per service for the median gap.
const GAPS: usize = 16;
/// How long the observer gathers records after the first one woke it: prober tables, `--wait`
/// and the silence alarm see a probe whose prober closed at once this much later.
const COALESCE: Duration = Duration::from_millis(5);
/// How often the records whose prober had not closed at their first look are looked at again:
/// a close is seen at most this much later (HAProxy checks every 100 ms at the fastest).
const LOOK_AGAIN: Duration = Duration::from_millis(20);
/// Lingering records looked at in one go before the observer lets other tasks on its worker
/// run (a prober can hold thousands of answered connections open).
const LOOK_TURN: usize = 64;
/// A service counts as "being probed" once this many probes arrived.
pub const MIN_PROBES_FOR_SILENCE: usize = 3;

/// A silence alarm transition, for the engine: `Some(last probe µs)` = silent since then.
#[derive(Debug)]
pub struct Silence {
    pub service: String,
    pub since: Option<Micros>,
}

/// The observer's per-service memory for the silence alarm.
struct Watch {
    stats: Weak<ProbeStats>,
    times: VecDeque<Instant>,
    deadline: Option<Instant>,
    silent: bool,
    /// The last computed threshold and the probes since: the median of the gaps moves slowly,
    /// so it is recomputed every [`RECOMPUTE_EVERY`] probes, not on each (it was the observer's
    /// largest cost per probe).
    threshold: Option<Duration>,
    since_computed: u32,
}

const RECOMPUTE_EVERY: u32 = 8;

impl Watch {
    fn new(stats: &Arc<ProbeStats>) -> Watch {
        Watch {
            stats: Arc::downgrade(stats),
            times: VecDeque::with_capacity(GAPS),
            deadline: None,
            silent: false,
            threshold: None,
            since_computed: 0,
        }
    }

    /// Records a probe at `now` and re-arms the silence deadline.
    fn probed(&mut self, now: Instant, floor: Duration) {
        if self.times.len() == GAPS {
            self.times.pop_front();
        }
        self.times.push_back(now);
        self.since_computed += 1;
        if self.threshold.is_none() || self.since_computed >= RECOMPUTE_EVERY {
            self.threshold = silence_threshold(&self.times, floor);
            self.since_computed = 0;
        }
        self.deadline = self.threshold.map(|t| now + t);
    }
}

/// `max(10 × median gap, floor)`; None until enough probes were seen.
pub fn silence_threshold(times: &VecDeque<Instant>, floor: Duration) -> Option<Duration> {
    if times.len() < MIN_PROBES_FOR_SILENCE {
        return None;
    }
    // On the stack: this runs once per probe.
    let mut gaps = [Duration::ZERO; GAPS];
    let mut n = 0;
    for (a, b) in times.iter().zip(times.iter().skip(1)).take(GAPS) {
        gaps[n] = b.saturating_duration_since(*a);
        n += 1;
    }
    let gaps = &mut gaps[..n];
    gaps.sort_unstable();
    let median = gaps[n / 2];
    Some((median * 10).max(floor))
}

/// The task that owns the prober tables' writes and the silence timers.
pub struct Observer {
    rx: mpsc::Receiver<Seen>,
    silence_tx: mpsc::UnboundedSender<Silence>,
    floor: Duration,
    watches: BTreeMap<Arc<str>, Watch>,
}

impl Observer {
    /// The sender goes to the probe responders (inside [`crate::probe_stats::Tap`]s), the receiver of silence
    /// transitions to the engine.
    pub fn new(
        floor: Duration,
    ) -> (
        Observer,
        mpsc::Sender<Seen>,
        mpsc::UnboundedReceiver<Silence>,
    ) {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let (silence_tx, silence_rx) = mpsc::unbounded_channel();
        (
            Observer {
                rx,
                silence_tx,
                floor,
                watches: BTreeMap::new(),
            },
            tx,
            silence_rx,
        )
    }

    /// Runs until the daemon stops, then until every answered connection it watches has been
    /// closed by its prober or let go (at most [`crate::linger::LINGER`] after its answer)
    /// and no responder is left to hand it one: the daemon waits for this task with the probe
    /// connections in flight ([`crate::probe::finish_in_flight`]). Dropping a watched
    /// connection at exit instead would close it under a prober that has not read the answer
    /// yet, and a prober's bytes arriving after that close are answered with a reset.
    pub async fn run(mut self, shutdown: CancellationToken) {
        // Records of answered connections whose prober had not closed at their first look
        // (see [`crate::linger`]), in the order they were answered, and when they are looked
        // at next.
        let mut lingering: Vec<Seen> = Vec::new();
        let mut look_at: Option<Instant> = None;
        let mut fresh: Vec<Seen> = Vec::new();
        // The last wake-up found probes: the next one comes after COALESCE, without waiting
        // for a first record (one wake-up per COALESCE while probes keep coming).
        let mut busy = false;
        let mut stopping = false;
        // Every sender is gone: no responder can hand over another connection.
        let mut senders_gone = false;
        while !(stopping && senders_gone && lingering.is_empty()) {
            if busy {
                tokio::time::sleep(COALESCE).await;
            } else {
                // Idle: nothing to wait for but a probe, a look at the lingering records or a
                // silence deadline; no timer unless a service is being probed.
                let deadline = self.next_deadline().filter(|_| !stopping);
                tokio::select! {
                    _ = shutdown.cancelled(), if !stopping => {
                        stopping = true;
                        continue;
                    }
                    seen = self.rx.recv(), if !senders_gone => match seen {
                        // A probe came: take what else comes within COALESCE with it.
                        Some(s) => {
                            fresh.push(s);
                            tokio::time::sleep(COALESCE).await;
                        }
                        None => {
                            senders_gone = true;
                            continue;
                        }
                    },
                    _ = sleep_until_opt(look_at) => {}
                    _ = sleep_until_opt(deadline) => {}
                }
            }
            senders_gone |= self.take_queued(&mut fresh);
            busy = !fresh.is_empty();
            let now = Instant::now();
            let wall = micros(SystemTime::now());
            for s in fresh.drain(..) {
                if let Some(s) = self.fold(s, now, wall) {
                    lingering.push(s);
                }
            }
            if look_at.is_some_and(|at| at <= now) {
                look_at = None;
                self.look_again(&mut lingering).await;
            }
            if !lingering.is_empty() && look_at.is_none() {
                look_at = Some(Instant::now() + LOOK_AGAIN);
            }
            if !stopping && self.next_deadline().is_some_and(|at| at <= now) {
                self.on_deadline();
            }
        }
    }

    /// Moves what queued in the channel into `into`; true when every sender is gone.
    fn take_queued(&mut self, into: &mut Vec<Seen>) -> bool {
        for _ in 0..CHANNEL {
            match self.rx.try_recv() {
                Ok(s) => into.push(s),
                Err(mpsc::error::TryRecvError::Empty) => return false,
                Err(mpsc::error::TryRecvError::Disconnected) => return true,
            }
        }
        false
    }

    /// Folds the lingering records whose prober has closed (or given up) since the last look.
    async fn look_again(&mut self, lingering: &mut Vec<Seen>) {
        let now = Instant::now();
        let wall = micros(SystemTime::now());
        for (i, s) in std::mem::take(lingering).into_iter().enumerate() {
            if i > 0 && i % LOOK_TURN == 0 {
                tokio::task::yield_now().await;
            }
            if let Some(s) = self.fold(s, now, wall) {
                lingering.push(s);
            }
        }
    }

    /// Folds `s` into the tables if its prober has closed (or given up on); gives it back if
    /// not yet.
    fn fold(&mut self, mut s: Seen, now: Instant, wall: Micros) -> Option<Seen> {
        if let Some(l) = s.linger.as_mut() {
            match l.closed(now) {
                None => return Some(s),
                Some(acked) => s.acked = acked,
            }
        }
        // Closed now rather than whenever the record goes.
        s.linger = None;
        self.on_seen(s, now, wall);
        None
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.watches
            .values()
            .filter(|w| !w.silent)
            .filter_map(|w| w.deadline)
            .min()
    }

    fn on_seen(&mut self, seen: Seen, now: Instant, wall: Micros) {
        seen.stats.observe(&seen);
        // When it was answered, on the observer's clock: records are folded late (up to
        // COALESCE, or until the prober closes), the gaps between probes are not.
        let at = now
            .checked_sub(Duration::from_micros(wall.saturating_sub(seen.at)))
            .unwrap_or(now);
        let stats = &seen.stats;
        let w = self
            .watches
            .entry(stats.service.clone())
            .or_insert_with(|| Watch::new(stats));
        if !std::ptr::eq(w.stats.as_ptr(), Arc::as_ptr(stats)) {
            // The service was removed and added again: a new history.
            *w = Watch::new(stats);
        }
        w.probed(at, self.floor);
        if w.silent {
            w.silent = false;
            tracing::info!(
                psentinel_service = %stats.service,
                "{}: probes resumed from {}",
                stats.service,
                seen.address
            );
            self.tell(&stats.service, None);
        }
    }

    fn on_deadline(&mut self) {
        let now = Instant::now();
        self.watches.retain(|_, w| w.stats.strong_count() > 0);
        let mut fired = Vec::new();
        for (name, w) in self.watches.iter_mut() {
            let Some(at) = w.deadline.filter(|at| *at <= now && !w.silent) else {
                continue;
            };
            w.silent = true;
            w.deadline = None;
            let last = w.times.back().copied().unwrap_or(now);
            let threshold = at.saturating_duration_since(last);
            let since = w.stats.upgrade().map_or(0, |s| s.last_probe());
            tracing::warn!(
                psentinel_service = %name,
                "{name}: no probe for {:.1}s (threshold {:.1}s): is HAProxy still checking it?",
                now.saturating_duration_since(last).as_secs_f64(),
                threshold.as_secs_f64()
            );
            fired.push((name.clone(), since));
        }
        for (name, since) in fired {
            self.tell(&name, Some(since));
        }
    }

    fn tell(&self, service: &str, since: Option<Micros>) {
        if self
            .silence_tx
            .send(Silence {
                service: service.to_string(),
                since,
            })
            .is_err()
        {
            tracing::debug!("engine gone; silence transition of {service} not shown");
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::State;
    use crate::probe_stats::{haproxy_header, Answer, ProbeKind, Tap};
    use std::net::IpAddr;

    /// The hot path's cost per probe, and the observer's: `cargo test --release --lib
    /// record_cost -- --ignored --nocapture`. A measurement, not an assertion.
    #[test]
    #[ignore]
    fn record_cost() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let head = b"OPTIONS / HTTP/1.0\r\nX-Haproxy-Server-State: UP 2/3; name=bck/srv1; node=lb1; weight=1/1\r\n\r\n";
            let ip: IpAddr = "127.0.0.1".parse().unwrap();
            for (what, with_header) in [("plain", false), ("send-state", true)] {
                let (obs, tx, _silence) = Observer::new(Duration::from_secs(30));
                let tap = Tap::new(ProbeStats::new("web"), tx);
                // Hot path alone: the observer is not running yet, the channel has room.
                let n = (CHANNEL - 1) as u32;
                let t = std::time::Instant::now();
                for _ in 0..n {
                    let h = if with_header { haproxy_header(head) } else { None };
                    tap.record(ip, ProbeKind::Http, Answer::Http(200), Some(State::Up), true, h);
                }
                let hot = t.elapsed().as_nanos() / u128::from(n);
                // The observer: time to drain what the hot path queued.
                let stop = CancellationToken::new();
                let t = std::time::Instant::now();
                tokio::spawn(obs.run(stop.clone()));
                while tap.tx.capacity() < CHANNEL {
                    tokio::task::yield_now().await;
                }
                let observer = t.elapsed().as_nanos() / u128::from(n);
                stop.cancel();
                println!(
                    "{what}: hot path {hot} ns/probe, observer {observer} ns/probe, dropped {}",
                    tap.stats.dropped()
                );
            }
        });
    }

    /// A connection answered and handed over, its prober's end returned.
    fn answered(tap: &Tap) -> std::net::TcpStream {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let prober = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (ours, _) = l.accept().unwrap();
        ours.shutdown(std::net::Shutdown::Write).unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let linger = crate::linger::Linger::new(ours, None);
        tap.record_lingering(
            ip,
            ProbeKind::Http,
            Answer::Http(200),
            Some(State::Up),
            None,
            linger,
        );
        prober
    }

    /// The prober table's (count, streak) once it has a prober, within `limit`.
    async fn folded(stats: &ProbeStats, limit: Duration) -> Option<(u64, u32)> {
        let mut changed = stats.subscribe();
        tokio::time::timeout(limit, async {
            loop {
                if let Some(p) = stats.probers().first() {
                    return (p.count, p.streak);
                }
                changed.changed().await.unwrap();
            }
        })
        .await
        .ok()
    }

    /// A prober that closes long after the first look (5 ms) is still counted as having read
    /// the answer, once it closes; one that never closes is counted, not as read, after the
    /// linger time.
    #[tokio::test]
    async fn a_late_close_is_a_read_answer_and_no_close_is_not() {
        let (obs, tx, _silence) = Observer::new(Duration::from_secs(30));
        let stop = CancellationToken::new();
        tokio::spawn(obs.run(stop.clone()));

        let late = Tap::new(ProbeStats::new("late"), tx.clone());
        let prober = answered(&late);
        // Past the first look and a second one: not folded while the prober holds on.
        tokio::time::sleep(COALESCE + LOOK_AGAIN * 2).await;
        assert!(
            late.stats.probers().is_empty(),
            "folded before the prober closed"
        );
        drop(prober);
        assert_eq!(
            folded(&late.stats, Duration::from_secs(5)).await,
            Some((1, 1))
        );

        let never = Tap::new(ProbeStats::new("never"), tx);
        let _prober = answered(&never);
        assert_eq!(
            folded(&never.stats, crate::linger::LINGER * 5).await,
            Some((1, 0)),
            "counted once, as not read"
        );
        stop.cancel();
    }

    #[test]
    fn threshold_is_ten_median_gaps_with_a_floor() {
        let t0 = Instant::now();
        let ms = |v: &[u64]| -> VecDeque<Instant> {
            v.iter().map(|m| t0 + Duration::from_millis(*m)).collect()
        };
        assert_eq!(silence_threshold(&ms(&[0, 100]), Duration::ZERO), None);
        assert_eq!(
            silence_threshold(&ms(&[0, 100, 200, 5000]), Duration::ZERO),
            Some(Duration::from_millis(1000))
        );
        assert_eq!(
            silence_threshold(&ms(&[0, 100, 200]), Duration::from_secs(30)),
            Some(Duration::from_secs(30))
        );
    }
}
