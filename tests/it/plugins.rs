//! Debian's monitoring-plugins (`monitoring-plugins-basic`, `-standard`) as psentinel checks
//! with `check_style = nagios`, behind a real HAProxy: each exit code's effect as HAProxy
//! shows it in `show stat`, the plugin's own words in HAProxy's check description, perfdata
//! in `/metrics`, and flap damping counted from HAProxy's log.

use crate::haproxy_support::*;
use crate::support::*;
use std::path::Path;

const PLUGINS: &str = "/usr/lib/nagios/plugins";

/// The path of a plugin; fails saying what to install when it is missing.
fn plugin(name: &str) -> String {
    let p = Path::new(PLUGINS).join(name);
    assert!(
        p.exists(),
        "{} missing: install monitoring-plugins-basic and monitoring-plugins-standard \
         (`make deps`)",
        p.display()
    );
    p.display().to_string()
}

/// A daemon on `services`, where `{dir}` is its temp dir; `scripts` are written there first.
fn daemon(services: &str, scripts: &[(&str, &str)]) -> Daemon {
    daemon_with(services, scripts, &[])
}

/// [`daemon`] with plain files beside the scripts, there before the first check runs (the
/// daemon runs every check at once).
fn daemon_with(services: &str, scripts: &[(&str, &str)], files: &[(&str, &str)]) -> Daemon {
    let d = Daemon::prepare("");
    let dir = d.dir.path().display().to_string();
    for (name, body) in scripts {
        d.script(name, &body.replace("{dir}", &dir));
    }
    for (name, body) in files {
        std::fs::write(d.path(name), body).unwrap();
    }
    d.rewrite(&services.replace("{dir}", &dir));
    d.started(&[])
}

/// `check_dummy` with the exit code in the file `code` of the daemon's dir: one check for
/// every code without a reload.
const DUMMY: &str = "#!/bin/sh\nexec {plugin} \"$(cat {dir}/code)\" 'disk space test'\n";

/// Exit codes 0-3 of the real `check_dummy`, three ways: agent-check (WARNING drains), HTTP
/// with `warning_status=404` and `http-check disable-on-404` (WARNING is NOLB), HTTP with the
/// default `warning_status` (WARNING stays UP). CRITICAL and UNKNOWN are DOWN everywhere; the
/// plugin's text is HAProxy's check description in each state.
#[test]
fn check_dummy_exit_codes_as_haproxy_sees_them() {
    let dummy = DUMMY.replace("{plugin}", &plugin("check_dummy"));
    let p: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let (agent, agent_port, nolb, plain, app) = (p[0], p[1], p[2], p[3], p[4]);
    let check = "check_script={dir}/dummy.sh\ncheck_style=nagios\ncheck_script_interval=0.2\n";
    let d = daemon_with(
        &format!(
            "[agent]\nport={agent}\nagent_port={agent_port}\n{check}\
             [nolb]\nport={nolb}\nwarning_status=404\n{check}\
             [plain]\nport={plain}\n{check}"
        ),
        &[("dummy.sh", &dummy)],
        &[("code", "0")],
    );
    let _app = Dummy::start("127.0.0.1".parse().unwrap(), app, "app");
    let h = Haproxy::start(&format!(
        "backend b_agent\n    server s1 127.0.0.1:{app} check agent-check agent-port {agent_port}\n\n\
         backend b_nolb\n    option httpchk OPTIONS * HTTP/1.0\n    http-check disable-on-404\n    \
         server s1 127.0.0.1:{app} check port {nolb}\n\n\
         backend b_plain\n    option httpchk OPTIONS * HTTP/1.0\n    server s1 127.0.0.1:{app} check port {plain}\n"
    ));
    let agent_says = |s: &Server, text: &str| s.last_agt().contains(&format!("({text})"));

    // OK: UP everywhere, with the plugin's words.
    let ok = "OK: disk space test";
    h.wait("b_agent", "s1", "UP (OK)", |s| {
        s.status() == "UP" && agent_says(s, ok)
    });
    // HAProxy keeps no text for a passing HTTP check ("Layer7 check passed"): the reason
    // phrase it read is the probe's.
    for (b, port) in [("b_nolb", nolb), ("b_plain", plain)] {
        h.wait(b, "s1", "UP (OK)", |s| {
            s.status() == "UP" && s.check_status() == "L7OK"
        });
        assert_eq!(probe(port).reason, ok);
    }

    // WARNING: drained by the agent, NOLB by 404, still UP with the default status.
    std::fs::write(d.path("code"), "1").unwrap();
    let warn = "WARNING: disk space test";
    h.wait("b_agent", "s1", "DRAIN (WARNING)", |s| {
        s.status().starts_with("DRAIN") && agent_says(s, warn)
    });
    let s = h.wait_status("b_nolb", "s1", "NOLB");
    assert_eq!((s.check_status(), s.get("check_code")), ("L7OKC", "404"));
    assert_eq!(probe(nolb).reason, warn);
    eventually("the warning on the plain port", DEADLINE, || {
        (probe(plain).reason == warn).then_some(())
    });
    let s = h.server("b_plain", "s1");
    assert_eq!((s.status(), s.get("check_code")), ("UP", "200"));
    let j = d.svc("plain");
    assert_eq!(
        (&j["state"], &j["summary"], &j["http_status"]),
        (
            &serde_json::json!("warning"),
            &serde_json::json!(warn),
            &serde_json::json!(200)
        )
    );

    // CRITICAL and UNKNOWN: DOWN everywhere, with the plugin's text.
    for (code, text) in [
        ("2", "CRITICAL: disk space test"),
        ("3", "UNKNOWN: disk space test"),
    ] {
        std::fs::write(d.path("code"), code).unwrap();
        h.wait("b_agent", "s1", text, |s| {
            s.status() == "DOWN (agent)" && agent_says(s, text)
        });
        for b in ["b_nolb", "b_plain"] {
            let s = h.wait(b, "s1", text, |s| {
                s.status() == "DOWN" && s.last_chk() == text
            });
            assert_eq!(s.get("check_code"), "500");
        }
    }

    // And back.
    std::fs::write(d.path("code"), "0").unwrap();
    for b in ["b_agent", "b_nolb", "b_plain"] {
        h.wait_status(b, "s1", "UP");
    }
    // HAProxy's log says why too.
    h.log.wait("info: \"CRITICAL: disk space test\"");
    h.log
        .wait("info: \"via agent : down (CRITICAL: disk space test)\"");
    h.assert_clean_log();
}

