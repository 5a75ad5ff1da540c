//! Prometheus metrics: text exposition format 0.0.4 on `GET /metrics` at `metrics_listen`, and
//! the same text from `psentinel -c metrics`.
//!
//! Everything is rendered from one engine [`Snapshot`] plus the live probe counters each
//! service's [`crate::probe_stats::ProbeStats`] holds, so a scrape never sends the engine a
//! message: a scrape costs the engine nothing and cannot delay it. The HTTP responder is the
//! probe responder's little sibling: same head parser ([`crate::probe::parse_head`]), same
//! bounds (head size, deadline), a connection cap, one answer and close.
//!
//! The text itself is written by the `prometheus-client` crate's Prometheus-text encoder
//! (escaping, number formatting, `_total` suffixes), fed by a collector that reads the
//! snapshot while encoding: nothing is copied into the crate's own metric types per scrape,
//! and the per-service atomics stay where they are.
//!
//! Names follow Prometheus conventions: `psentinel_` prefix, `_total` counters, seconds, and
//! one gauge per state label (`psentinel_service_state{state="up"} 1`). The list is in the
//! README ("Observability").
//!
//! `metrics_listen` is read at start; a reload does not move it.

use crate::model::{CheckResult, State};
use crate::probe::{parse_head, Head, HEAD_DEADLINE, MAX_HEAD};
use crate::probe_stats::Prober;
use crate::view::{ServiceView, Snapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, DescriptorEncoder, EncodeGaugeValue, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

/// Scrapes served at once; more are closed at once (Prometheus retries at the next interval).
const MAX_CONNS: usize = 64;
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One sample of a per-prober family: the same labels for every such family.
fn prober_labels<'a>(service: &'a str, addr: &'a str, p: &'a Prober) -> [(&'a str, &'a str); 4] {
    let server = p.haproxy.as_ref().map_or("", |h| h.name.as_str());
    [
        ("service", service),
        ("address", addr),
        ("kind", p.kind),
        ("haproxy_server", server),
    ]
}

/// `psentinel_service_unit_state`'s labels: systemd's ActiveState values, psentinel's own
/// "stopping" (announced by unit_stopping) and "unknown" (no word from systemd yet).
const UNIT_STATES: [&str; 9] = [
    "active",
    "reloading",
    "refreshing",
    "inactive",
    "failed",
    "activating",
    "deactivating",
    "stopping",
    "unknown",
];

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// One metric family being encoded: HELP and TYPE written, samples follow.
struct Family<'a>(MetricEncoder<'a>);

impl<'a> Family<'a> {
    /// `name` of a counter without `_total`: the encoder appends it.
    fn new(
        enc: &'a mut DescriptorEncoder<'_>,
        name: &'a str,
        kind: MetricType,
        help: &str,
    ) -> Result<Family<'a>, fmt::Error> {
        Ok(Family(enc.encode_descriptor(name, help, None, kind)?))
    }

    fn gauge(&mut self, labels: &[(&str, &str)], v: impl EncodeGaugeValue) -> fmt::Result {
        if labels.is_empty() {
            return self.0.encode_gauge(&v);
        }
        self.0.encode_family(&labels)?.encode_gauge(&v)
    }

    fn counter(&mut self, labels: &[(&str, &str)], v: u64) -> fmt::Result {
        if labels.is_empty() {
            return self.0.encode_counter::<NoLabelSet, _, u64>(&v, None);
        }
        self.0
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&v, None)
    }
}

/// A gauge of the last check run, for the services that have one.
fn last_check<V: EncodeGaugeValue>(
    o: &mut DescriptorEncoder,
    services: &[&ServiceView],
    name: &str,
    help: &str,
    get: impl Fn(&CheckResult) -> V,
) -> fmt::Result {
    let mut f = Family::new(o, name, MetricType::Gauge, help)?;
    for v in services {
        if let Some(r) = &v.last {
            f.gauge(&[("service", &v.cfg.name)], get(r))?;
        }
    }
    Ok(())
}

/// The snapshot as a collector: values are read from it (and from the live probe counters)
/// while encoding; nothing is copied into the crate's own metric types.
#[derive(Debug)]
struct Exposition(Arc<Snapshot>);

impl Collector for Exposition {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        families(&self.0, &mut enc)
    }
}

/// The whole exposition, from one snapshot.
pub fn render(snap: &Arc<Snapshot>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exposition(snap.clone())));
    let mut out = String::with_capacity(4096);
    // Writing into a String cannot fail.
    let _ = prometheus_text::encode(&mut out, &registry);
    out
}

