//! Observability against real peers: HAProxy probing (with and without `http-check
//! send-state`), `--wait` checked against HAProxy's own `show stat`, the silence alarm when
//! HAProxy stops and starts, metrics parsed by `promtool` and scraped by a real Prometheus.

use crate::haproxy_support::Haproxy;
use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Fails (never skips) with what to install when a tool is missing.
fn need(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} not found: install the Debian package '{package}' (make deps)"
    );
}

/// A child process killed and reaped on drop.
struct Proc(Option<Child>);

impl Proc {
    fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The backend every test here uses (on the shared harness, [`Haproxy`]): one server `srv1`
/// checked on `port` every 200 ms, fall 3, rise 2, node name `lb1`; and an unchecked `spare`
/// (always UP), so that taking srv1 out leaves the backend a server and the capacity guard
/// lets these tests of `--wait` disable it.
fn backend(port: u16, send_state: bool) -> String {
    format!(
        "global\n    node lb1\n\nbackend bck\n    option httpchk\n{}    server srv1 127.0.0.1:{port} check inter 200ms fall 3 rise 2\n    server spare 127.0.0.1:9\n",
        if send_state { "    http-check send-state\n" } else { "" }
    )
}

fn srv1(h: &Haproxy) -> String {
    h.server("bck", "srv1").status().to_string()
}

/// srv1's status as soon as it satisfies `acted`, else its last status after [`APPLIED`].
/// Without send-state, psentinel knows that HAProxy has *read* the answers that take the server
/// out or put it back; HAProxy (several threads) may publish the new state to its stats a moment
/// after closing the check connection. [`APPLIED`] is far shorter than one check interval
/// (200 ms): a `--wait` that returned one check early still fails (seen: 5 of 5 runs with
/// `wait::lagging` needing `fall - 1` answers).
fn srv1_after_wait(h: &Haproxy, acted: impl Fn(&str) -> bool) -> String {
    let end = std::time::Instant::now() + APPLIED;
    loop {
        let s = srv1(h);
        if acted(&s) || std::time::Instant::now() >= end {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
const APPLIED: Duration = Duration::from_millis(30);

/// The probers of `service` from `status --json`.
fn probers(d: &Daemon, service: &str) -> Vec<serde_json::Value> {
    d.svc(service)["probers"].as_array().unwrap().clone()
}

/// HAProxy starts with the server UP before its first check: wait until it has probed.
fn wait_probed(d: &Daemon, service: &str) {
    eventually("HAProxy probing", DEADLINE, || {
        probers(d, service)
            .first()
            .filter(|p| p["count"].as_u64().unwrap() >= 2)
            .map(|_| ())
    });
}

fn disable_wait_enable_wait(send_state: bool) {
    let port = free_port();
    let d = Daemon::start(&format!("[web]\nport={port}\nhaproxy_fall=3\n"));
    let hap = Haproxy::start(&backend(port, send_state));
    hap.wait_status("bck", "srv1", "UP");
    wait_probed(&d, "web");
    if send_state {
        eventually("HAProxy's view in status", DEADLINE, || {
            probers(&d, "web")
                .iter()
                .find(|p| p["haproxy"]["state"] == "UP")
                .cloned()
        });
    }

    let (code, out, err) = d.ctl(&["disable", "web", "--wait", "--timeout", "20s", "deploy"]);
    let after = srv1_after_wait(&hap, |s| !s.starts_with("UP"));
    assert_eq!(code, 0, "disable --wait: {out}{err}");
    assert!(
        !after.starts_with("UP"),
        "disable --wait returned while HAProxy still says {after}; {err}"
    );
    assert!(err.contains("web disabled"), "{err}");
    if send_state {
        assert!(err.contains("HAProxy lb1 reports"), "{err}");
    } else {
        assert!(err.contains("answers in a row saying out"), "{err}");
    }
    assert!(out.contains("every recent prober (1) has acted"), "{out}");

    let (code, out, err) = d.ctl(&["enable", "web", "--wait", "--timeout=20s"]);
    let after = srv1_after_wait(&hap, |s| s.starts_with("UP"));
    assert_eq!(code, 0, "enable --wait: {out}{err}");
    assert!(
        after.starts_with("UP"),
        "enable --wait returned while HAProxy still says {after}; {err}"
    );

    let p = probers(&d, "web");
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0]["address"], "127.0.0.1");
    assert!(p[0]["count"].as_u64().unwrap() >= 5, "{p:?}");
    if send_state {
        assert_eq!(p[0]["haproxy"]["node"], "lb1");
        assert_eq!(p[0]["haproxy"]["name"], "bck/srv1");
        let text = d.ok(&["status", "web"]);
        assert!(text.contains("HAProxy lb1 bck/srv1: UP"), "{text}");
    } else {
        assert!(p[0]["haproxy"].is_null(), "{p:?}");
    }
    hap.assert_clean_log();
}

#[test]
fn disable_wait_returns_after_haproxy_marks_down_with_send_state() {
    disable_wait_enable_wait(true);
}

#[test]
fn disable_wait_returns_after_haproxy_marks_down_without_send_state() {
    disable_wait_enable_wait(false);
}

/// An operator checks the probe port by hand (one `curl -X OPTIONS`) just before a deploy:
/// that one-off client must not hold `disable --wait` up until its timeout; HAProxy, which has
/// shown itself (send-state), is still waited for.
#[test]
fn disable_wait_ignores_a_one_off_curl_and_waits_for_haproxy() {
    let port = free_port();
    let d = Daemon::start(&format!("[web]\nport={port}\n"));
    let hap = Haproxy::start(&backend(port, true));
    hap.wait_status("bck", "srv1", "UP");
    wait_probed(&d, "web");
    let by_hand = raw(
        port,
        b"OPTIONS / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8\r\nConnection: close\r\n\r\n",
    );
    assert!(by_hand.contains(" 200 "), "{by_hand}");
    eventually("the curl in the prober table", DEADLINE, || {
        let p = probers(&d, "web");
        p.iter()
            .find(|p| p["haproxy"].is_null() && p["count"] == 1)
            .map(|_| ())
    });

    let started = std::time::Instant::now();
    let (code, out, err) = d.ctl(&["disable", "web", "--wait", "--timeout", "20s", "deploy"]);
    let took = started.elapsed();
    let after = srv1(&hap);
    assert_eq!(code, 0, "disable --wait: {out}{err}");
    assert!(
        !after.starts_with("UP"),
        "disable --wait returned while HAProxy still says {after}; {err}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}: {err}");
    assert!(
        err.contains("web: not waiting for 127.0.0.1: it probed once"),
        "the ignored prober is named: {err}"
    );
    assert!(err.contains("HAProxy lb1 reports"), "{err}");
    assert!(out.contains("every recent prober (1) has acted"), "{out}");
    hap.assert_clean_log();
}

/// Just after a restart (every upgrade does one) the probers of the last minute probed the old
/// process, not this one: `disable --wait` must still wait for HAProxy, not answer "nothing to
/// wait for" while HAProxy sends traffic.
#[test]
fn disable_wait_right_after_a_restart_waits_for_haproxy() {
    let port = free_port();
    let mut d = Daemon::start(&format!("[web]\nport={port}\n"));
    // Probes 4 s apart (200 ms once a check fails): the restart falls between two of them.
    let hap = Haproxy::start(&format!(
        "global\n    node lb1\n\nbackend bck\n    option httpchk\n    http-check send-state\n    server srv1 127.0.0.1:{port} check inter 4s fastinter 200ms fall 2 rise 2\n"
    ));
    eventually("HAProxy probing", DEADLINE, || {
        probers(&d, "web").first().map(|_| ())
    });
    d.restart();
    assert!(probers(&d, "web").is_empty(), "probed too soon to test");

    let (code, out, err) = d.ctl(&["disable", "web", "--wait", "--timeout", "20s", "deploy"]);
    let after = srv1(&hap);
    assert_eq!(code, 0, "disable --wait: {out}{err}");
    assert!(
        !after.starts_with("UP"),
        "disable --wait returned while HAProxy still says {after}; {out}{err}"
    );
    assert!(
        err.contains("has not been probed by a load balancer yet"),
        "{err}"
    );
    assert!(err.contains("HAProxy lb1 reports"), "{err}");
    assert!(out.contains("every recent prober (1) has acted"), "{out}");
    hap.assert_clean_log();
}

#[test]
fn wait_times_out_naming_the_prober_that_lags() {
    let port = free_port();
    // HAProxy rises after 2 answers, but we claim 50: the wait cannot be satisfied in 1 s.
    let d = Daemon::start(&format!("[web]\nport={port}\nhaproxy_rise=50\n"));
    let hap = Haproxy::start(&backend(port, false));
    hap.wait_status("bck", "srv1", "UP");
    wait_probed(&d, "web");
    d.ok(&["disable", "web", "--wait", "--timeout", "20s"]);
    let (code, out, err) = d.ctl(&["enable", "web", "--wait", "--timeout", "1s"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("timed out after 1s; not caught up: 127.0.0.1 (") && err.contains("of 50"),
        "{err}"
    );
    assert_eq!(d.svc("web")["enabled"], true, "the change stands");
    // Nobody probing a daemon that just started: it cannot know whether HAProxy acted (a
    // daemon up for a minute answers "nothing to wait for": src/wait.rs's unit test).
    let quiet = free_port();
    let d2 = Daemon::start(&format!("[quiet]\nport={quiet}\n"));
    let (code, out, err) = d2.ctl(&["disable", "quiet", "--wait", "--timeout", "1s"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("no load balancer has reached psentinel since it started"),
        "{err}"
    );
}

#[test]
fn silence_alarm_fires_when_haproxy_stops_and_clears_when_it_returns() {
    let port = free_port();
    let d = Daemon::prepare_general(&format!("[web]\nport={port}\n"), "silence_min=1\n");
    let d = d.started(&[]);
    let hap = Haproxy::start(&backend(port, true));
    hap.wait_status("bck", "srv1", "UP");
    eventually("a few probes", DEADLINE, || {
        (d.svc("web")["probes_count"].as_u64().unwrap() >= 5).then_some(())
    });
    drop(hap);
    let i = d.log.wait("web: no probe for");
    assert!(d.log.all()[i].contains("WARN"), "{}", d.log.all()[i]);
    d.notify
        .lines
        .wait("STATUS=1 service: 1 up; not probed any more: web");
    assert_ne!(d.svc("web")["silent_since"], 0);
    let text = d.ok(&["status"]);
    assert!(text.contains("not probed any more: web"), "{text}");
    assert!(text.contains("[SILENT"), "{text}");
    let before = d.log.len();
    let _hap = Haproxy::start(&backend(port, true));
    d.log.wait_from(before, "web: probes resumed", DEADLINE);
    eventually("STATUS= without the alarm", DEADLINE, || {
        let all = d.notify.lines.all();
        let last = all.iter().rev().find(|l| l.starts_with("STATUS="))?;
        (last == "STATUS=1 service: 1 up").then_some(())
    });
    eventually("silence cleared in status", DEADLINE, || {
        (d.svc("web")["silent_since"] == 0).then_some(())
    });
    assert_eq!(
        d.log
            .all()
            .iter()
            .filter(|l| l.contains("web: no probe for"))
            .count(),
        1,
        "warned once"
    );
}

/// GET on 127.0.0.1:port, HTTP/1.0: (status, body).
fn http_get(port: u16, target: &str) -> (u16, String) {
    let raw = raw(
        port,
        format!("GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes(),
    );
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad answer {raw:?}"));
    (status, body.to_string())
}

pub(crate) fn promtool_check(text: &str) {
    need("promtool", "prometheus");
    let mut c = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of an instant query's first result, if any.
fn prom_query(port: u16, query: &str) -> Option<String> {
    let enc: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(format!("GET /api/v1/query?query={enc} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let body = out.split_once("\r\n\r\n")?.1;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .map(String::from)
}

#[test]
fn label_values_from_a_prober_cannot_break_the_exposition() {
    let port = free_port();
    let d = Daemon::start(&format!("[web]\nport={port}\n"));
    wait_status(port, 200);
    // HAProxy's server and node names reach labels: quotes, backslashes and braces included.
    raw(
        port,
        b"OPTIONS / HTTP/1.0\r\nX-Haproxy-Server-State: UP; name=b\"k\\/s{1}; node=l\"b\r\n\r\n",
    );
    let text = eventually("the send-state prober in the metrics", DEADLINE, || {
        let t = d.ok(&["metrics"]);
        t.contains("psentinel_prober_haproxy_up{").then_some(t)
    });
    promtool_check(&text);
    assert!(
        text.contains(r#"haproxy_node="l\"b",haproxy_server="b\"k\\/s{1}"} 1"#),
        "{text}"
    );
}

#[test]
fn metrics_parse_with_promtool_and_prometheus_sees_a_disable() {
    need("prometheus", "prometheus");
    let (port, aport, mport) = (free_port(), free_port(), free_port());
    let d = Daemon::prepare_general(
        &format!("[web]\nport={port}\nagent_port={aport}\ncheck_script=true\ncheck_script_interval=0.2\n"),
        &format!("metrics_listen=127.0.0.1:{mport}\n"),
    );
    let d = d.started(&[]);
    wait_status(port, 200);
    // A backend of two servers (weight 1 of 2): the capacity guard lets the disable below pass.
    raw(
        port,
        b"OPTIONS / HTTP/1.0\r\nX-Haproxy-Server-State: UP; name=bck/srv1; node=lb1; weight=1/2; scur=0/0; qcur=0\r\n\r\n",
    );
    assert!(raw(aport, b"").starts_with("up ready"));
    eventually("the prober table filled", DEADLINE, || {
        // Plain probes, the send-state one (its own entry: HAProxy's server) and the agent.
        (probers(&d, "web").len() == 3).then_some(())
    });

    let (status, body) = http_get(mport, "/metrics");
    assert_eq!(status, 200, "{body}");
    promtool_check(&body);
    for needle in [
        "psentinel_build_info{version=\"",
        "psentinel_service_state{service=\"web\",state=\"up\"} 1",
        "psentinel_service_state{service=\"web\",state=\"disabled\"} 0",
        "psentinel_probes_total{service=\"web\",kind=\"http\",answer=\"200\"}",
        "psentinel_checks_total{service=\"web\",result=\"pass\"}",
        "psentinel_prober_haproxy_up{service=\"web\",address=\"127.0.0.1\",haproxy_node=\"lb1\",haproxy_server=\"bck/srv1\"} 1",
        "psentinel_reloads_total 0",
        "psentinel_probes_total{service=\"web\",kind=\"agent\",answer=\"up\"} 1",
    ] {
        assert!(body.contains(needle), "no {needle:?} in\n{body}");
    }
    let ctl = d.ok(&["metrics"]);
    promtool_check(&ctl);
    assert!(ctl.contains("psentinel_service_state{service=\"web\",state=\"up\"} 1"));
    assert_eq!(http_get(mport, "/other").0, 404);

    // A reload keeps the counters and probers of services that stay.
    d.ok(&["reload"]);
    let after = d.ok(&["metrics"]);
    assert!(after.contains("psentinel_reloads_total 1"), "{after}");
    assert!(
        after.contains("psentinel_probers{service=\"web\"} 3"),
        "{after}"
    );
    assert!(
        after.contains("psentinel_probes_total{service=\"web\",kind=\"agent\",answer=\"up\"} 1"),
        "{after}"
    );

    let qport = free_port();
    let prom_cfg = d.path("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: psentinel\n    static_configs:\n      - targets: ['127.0.0.1:{mport}']\n"
        ),
    )
    .unwrap();
    let _prom = Proc(Some(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!("--storage.tsdb.path={}", d.path("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{qport}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    ));
    let up = r#"psentinel_service_state{service="web",state="up"}"#;
    let disabled = r#"psentinel_service_state{service="web",state="disabled"}"#;
    let wait = Duration::from_secs(60);
    eventually("Prometheus scraping web up", wait, || {
        (prom_query(qport, up).as_deref() == Some("1")).then_some(())
    });
    d.ok(&["disable", "web", "metrics test"]);
    eventually("Prometheus seeing web disabled", wait, || {
        (prom_query(qport, disabled).as_deref() == Some("1")).then_some(())
    });
    assert_eq!(prom_query(qport, up).as_deref(), Some("0"));
}

/// The metric families of docs/observability.md's table, in the order written there
/// (`psentinel_service_disabled`, `_paused` ... expanded).
pub(crate) fn documented_families() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/observability.md"
    ))
    .unwrap();
    let mut families = Vec::new();
    for row in doc.lines().filter(|l| l.starts_with("| `psentinel_")) {
        let first_cell = row.split('|').nth(1).unwrap();
        let names: Vec<&str> = first_cell.split('`').skip(1).step_by(2).collect();
        let prefix = names[0].rsplit_once('_').unwrap().0.to_string();
        for n in names {
            families.push(match n.strip_prefix('_') {
                Some(tail) => format!("{prefix}_{tail}"),
                None => n.to_string(),
            });
        }
    }
    assert!(families.len() >= 18, "{families:?}");
    families
}

/// Every family of the docs' table, by value, in one known situation: `web` (following a unit that no
/// system bus reports on) passed its only
/// check (a plugin printing perfdata, one datum malformed) and is disabled for an hour, then
/// probed twice plainly, once with send-state and once by an agent; `bad` failed its only check with exit 3 and has its checks stopped (so it
/// counts as up).
#[test]
fn every_documented_metric_family_has_its_value() {
    let (port, aport, bport) = (free_port(), free_port(), free_port());
    let d = Daemon::prepare("");
    let bad = d.script("bad.sh", "#!/bin/sh\nexit 3\n");
    let good = d.script(
        "good.sh",
        "#!/bin/sh\necho \"OK - fine | 'resp time'=0.5s;1;2;0 conns=3 junk=x\"\n",
    );
    d.rewrite(&format!(
        "[web]\nport={port}\nagent_port={aport}\ncheck_script={}\ncheck_script_interval=3600\n\
         check_style=nagios\n\
         unit=web.service\n\
         [bad]\nport={bport}\ncheck_script={}\ncheck_script_interval=3600\n",
        good.display(),
        bad.display()
    ));
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let t0 = now().floor();
    let d = d.started(&[]);
    // Waits on the status, not on a probe: every probe is counted.
    eventually("web up and bad down", DEADLINE, || {
        (d.svc("web")["state"] == "up" && d.svc("bad")["state"] == "down").then_some(())
    });
    d.ok(&["disable", "web", "--for", "1h", "metrics test"]);
    d.ok(&["disable_test", "bad"]);
    for _ in 0..2 {
        assert_eq!(probe_status(port), 503);
    }
    let send_state = raw(
        port,
        b"OPTIONS / HTTP/1.0\r\nX-Haproxy-Server-State: UP; name=bck/srv1; node=lb1; weight=1/1; scur=0/0; qcur=0\r\n\r\n",
    );
    assert!(send_state.starts_with("HTTP/1.0 503"), "{send_state}");
    let agent = raw(aport, b"");
    assert!(agent.starts_with("maint "), "{agent}");
    eventually("the prober table filled", DEADLINE, || {
        (probers(&d, "web").len() == 3).then_some(())
    });
    let t1 = now().ceil();

    let text = d.ok(&["metrics"]);
    let samples: std::collections::BTreeMap<&str, f64> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k, v.parse().unwrap_or_else(|e| panic!("{e}: {l}")))
        })
        .collect();
    let version = env!("CARGO_PKG_VERSION");
    let web_http = r#"service="web",address="127.0.0.1",kind="http",haproxy_server="""#;
    let web_ss = r#"service="web",address="127.0.0.1",kind="http",haproxy_server="bck/srv1""#;
    let web_agent = r#"service="web",address="127.0.0.1",kind="agent",haproxy_server="""#;
    // Each sample with the range its value must be in.
    let want: Vec<(String, (f64, f64))> = vec![
        (format!(r#"psentinel_build_info{{version="{version}"}}"#), (1.0, 1.0)),
        ("psentinel_start_time_seconds".into(), (t0, t1)),
        ("psentinel_reloads_total".into(), (0.0, 0.0)),
        ("psentinel_state_saved".into(), (1.0, 1.0)),
        // No system bus on a test host: systemd has not said.
        (r#"psentinel_service_unit_state{service="web",unit="web.service",state="unknown"}"#.into(), (1.0, 1.0)),
        (r#"psentinel_service_unit_state{service="web",unit="web.service",state="active"}"#.into(), (0.0, 0.0)),
        (r#"psentinel_service_state{service="web",state="disabled"}"#.into(), (1.0, 1.0)),
        (r#"psentinel_service_state{service="web",state="up"}"#.into(), (0.0, 0.0)),
        // A stopped check counts as passing.
        (r#"psentinel_service_state{service="bad",state="up"}"#.into(), (1.0, 1.0)),
        (r#"psentinel_service_state{service="bad",state="down"}"#.into(), (0.0, 0.0)),
        (r#"psentinel_service_state{service="bad",state="disabled"}"#.into(), (0.0, 0.0)),
        (r#"psentinel_service_disabled{service="web"}"#.into(), (1.0, 1.0)),
        (r#"psentinel_service_disabled{service="bad"}"#.into(), (0.0, 0.0)),
        (r#"psentinel_service_paused{service="web"}"#.into(), (0.0, 0.0)),
        (r#"psentinel_service_checks_stopped{service="bad"}"#.into(), (1.0, 1.0)),
        (r#"psentinel_service_checks_stopped{service="web"}"#.into(), (0.0, 0.0)),
        (r#"psentinel_service_silent{service="web"}"#.into(), (0.0, 0.0)),
        (r#"psentinel_service_flapping{service="web"}"#.into(), (0.0, 0.0)),
        (r#"psentinel_check_perfdata{service="web",label="resp time",uom="s"}"#.into(), (0.5, 0.5)),
        (r#"psentinel_check_perfdata{service="web",label="conns",uom=""}"#.into(), (3.0, 3.0)),
        (r#"psentinel_checks_total{service="web",result="pass"}"#.into(), (1.0, 1.0)),
        (r#"psentinel_checks_total{service="bad",result="fail"}"#.into(), (1.0, 1.0)),
        (r#"psentinel_check_last_duration_seconds{service="web"}"#.into(), (0.0, 5.0)),
        (r#"psentinel_check_last_exit_status{service="bad"}"#.into(), (3.0, 3.0)),
        (r#"psentinel_check_last_exit_status{service="web"}"#.into(), (0.0, 0.0)),
        (r#"psentinel_check_last_timestamp_seconds{service="bad"}"#.into(), (t0, t1)),
        (r#"psentinel_check_consecutive_failures{service="bad"}"#.into(), (1.0, 1.0)),
        (r#"psentinel_check_consecutive_failures{service="web"}"#.into(), (0.0, 0.0)),
        (r#"psentinel_probes_total{service="web",kind="http",answer="503"}"#.into(), (3.0, 3.0)),
        (r#"psentinel_probes_total{service="web",kind="agent",answer="maint"}"#.into(), (1.0, 1.0)),
        (r#"psentinel_probe_last_timestamp_seconds{service="web"}"#.into(), (t0, t1)),
        (r#"psentinel_probe_last_timestamp_seconds{service="bad"}"#.into(), (0.0, 0.0)),
        (r#"psentinel_probers{service="web"}"#.into(), (3.0, 3.0)),
        (r#"psentinel_probers{service="bad"}"#.into(), (0.0, 0.0)),
        (format!("psentinel_prober_probes_total{{{web_http}}}"), (2.0, 2.0)),
        (format!("psentinel_prober_probes_total{{{web_ss}}}"), (1.0, 1.0)),
        (format!("psentinel_prober_probes_total{{{web_agent}}}"), (1.0, 1.0)),
        (format!("psentinel_prober_last_seen_timestamp_seconds{{{web_ss}}}"), (t0, t1)),
        (r#"psentinel_prober_haproxy_up{service="web",address="127.0.0.1",haproxy_node="lb1",haproxy_server="bck/srv1"}"#.into(), (1.0, 1.0)),
        (r#"psentinel_probe_events_dropped_total{service="web"}"#.into(), (0.0, 0.0)),
    ];
    for (key, (lo, hi)) in &want {
        let got = samples.get(key.as_str());
        assert!(
            got.is_some_and(|v| (lo..=hi).contains(&v)),
            "{key} = {got:?}, expected {lo}..={hi}\n{text}"
        );
    }
    // The table and the test cover the same families, and the daemon sends no other.
    let family = |k: &str| k.split('{').next().unwrap().to_string();
    let tested: std::collections::BTreeSet<String> = want.iter().map(|w| family(&w.0)).collect();
    let sent: std::collections::BTreeSet<String> = samples.keys().map(|k| family(k)).collect();
    let documented: std::collections::BTreeSet<String> =
        documented_families().into_iter().collect();
    assert_eq!(tested, documented, "families tested vs the docs' table");
    assert_eq!(sent, documented, "families sent vs the docs' table");
}