/// `check_tcp`, `check_http` and `check_disk` against real local targets, and `check_tcp`
/// against a closed port, each answering HAProxy's agent-check: states and the plugins' texts
/// in HAProxy's `show stat` (`last_agt`), perfdata in the metrics (which pass `promtool check
/// metrics`).
#[test]
fn real_plugins_against_local_targets() {
    let app = free_port();
    let closed = free_port();
    let _app = Dummy::start("127.0.0.1".parse().unwrap(), app, "app");
    let nagios = "check_style=nagios\ncheck_script_interval=0.2\ncheck_timeout=5\n";
    let checks = [
        (
            "tcp",
            format!("{} -H 127.0.0.1 -p {app}", plugin("check_tcp")),
        ),
        (
            "http",
            format!("{} -H 127.0.0.1 -p {app} -u /", plugin("check_http")),
        ),
        // Any free space is under a 100% warning threshold: a WARNING.
        (
            "disk",
            format!("{} -w 100% -c 0% -p /", plugin("check_disk")),
        ),
        (
            "refused",
            format!("{} -H 127.0.0.1 -p {closed}", plugin("check_tcp")),
        ),
    ];
    let mut services = String::new();
    let mut body = String::new();
    for (name, cmd) in &checks {
        let (port, agent) = (free_port(), free_port());
        services.push_str(&format!(
            "[{name}]\nport={port}\nagent_port={agent}\ncheck_script={cmd}\n{nagios}"
        ));
        body.push_str(&format!(
            "backend {name}\n    server s1 127.0.0.1:{app} check agent-check agent-port {agent}\n\n"
        ));
    }
    let d = daemon(&services, &[]);
    let h = Haproxy::start(&body);
    let says = |s: &Server, word: &str, text: &str| {
        s.last_agt()
            .starts_with(&format!("via agent : {word} ({text}"))
    };
    h.wait("tcp", "s1", "UP, TCP OK", |s| {
        s.status() == "UP" && says(s, "up", "TCP OK - ")
    });
    h.wait("http", "s1", "UP, HTTP OK", |s| {
        s.status() == "UP" && says(s, "up", "HTTP OK: HTTP/1.0 200 OK - ")
    });
    h.wait("disk", "s1", "DRAIN, DISK WARNING", |s| {
        s.status().starts_with("DRAIN") && says(s, "up", "DISK WARNING - free space: / ")
    });
    let refused = format!("connect to address 127.0.0.1 and port {closed}: Connection refused");
    h.wait("refused", "s1", "DOWN, connection refused", |s| {
        s.status() == "DOWN (agent)" && says(s, "down", &format!("{refused})"))
    });
    assert_eq!(d.svc("disk")["state"], "warning");
    assert_eq!(d.svc("refused")["state"], "down");
    assert_eq!(d.svc("refused")["summary"], refused.as_str());

    let text = d.ok(&["metrics"]);
    for (service, label, uom) in [
        ("tcp", "time", "s"),
        ("http", "time", "s"),
        ("http", "size", "B"),
        ("disk", "/", "B"),
    ] {
        let key = format!(
            "psentinel_check_perfdata{{service=\"{service}\",label=\"{label}\",uom=\"{uom}\"}} "
        );
        let line = text
            .lines()
            .find(|l| l.starts_with(&key))
            .unwrap_or_else(|| panic!("no {key} in\n{text}"));
        let v: f64 = line[key.len()..].parse().unwrap();
        assert!(v >= 0.0, "{line}");
    }
    // A plugin's WARNING is counted as such, neither pass nor fail.
    let count = |service: &str, result: &str| -> f64 {
        let key = format!("psentinel_checks_total{{service=\"{service}\",result=\"{result}\"}} ");
        let line = text.lines().find(|l| l.starts_with(&key));
        let line = line.unwrap_or_else(|| panic!("no {key} in\n{text}"));
        line[key.len()..].parse().unwrap()
    };
    assert!(count("disk", "warning") >= 1.0);
    assert_eq!((count("disk", "pass"), count("disk", "fail")), (0.0, 0.0));
    assert_eq!(count("tcp", "warning"), 0.0);
    crate::observe::promtool_check(&text);
    h.assert_clean_log();
}

