//! Prometheus metrics: text exposition format 0.0.4 on `GET /metrics` at `metrics_listen`, and
//! the same text from `psentinel -c metrics`.
//!
//! Everything is rendered from one engine [`Snapshot`] plus the live probe counters each
//! service's [`crate::probe_stats::ProbeStats`] holds, so a scrape never sends the engine a
//! message: a scrape costs the engine nothing and cannot delay it. The HTTP responder is the
//! probe responder's little sibling: same head parser ([`crate::probe::parse_head`]), same
//! bounds (head size, deadline), a connection cap, one answer and close.
//!
//! Names follow Prometheus conventions: `psentinel_` prefix, `_total` counters, seconds, and
//! one gauge per state label (`psentinel_service_state{state="up"} 1`). The list is in the
//! README ("Observability").
//!
//! `metrics_listen` is read at start; a reload does not move it.

use crate::model::State;
use crate::probe::{parse_head, Head, HEAD_DEADLINE, MAX_HEAD};
use crate::view::{ServiceView, Snapshot};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

/// Scrapes served at once; more are closed at once (Prometheus retries at the next interval).
const MAX_CONNS: usize = 64;
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value, escaped as the text format wants (`\\`, `\"`, `\n`).
fn esc(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// One sample of a per-prober family: the same labels for every such family.
fn prober_sample(
    f: &mut Family,
    name: &str,
    service: &str,
    p: &crate::probe_stats::Prober,
    value: impl std::fmt::Display,
) {
    let addr = p.address.to_string();
    let server = p.haproxy.as_ref().map_or("", |h| h.name.as_str());
    let labels = [
        ("service", service),
        ("address", addr.as_str()),
        ("kind", p.kind),
        ("haproxy_server", server),
    ];
    f.sample(name, &labels, value);
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// One metric family: HELP and TYPE once, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", esc(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// The whole exposition, from one snapshot.
pub fn render(snap: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    let o = &mut out;
    let services: Vec<_> = snap.services.values().collect();

    let n = "psentinel_build_info";
    Family::new(
        o,
        n,
        "gauge",
        "Always 1; the version of the running daemon.",
    )
    .sample(n, &[("version", crate::status::VERSION)], 1);
    let n = "psentinel_start_time_seconds";
    Family::new(
        o,
        n,
        "gauge",
        "When the daemon started, seconds since the epoch.",
    )
    .sample(n, &[], secs(snap.started));
    let n = "psentinel_reloads_total";
    Family::new(o, n, "counter", "Configuration reloads that succeeded.").sample(
        n,
        &[],
        snap.reloads,
    );

    let n = "psentinel_service_state";
    let mut f = Family::new(
        o,
        n,
        "gauge",
        "1 for the state the service is in (what probes answer), 0 for the others.",
    );
    for v in &services {
        for st in State::ALL {
            f.sample(
                n,
                &[("service", &v.cfg.name), ("state", st.as_str())],
                u8::from(v.state == st),
            );
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
    ] {
        let mut f = Family::new(o, n, "gauge", help);
        for v in &services {
            f.sample(n, &[("service", &v.cfg.name)], u8::from(get(v)));
        }
    }

    let n = "psentinel_checks_total";
    let mut f = Family::new(o, n, "counter", "Finished check runs by result.");
    for v in &services {
        let c = v.checks_by_result;
        for (result, count) in [
            ("pass", c.pass),
            ("fail", c.fail),
            ("timeout", c.timeout),
            ("cannot_start", c.cannot_start),
        ] {
            f.sample(n, &[("service", &v.cfg.name), ("result", result)], count);
        }
    }
    for (n, help, get) in [
        (
            "psentinel_check_last_duration_seconds",
            "How long the last check run took.",
            (|r: &crate::model::CheckResult| r.duration_us as f64 / 1e6)
                as fn(&crate::model::CheckResult) -> f64,
        ),
        (
            "psentinel_check_last_exit_status",
            "Exit status of the last check run (128+N for signal N, 124 timeout, 127 cannot start).",
            |r| f64::from(r.exit.status_code()),
        ),
        (
            "psentinel_check_last_timestamp_seconds",
            "When the last check run started, seconds since the epoch.",
            |r| secs(r.time),
        ),
    ] {
        let mut f = Family::new(o, n, "gauge", help);
        for v in &services {
            if let Some(r) = &v.last {
                f.sample(n, &[("service", &v.cfg.name)], get(r));
            }
        }
    }
    let n = "psentinel_check_consecutive_failures";
    let mut f = Family::new(
        o,
        n,
        "gauge",
        "Failed check runs in a row (0 after a pass).",
    );
    for v in &services {
        f.sample(n, &[("service", &v.cfg.name)], v.health.failures);
    }

    let n = "psentinel_probes_total";
    let mut f = Family::new(
        o,
        n,
        "counter",
        "Probes answered, by kind (http, agent) and answer (HTTP status or agent word).",
    );
    for v in &services {
        for (a, count) in v.probes.answers() {
            let (kind, answer) = a.labels();
            f.sample(
                n,
                &[
                    ("service", &v.cfg.name),
                    ("kind", kind),
                    ("answer", &answer),
                ],
                count,
            );
        }
    }
    let n = "psentinel_probe_last_timestamp_seconds";
    let mut f = Family::new(
        o,
        n,
        "gauge",
        "When the last probe was answered, seconds since the epoch (0: never).",
    );
    for v in &services {
        f.sample(n, &[("service", &v.cfg.name)], secs(v.probes.last_probe()));
    }
    let n = "psentinel_probe_events_dropped_total";
    let mut f = Family::new(
        o,
        n,
        "counter",
        "Probes answered but not entered in the prober table (observer behind).",
    );
    for v in &services {
        f.sample(n, &[("service", &v.cfg.name)], v.probes.dropped());
    }

    let tables: Vec<_> = services.iter().map(|v| (v, v.probes.probers())).collect();
    let n = "psentinel_probers";
    let mut f = Family::new(o, n, "gauge", "Distinct probers remembered (at most 64).");
    for (v, t) in &tables {
        f.sample(n, &[("service", &v.cfg.name)], t.len());
    }
    let n = "psentinel_prober_probes_total";
    let mut f = Family::new(o, n, "counter", "Probes from one prober.");
    for (v, t) in &tables {
        for p in t {
            prober_sample(&mut f, n, &v.cfg.name, p, p.count);
        }
    }
    let n = "psentinel_prober_last_seen_timestamp_seconds";
    let mut f = Family::new(
        o,
        n,
        "gauge",
        "When a prober last probed, seconds since the epoch.",
    );
    for (v, t) in &tables {
        for p in t {
            prober_sample(&mut f, n, &v.cfg.name, p, secs(p.last_seen));
        }
    }
    let n = "psentinel_prober_haproxy_up";
    let mut f = Family::new(
        o,
        n,
        "gauge",
        "HAProxy's own view (http-check send-state): 1 if it has the server UP.",
    );
    for (v, t) in &tables {
        for p in t {
            if let Some(h) = &p.haproxy {
                let addr = p.address.to_string();
                f.sample(
                    n,
                    &[
                        ("service", &v.cfg.name),
                        ("address", &addr),
                        ("haproxy_node", &h.node),
                        ("haproxy_server", &h.name),
                    ],
                    u8::from(h.is_up()),
                );
            }
        }
    }
    out
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
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(
            request_line(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n"),
            (&b"GET"[..], &b"/metrics?x=1"[..])
        );
    }
}