fn families(snap: &Snapshot, o: &mut DescriptorEncoder) -> fmt::Result {
    use MetricType::{Counter, Gauge};
    let services: Vec<&ServiceView> = snap.services.values().map(|v| &**v).collect();

    Family::new(
        o,
        "psentinel_build_info",
        Gauge,
        "Always 1; the version of the running daemon.",
    )?
    .gauge(&[("version", crate::status::VERSION)], 1)?;
    Family::new(
        o,
        "psentinel_start_time_seconds",
        Gauge,
        "When the daemon started, seconds since the epoch.",
    )?
    .gauge(&[], secs(snap.started))?;
    Family::new(
        o,
        "psentinel_reloads",
        Counter,
        "Configuration reloads that succeeded.",
    )?
    .counter(&[], snap.reloads)?;

    Family::new(
        o,
        "psentinel_state_saved",
        Gauge,
        "0 while the state file cannot be written (a restart would forget the latest changes); else 1.",
    )?
    .gauge(&[], u32::from(snap.unsaved.is_none()))?;

    let mut f = Family::new(
        o,
        "psentinel_service_unit_state",
        Gauge,
        "For services with unit=: 1 for the unit's state as systemd reports it, 0 for the others.",
    )?;
    for v in &services {
        let Some(unit) = &v.cfg.unit else { continue };
        let now = crate::status::unit_state(v);
        for st in UNIT_STATES {
            f.gauge(
                &[("service", &v.cfg.name), ("unit", unit), ("state", st)],
                u32::from(now == st),
            )?;
        }
    }

    let mut f = Family::new(
        o,
        "psentinel_service_state",
        Gauge,
        "1 for the state the service is in (what probes answer), 0 for the others.",
    )?;
    for v in &services {
        for st in State::ALL {
            f.gauge(
                &[("service", &v.cfg.name), ("state", st.as_str())],
                u32::from(v.state == st),
            )?;
        }
    }
    for (n, help, get) in [
        (
            "psentinel_service_disabled",
            "1 while an operator has disabled the service.",
            (|v: &ServiceView| v.admin.disabled.is_some()) as fn(&ServiceView) -> bool,
        ),
        (
            "psentinel_service_paused",
            "1 while the service is paused.",
            |v| v.admin.paused.is_some(),
        ),
        (
            "psentinel_service_checks_stopped",
            "1 while the check is stopped by disable_test.",
            |v| v.admin.checks_stopped,
        ),
        (
            "psentinel_service_silent",
            "1 while the silence alarm is on: no probe for much longer than usual.",
            |v| v.silent_since.is_some(),
        ),
        (
            "psentinel_service_flapping",
            "1 while the service is held out for flapping (flap_max_changes).",
            |v| v.flapping_since.is_some(),
        ),
    ] {
        let mut f = Family::new(o, n, Gauge, help)?;
        for v in &services {
            f.gauge(&[("service", &v.cfg.name)], u32::from(get(v)))?;
        }
    }

    let mut f = Family::new(
        o,
        "psentinel_checks",
        Counter,
        "Finished check runs by result.",
    )?;
    for v in &services {
        let c = v.checks_by_result;
        for (result, count) in [
            ("pass", c.pass),
            ("warning", c.warning),
            ("fail", c.fail),
            ("timeout", c.timeout),
            ("cannot_start", c.cannot_start),
        ] {
            f.counter(&[("service", &v.cfg.name), ("result", result)], count)?;
        }
    }
    last_check(
        o,
        &services,
        "psentinel_check_last_duration_seconds",
        "How long the last check run took.",
        |r| r.duration_us as f64 / 1e6,
    )?;
    last_check(
        o,
        &services,
        "psentinel_check_last_exit_status",
        "Exit status of the last check run (128+N for signal N, 124 timeout, 127 cannot start).",
        |r| i64::from(r.exit.status_code()),
    )?;
    last_check(
        o,
        &services,
        "psentinel_check_last_timestamp_seconds",
        "When the last check run started, seconds since the epoch.",
        |r| secs(r.time),
    )?;
    let mut f = Family::new(
        o,
        "psentinel_check_perfdata",
        Gauge,
        "Performance data of the last check run (check_style = nagios), by label, in its unit (uom).",
    )?;
    for v in &services {
        for p in &v.perfdata {
            f.gauge(
                &[
                    ("service", &v.cfg.name),
                    ("label", &p.label),
                    ("uom", &p.uom),
                ],
                p.value,
            )?;
        }
    }
    let mut f = Family::new(
        o,
        "psentinel_check_consecutive_failures",
        Gauge,
        "Failed check runs in a row (0 after a pass).",
    )?;
    for v in &services {
        f.gauge(&[("service", &v.cfg.name)], v.health.failures)?;
    }

    let mut f = Family::new(
        o,
        "psentinel_probes",
        Counter,
        "Probes answered, by kind (http, agent) and answer (HTTP status or agent word).",
    )?;
    for v in &services {
        for (a, count) in v.probes.answers() {
            let (kind, answer) = a.labels();
            f.counter(
                &[
                    ("service", &v.cfg.name),
                    ("kind", kind),
                    ("answer", &answer),
                ],
                count,
            )?;
        }
    }
    let mut f = Family::new(
        o,
        "psentinel_probe_last_timestamp_seconds",
        Gauge,
        "When the last probe was answered, seconds since the epoch (0: never).",
    )?;
    for v in &services {
        f.gauge(&[("service", &v.cfg.name)], secs(v.probes.last_probe()))?;
    }
    let mut f = Family::new(
        o,
        "psentinel_probe_events_dropped",
        Counter,
        "Probes answered but not entered in the prober table (observer behind).",
    )?;
    for v in &services {
        f.counter(&[("service", &v.cfg.name)], v.probes.dropped())?;
    }

    let tables: Vec<_> = services.iter().map(|v| (v, v.probes.probers())).collect();
    let mut f = Family::new(
        o,
        "psentinel_probers",
        Gauge,
        "Distinct probers remembered (at most 64).",
    )?;
    for (v, t) in &tables {
        f.gauge(&[("service", &v.cfg.name)], t.len())?;
    }
    let mut f = Family::new(
        o,
        "psentinel_prober_probes",
        Counter,
        "Probes from one prober.",
    )?;
    for (v, t) in &tables {
        for p in t {
            let addr = p.address.to_string();
            f.counter(&prober_labels(&v.cfg.name, &addr, p), p.count)?;
        }
    }
    let mut f = Family::new(
        o,
        "psentinel_prober_last_seen_timestamp_seconds",
        Gauge,
        "When a prober last probed, seconds since the epoch.",
    )?;
    for (v, t) in &tables {
        for p in t {
            let addr = p.address.to_string();
            f.gauge(&prober_labels(&v.cfg.name, &addr, p), secs(p.last_seen))?;
        }
    }
    let mut f = Family::new(
        o,
        "psentinel_prober_haproxy_up",
        Gauge,
        "HAProxy's own view (http-check send-state): 1 if it has the server UP.",
    )?;
    for (v, t) in &tables {
        for p in t {
            if let Some(h) = &p.haproxy {
                let addr = p.address.to_string();
                f.gauge(
                    &[
                        ("service", &v.cfg.name),
                        ("address", &addr),
                        ("haproxy_node", &h.node),
                        ("haproxy_server", &h.name),
                    ],
                    u32::from(h.is_up()),
                )?;
            }
        }
    }
    Ok(())
}