/// HAProxy's transitions of `backend/s1` so far: its "Server B/s1 is UP|DOWN" log lines.
fn transitions(h: &Haproxy, backend: &str) -> usize {
    let up = format!("Server {backend}/s1 is UP");
    let down = format!("Server {backend}/s1 is DOWN");
    h.log
        .all()
        .iter()
        .filter(|l| l.contains(&up) || l.contains(&down))
        .count()
}

/// A check alternating CRITICAL/OK on every run, with and without flap damping, behind one
/// HAProxy: the undamped server bounces on every run; the damped one makes at most two
/// transitions in the window (counted from HAProxy's log), is shown flapping in status and
/// metrics and the log, and comes back once its check is stable for `flap_hold`.
#[test]
fn flap_damping_keeps_haproxy_from_bouncing() {
    let dummy = plugin("check_dummy");
    let p: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let (damped, free, app) = (p[0], p[1], p[2]);
    // Alternates on every run, per service, until the file `steady` exists.
    let alternate = format!(
        "#!/bin/sh\nt={{dir}}/flip.$PSENTINEL_SERVICE\n\
         if [ -e {{dir}}/steady ]; then exec {dummy} 0 steady; fi\n\
         if [ -e $t ]; then rm $t; exec {dummy} 2 flip; else touch $t; exec {dummy} 0 flop; fi\n"
    );
    let common = "check_script={dir}/alternate.sh\ncheck_style=nagios\ncheck_script_interval=0.4\n";
    let d = daemon(
        &format!(
            "[damped]\nport={damped}\n{common}flap_max_changes=1\nflap_window=600\nflap_hold=1\n\
             [free]\nport={free}\n{common}"
        ),
        &[("alternate.sh", &alternate)],
    );
    let _app = Dummy::start("127.0.0.1".parse().unwrap(), app, "app");
    let h = Haproxy::start(&format!(
        "backend damped\n    option httpchk OPTIONS * HTTP/1.0\n    server s1 127.0.0.1:{app} check port {damped}\n\n\
         backend free\n    option httpchk OPTIONS * HTTP/1.0\n    server s1 127.0.0.1:{app} check port {free}\n"
    ));
    // Each state lasts 0.4 s, four HAProxy checks (inter 100ms, fall 2): the undamped server
    // goes DOWN and UP with the check. Wait for it to have bounced, and for 16 runs of each.
    eventually(
        "the undamped server bouncing, 16 runs each",
        DEADLINE * 2,
        || {
            let runs = |s: &str| d.svc(s)["checks_count"].as_u64().unwrap_or(0);
            (transitions(&h, "free") >= 6 && runs("free") >= 16 && runs("damped") >= 16)
                .then_some(())
        },
    );
    let n = transitions(&h, "damped");
    assert!(
        n <= 2,
        "damped: {n} transitions in HAProxy (free: {}):\n{}",
        transitions(&h, "free"),
        h.log.all().join("\n")
    );
    assert_eq!(h.server("damped", "s1").status(), "DOWN");
    let j = d.svc("damped");
    assert_eq!(j["state"], "down");
    assert_ne!(j["flapping_since"], 0);
    assert!(
        j["state_reason"]
            .as_str()
            .unwrap()
            .starts_with("Flapping: health changed more than 1 times within 600s"),
        "{j}"
    );
    assert_eq!(d.svc("free")["flapping_since"], 0);
    let metrics = d.ok(&["metrics"]);
    assert!(
        metrics.contains("psentinel_service_flapping{service=\"damped\"} 1\n")
            && metrics.contains("psentinel_service_flapping{service=\"free\"} 0\n"),
        "{metrics}"
    );
    d.log
        .wait("damped: flapping: health changed more than 1 times within 600s");
    assert!(
        d.status_json()["summary"]
            .as_str()
            .unwrap()
            .ends_with("; held out for flapping: damped"),
        "the summary (STATUS=, status' first line) names it"
    );
    assert!(d
        .ok(&["status", "damped"])
        .contains("  flapping:    yes, held out since "));

    // Stable for flap_hold (1 s): back in the pool.
    std::fs::write(d.path("steady"), "").unwrap();
    d.log
        .wait("damped: stable for 1s; no longer held out for flapping");
    h.wait_status("damped", "s1", "UP");
    assert_eq!(d.svc("damped")["flapping_since"], 0);
    h.assert_clean_log();
}

