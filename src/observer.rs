//! The observer: the one task per daemon that folds answered probes into the prober tables
//! ([`crate::probe_stats`]) and keeps the silence alarm.
//!
//! It runs off the hot path: probe responders hand it a [`Seen`] record through a bounded
//! channel and never wait for it. The record carries the answered socket
//! ([`crate::linger`]); while probes come, the observer wakes every `COALESCE` (20 ms), takes
//! what queued, and folds each record whose prober has closed by then (answer read) or given
//! up (not read, after 1 s). A close is thus seen at most `COALESCE` after it happens, as
//! when each responder waited for it; at idle the observer sleeps without a timer.
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
/// How long probe records may wait in the channel: prober tables, `--wait` and the silence
/// alarm see a probe at most this much later (HAProxy checks every 100 ms at the fastest).
const COALESCE: Duration = Duration::from_millis(20);
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
        // Records of answered connections whose prober has not closed yet (see
        // [`crate::linger`]): folded once it does, or gives up.
        let mut pending: Vec<Seen> = Vec::new();
        let mut stopping = false;
        // Every sender is gone: no responder can hand over another connection.
        let mut senders_gone = false;
        loop {
            if !stopping {
                let next = self.next_deadline();
                // Idle: nothing to wait for but a probe or a silence deadline, and no timer
                // unless a service is being probed.
                tokio::select! {
                    _ = shutdown.cancelled() => stopping = true,
                    seen = self.rx.recv() => match seen {
                        Some(s) => pending.push(s),
                        None => return,
                    },
                    _ = sleep_until_opt(next) => {
                        self.on_deadline();
                        continue;
                    }
                }
            }
            // Busy: wake every COALESCE, take what queued meanwhile and fold every record
            // whose prober closed by then. One wake-up per COALESCE instead of one per probe
            // (it was a quarter of a probe's cost), and most probers have closed by the time
            // their record is looked at, so one read tells.
            while !pending.is_empty() || (stopping && !senders_gone) {
                if stopping {
                    tokio::time::sleep(COALESCE).await;
                } else {
                    tokio::select! {
                        _ = shutdown.cancelled() => stopping = true,
                        _ = tokio::time::sleep(COALESCE) => {}
                    }
                }
                for _ in 0..CHANNEL {
                    match self.rx.try_recv() {
                        Ok(s) => pending.push(s),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            senders_gone = true;
                            break;
                        }
                    }
                }
                let now = Instant::now();
                let wall = micros(SystemTime::now());
                // Folded in the order they were answered: a prober's probes follow each other.
                for mut s in std::mem::take(&mut pending) {
                    if let Some(l) = s.linger.as_mut() {
                        match l.closed(now) {
                            None => {
                                pending.push(s);
                                continue;
                            }
                            Some(acked) => s.acked = acked,
                        }
                    }
                    // Closed now rather than whenever the record goes.
                    s.linger = None;
                    self.on_seen(s, now, wall);
                }
                if self.next_deadline().is_some_and(|at| at <= now) {
                    self.on_deadline();
                }
            }
            if stopping {
                return;
            }
        }
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