/// Serves `GET /metrics` until shutdown.
pub async fn serve(
    listener: TcpListener,
    snap: watch::Receiver<Arc<Snapshot>>,
    shutdown: CancellationToken,
) {
    let conns = Arc::new(Semaphore::new(MAX_CONNS));
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            continue; // dropped: closed
        };
        let snap = snap.clone();
        tokio::spawn(async move {
            answer(stream, &snap).await;
            drop(permit);
        });
    }
}

/// The request line's method and target, once [`parse_head`] accepted the head.
fn request_line(buf: &[u8]) -> (&[u8], &[u8]) {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    )
}

fn response(status: &str, content_type: &str, body: &str, with_body: bool) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if with_body {
        r.extend_from_slice(body.as_bytes());
    }
    r
}

async fn answer(mut stream: TcpStream, snap: &watch::Receiver<Arc<Snapshot>>) {
    let deadline = tokio::time::Instant::now() + HEAD_DEADLINE;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    let head = loop {
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut buf[len..])).await {
            Ok(Ok(n)) => n,
            _ => return,
        };
        len += n;
        match parse_head(&buf[..len], n == 0) {
            Head::Partial if n > 0 => continue,
            Head::Partial => return,
            h => break h,
        }
    };
    let text = "text/plain; charset=utf-8";
    let out = match head {
        Head::Request { head_only } => {
            let (method, target) = request_line(&buf[..len]);
            let path = target.split(|&b| b == b'?').next().unwrap_or_default();
            if method != b"GET" && method != b"HEAD" {
                response("405 Method Not Allowed", text, "use GET /metrics\n", true)
            } else if path != b"/metrics" {
                response(
                    "404 Not Found",
                    text,
                    "metrics are at /metrics\n",
                    !head_only,
                )
            } else {
                let body = render(&snap.borrow().clone());
                response("200 OK", CONTENT_TYPE, &body, !head_only)
            }
        }
        Head::TooLarge => response(
            "431 Request Header Fields Too Large",
            text,
            "too large\n",
            true,
        ),
        _ => response("400 Bad Request", text, "bad request\n", true),
    };
    if let Ok(Ok(())) = tokio::time::timeout_at(deadline, stream.write_all(&out)).await {
        let _ = stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_splits_method_and_target() {
        assert_eq!(
            request_line(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n"),
            (&b"GET"[..], &b"/metrics?x=1"[..])
        );
    }
}