/// Plugins that misbehave: one prints nothing, one prints a control-character summary and then
/// 20 MB of random bytes, one prints perfdata full of garbage (quotes, backslashes, units no
/// one knows). Each still gets its verdict from its exit code; the daemon keeps answering
/// probes, its memory stays small, and the metrics stay valid.
#[test]
fn misbehaving_plugins_still_get_a_verdict() {
    let p: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let (silent, flood, garbage) = (p[0], p[1], p[2]);
    let nagios = "check_style=nagios\ncheck_script_interval=0.2\ncheck_timeout=20\n";
    let d = daemon(
        &format!(
            "[silent]\nport={silent}\ncheck_script={{dir}}/silent.sh\n{nagios}\
             [flood]\nport={flood}\ncheck_script={{dir}}/flood.sh\n{nagios}\
             [garbage]\nport={garbage}\ncheck_script={{dir}}/garbage.sh\n{nagios}"
        ),
        &[
            ("silent.sh", "#!/bin/sh\nexit 2\n"),
            (
                "flood.sh",
                "#!/bin/sh\nprintf 'PROCS WARNING -\\t\\tmany\\r\\033[1m | p=1 q=U\\n'\n\
                 head -c 20000000 /dev/urandom\nexit 1\n",
            ),
            (
                "garbage.sh",
                "#!/bin/sh\ncat <<'E'\nOK - fine | 'a\"b'=1 bad 'x y'=2furlongs =3 c=4;;;;;; 'back\\slash'=5 'open=6\nE\nexit 0\n",
            ),
        ],
    );
    wait_status(silent, 500);
    wait_status(garbage, 200);
    eventually("three floods", DEADLINE * 3, || {
        // The probes answer at once all the while.
        assert_eq!(probe(silent).status, 500);
        assert_eq!(probe(garbage).status, 200);
        (d.svc("flood")["checks_count"].as_u64() >= Some(3)).then_some(())
    });
    let s = d.svc("silent");
    assert_eq!((&s["state"], &s["summary"]), (&"down".into(), &"".into()));
    assert_eq!(s["state_reason"], "Check failed: exit 2");
    let f = d.svc("flood");
    assert_eq!(f["state"], "warning");
    assert_eq!(f["summary"], "PROCS WARNING - many ?[1m");
    assert_eq!(probe(flood).reason, "PROCS WARNING - many ?[1m");
    let g = d.svc("garbage");
    assert_eq!(
        (&g["state"], &g["summary"]),
        (&"up".into(), &"OK - fine".into())
    );

    let rss_kib: u64 = std::fs::read_to_string(format!("/proc/{}/status", d.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        rss_kib < 64 * 1024,
        "daemon RSS {rss_kib} KiB after 60 MB of output"
    );

    let text = d.ok(&["metrics"]);
    let perf: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("psentinel_check_perfdata{"))
        .collect();
    assert_eq!(
        perf,
        [
            r#"psentinel_check_perfdata{service="flood",label="p",uom=""} 1.0"#,
            r#"psentinel_check_perfdata{service="garbage",label="a\"b",uom=""} 1.0"#,
            r#"psentinel_check_perfdata{service="garbage",label="c",uom=""} 4.0"#,
            r#"psentinel_check_perfdata{service="garbage",label="back\\slash",uom=""} 5.0"#,
        ],
        "{text}"
    );
    crate::observe::promtool_check(&text);
}

/// The server's status as soon as it satisfies `acted`, else its last status after a moment:
/// psentinel counts an answer once HAProxy has closed after reading it, a hair before `show
/// stat` shows the result.
fn status_after_wait(h: &Haproxy, backend: &str, acted: impl Fn(&str) -> bool) -> String {
    let end = std::time::Instant::now() + std::time::Duration::from_millis(50);
    loop {
        let s = h.server(backend, "s1").status().to_string();
        if acted(&s) || std::time::Instant::now() >= end {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `enable --wait` of a service whose `check_dummy` says WARNING returns once HAProxy has what
/// psentinel answers it: UP from the default `warning_status` (200); out of rotation from the
/// agent-check's `drain` and from 404 with `disable-on-404`. (Before, it refused: "HAProxy will
/// not put it back".)
#[test]
fn enable_wait_of_a_warning_returns_when_haproxy_has_the_answer() {
    let dummy = DUMMY.replace("{plugin}", &plugin("check_dummy"));
    let p: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let (agent, agent_port, nolb, plain, app) = (p[0], p[1], p[2], p[3], p[4]);
    let check = "check_script={dir}/dummy.sh\ncheck_style=nagios\ncheck_script_interval=0.2\n\
                 check_timeout=5\nhaproxy_rise=1\nhaproxy_fall=2\n";
    let d = daemon_with(
        &format!(
            "[agent]\nport={agent}\nagent_port={agent_port}\n{check}\
             [nolb]\nport={nolb}\nwarning_status=404\n{check}\
             [plain]\nport={plain}\n{check}"
        ),
        &[("dummy.sh", &dummy)],
        &[("code", "1")],
    );
    let _app = Dummy::start("127.0.0.1".parse().unwrap(), app, "app");
    let h = Haproxy::start(&format!(
        "global\n    node lb1\n\n\
         backend b_agent\n    server s1 127.0.0.1:{app} check agent-check agent-port {agent_port}\n\n\
         backend b_nolb\n    option httpchk OPTIONS * HTTP/1.0\n    http-check disable-on-404\n    \
         http-check send-state\n    server s1 127.0.0.1:{app} check port {nolb}\n\n\
         backend b_plain\n    option httpchk OPTIONS * HTTP/1.0\n    server s1 127.0.0.1:{app} check port {plain}\n"
    ));
    h.wait("b_agent", "s1", "DRAIN", |s| {
        s.status().starts_with("DRAIN")
    });
    h.wait_status("b_nolb", "s1", "NOLB");
    eventually("HAProxy probing the plain port", DEADLINE, || {
        (d.svc("plain")["probers"][0]["count"].as_u64()? >= 2).then_some(())
    });
    assert_eq!(d.svc("plain")["state"], "warning");

    for (service, backend, said) in [
        ("agent", "b_agent", "answers in a row saying out"),
        ("nolb", "b_nolb", "HAProxy lb1 reports "),
        ("plain", "b_plain", "answers in a row saying up"),
    ] {
        let (code, out, err) = d.ctl(&["disable", service, "--wait", "--timeout", "20s"]);
        assert_eq!(code, 0, "disable --wait {service}: {out}{err}");
        let s = status_after_wait(&h, backend, |s| !s.starts_with("UP"));
        assert!(!s.starts_with("UP"), "{service} disabled, HAProxy says {s}");

        let (code, out, err) = d.ctl(&["enable", service, "--wait", "--timeout", "20s"]);
        assert_eq!(code, 0, "enable --wait {service}: {out}{err}");
        assert!(err.contains("to act on its warning"), "{err}");
        assert!(err.contains(said), "{service}: {err}");
        assert!(out.contains("every recent prober (1) has acted"), "{out}");
        // Out of rotation, whichever way: HAProxy shows DRAIN after MAINT only from its next
        // agent check, and a server the disable took DOWN stays DOWN on a 404 (HAProxy honours
        // disable-on-404 only for a running server; `NOLB 1/2` when it was not down yet).
        let answered: fn(&str) -> bool = match service {
            "plain" => |s| s == "UP",
            _ => |s| !s.starts_with("UP"),
        };
        let s = status_after_wait(&h, backend, answered);
        assert!(
            answered(&s),
            "enable --wait {service} returned while HAProxy says {s}; {err}"
        );
        assert_eq!(d.svc(service)["state"], "warning");
        if service == "agent" {
            h.wait(backend, "s1", "DRAIN", |s| s.status().starts_with("DRAIN"));
        }
    }
    h.assert_clean_log();
}
