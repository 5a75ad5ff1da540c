//! `unit = app.service` under a real systemd (tests/box/psbox): psentinel follows the
//! application's unit on the system bus, and `psentinel-drain@app.service` drains the node
//! before systemd stops the application. In the box: two instances of a small HTTP
//! application behind HAProxy 2.6 (with send-state), psentinel in front of the first one,
//! and a load generator through HAProxy.

use crate::sysbox::Sysbox;
use crate::systemd::{box_probe, installed_box};
use std::collections::HashMap;

/// The application: a tiny HTTP server that takes 5 ms per request (python3-minimal has
/// sockets and threads, not http.server). SIGTERM ends it at once, as a careless app would:
/// only a drain keeps requests from failing.
const APP: &str = r#"
import socket, sys, threading, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1024)
def serve(c):
    try:
        c.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = c.recv(4096)
            if not chunk:
                return
            data += chunk
        time.sleep(0.005)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

const APP_UNIT: &str = "\
[Unit]
Description=test application on port PORT
[Service]
ExecStart=/usr/bin/python3 /opt/app.py PORT
Restart=on-failure
RestartSec=2s
";

const HAPROXY: &str = "\
global
    stats socket /run/haproxy-test.sock mode 600 level admin
defaults
    mode http
    retries 0
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:18000
    default_backend be
backend be
    option httpchk OPTIONS * HTTP/1.0
    http-check send-state
    server app1 127.0.0.1:18001 check port 48080 inter 200ms fall 1 rise 1
    server app2 127.0.0.1:18002 check inter 200ms fall 1 rise 1
";

const CFG: &str = "\
[app]
port = 48080
check_script = /usr/bin/curl -fsS -m 1 -o /dev/null http://127.0.0.1:18001/
# Long on purpose: what takes the node out at once is the unit, not the next check.
check_script_interval = 5
unit = app.service

[general]
dbus = off
";

/// Load through HAProxy while one command runs (`restart`), or while the app is killed
/// (`kill`); prints `key=value` words. Threads pace themselves to RATE requests a second
/// in all.
const LOAD: &str = r#"
import socket, subprocess, sys, threading, time
mode, RATE, THREADS = sys.argv[1], 300, 12
stop = threading.Event()
lock = threading.Lock()
n = {"sent": 0, "ok": 0, "failed": 0}
why = {}
def one():
    try:
        c = socket.create_connection(("127.0.0.1", 18000), timeout=10)
        c.sendall(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
        c.close()
        return data.split(b"\r\n", 1)[0].decode(errors="replace")
    except OSError as e:
        return type(e).__name__
def worker():
    gap = THREADS / RATE
    nxt = time.monotonic()
    while not stop.is_set():
        line = one()
        with lock:
            n["sent"] += 1
            if line.startswith("HTTP/1.1 200"):
                n["ok"] += 1
            else:
                n["failed"] += 1
                why[line] = why.get(line, 0) + 1
        nxt += gap
        time.sleep(max(0, nxt - time.monotonic()))
def hap_status(server):
    s = socket.socket(socket.AF_UNIX)
    s.connect("/run/haproxy-test.sock")
    s.sendall(b"show stat\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    for row in data.decode().splitlines():
        f = row.split(",")
        if len(f) > 17 and f[0] == "be" and f[1] == server:
            return f[17]
    return "?"
def probe():
    try:
        c = socket.create_connection(("127.0.0.1", 48080), timeout=2)
        c.sendall(b"OPTIONS * HTTP/1.0\r\n\r\n")
        data = c.recv(4096)
        c.close()
        return data.split(b" ", 2)[1].decode()
    except (OSError, IndexError):
        return "000"
def until(what, deadline=60):
    t0 = time.monotonic()
    while not what():
        if time.monotonic() - t0 > deadline:
            return -1
        time.sleep(0.005)
    return int((time.monotonic() - t0) * 1000)
threads = [threading.Thread(target=worker) for _ in range(THREADS)]
t_start = time.monotonic()
for t in threads:
    t.start()
out = {}
try:
    time.sleep(2)
    t0 = time.monotonic()
    if mode == "restart":
        r = subprocess.run(["systemctl", "restart", "app.service"], capture_output=True, text=True)
        out["restart_rc"] = r.returncode
        out["restart_ms"] = int((time.monotonic() - t0) * 1000)
        back = until(lambda: hap_status("app1") == "UP")
        out["back_in_haproxy_ms"] = -1 if back < 0 else out["restart_ms"] + back
    else:
        pid = subprocess.run(["systemctl", "show", "-P", "MainPID", "app.service"],
                             capture_output=True, text=True).stdout.strip()
        t0 = time.monotonic()
        subprocess.run(["kill", "-9", pid])
        out["probe_out_ms"] = until(lambda: probe() != "200")
        out["haproxy_down_ms"] = int((time.monotonic() - t0) * 1000) if until(lambda: hap_status("app1") != "UP") >= 0 else -1
    time.sleep(2)
finally:
    stop.set()
    for t in threads:
        t.join(30)
secs = time.monotonic() - t_start
out.update(n)
out["rate"] = int(n["sent"] / secs)
print(" ".join(f"{k}={v}" for k, v in out.items()), "why=" + repr(why).replace(" ", ""))
"#;

fn load(b: &Sysbox, mode: &str) -> HashMap<String, String> {
    let out = b.ok(&format!("timeout 300 python3 /tmp/load.py {mode}"));
    eprintln!("{mode} under load: {}", out.trim());
    out.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn num(m: &HashMap<String, String>, k: &str) -> i64 {
    m.get(k)
        .unwrap_or_else(|| panic!("{k} missing in {m:?}"))
        .parse()
        .unwrap()
}

/// Both apps, HAProxy and psentinel up; the node of app1 in the pool.
fn deploy_box(test: &str) -> Sysbox {
    let b = installed_box(test, CFG);
    b.write("/opt/app.py", APP);
    for (name, port) in [("app", "18001"), ("app2", "18002")] {
        b.write(
            &format!("/etc/systemd/system/{name}.service"),
            &APP_UNIT.replace("PORT", port),
        );
    }
    b.write("/etc/haproxy/haproxy.cfg", HAPROXY);
    b.write("/tmp/load.py", LOAD);
    b.write("/tmp/hapstat.py", HAPSTAT);
    b.ok("systemctl daemon-reload && systemctl start app.service app2.service psentinel.socket");
    b.ok("systemctl restart haproxy.service");
    b
}

/// Prints HAProxy's status of a server of backend `be` (UP, DOWN...).
const HAPSTAT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect("/run/haproxy-test.sock")
s.sendall(b"show stat\n")
data = b"".join(iter(lambda: s.recv(65536), b""))
for row in data.decode().splitlines():
    f = row.split(",")
    if len(f) > 17 and f[:2] == ["be", sys.argv[1]]:
        print(f[17])
"#;

fn wait_app1(b: &Sysbox, status: &str) {
    b.wait_for(
        &format!("HAProxy reports app1 {status}"),
        30,
        &format!("test \"$(python3 /tmp/hapstat.py app1)\" = {status}"),
    );
}

#[test]
fn sysbox_unit_state_takes_the_node_out_and_the_drain_unit_restarts_without_errors() {
    let b = deploy_box("drain");
    wait_app1(&b, "UP");
    // psentinel, running as its own user under its hardening, follows the unit.
    b.wait_for(
        "unit_state active",
        30,
        "psentinel -c status app --json | grep -q '\"unit_state\": \"active\"'",
    );
    let status = b.ok("psentinel -c status app");
    assert!(
        status.contains("unit:        app.service active (running)"),
        "{status}"
    );

    // A reload that removes unit= forgets the unit; one that adds it back follows it again.
    b.write(
        "/etc/psentinel/psentinel.cfg",
        &CFG.replace("unit = app.service\n", ""),
    );
    b.ok("systemctl reload psentinel.service");
    let json = b.ok("psentinel -c status app --json");
    assert!(json.contains("\"unit_state\": \"\""), "{json}");
    b.write("/etc/psentinel/psentinel.cfg", CFG);
    b.ok("systemctl reload psentinel.service");
    b.wait_for(
        "unit_state active after the reload",
        30,
        "psentinel -c status app --json | grep -q '\"unit_state\": \"active\"'",
    );

    // The baseline: a plain restart under load, without the drain unit.
    let plain = load(&b, "restart");
    wait_app1(&b, "UP");

    // A stop without the drain unit: the unit's state takes the node out at once.
    b.ok("systemctl stop app.service");
    assert_eq!(box_probe(&b, 48080), "500");
    let json = b.ok("psentinel -c status app --json");
    assert!(json.contains("\"unit_state\": \"inactive\""), "{json}");
    assert!(
        json.contains("Unit app.service is inactive (dead)"),
        "{json}"
    );
    let metrics = b.ok("psentinel -c metrics");
    assert!(
        metrics.contains(
            "psentinel_service_unit_state{service=\"app\",unit=\"app.service\",state=\"inactive\"} 1"
        ),
        "{metrics}"
    );
    b.ok("systemctl start app.service");
    wait_app1(&b, "UP");

    // With the drain unit: a restart under load fails no request.
    b.ok("systemctl enable --now psentinel-drain@app.service");
    let m = load(&b, "restart");
    assert_eq!(num(&m, "restart_rc"), 0, "{m:?}");
    assert!(num(&m, "rate") >= 200, "load too thin: {m:?}");
    assert_eq!(
        num(&m, "failed"),
        0,
        "requests failed during a drained restart: {m:?}"
    );
    // Back before the next regular check (5 s) would have run: the new process is checked
    // at once and again until it passes, not on the interval.
    let back = num(&m, "back_in_haproxy_ms");
    assert!((1..5000).contains(&back), "not back on time: {m:?}");
    eprintln!(
        "failed requests: {} of {} in a plain restart, {} of {} in a drained one",
        num(&plain, "failed"),
        num(&plain, "sent"),
        num(&m, "failed"),
        num(&m, "sent")
    );
    let journal = b.ok("journalctl -b --no-pager -o cat -u psentinel.service");
    assert!(journal.contains("root: unit_stopping app"), "{journal}");
    assert!(journal.contains("root: unit_started app"), "{journal}");

    // kill -9 of the app: out at once (systemd notices the death, psentinel hears it).
    let m = load(&b, "kill");
    let out = num(&m, "probe_out_ms");
    assert!(
        (0..1000).contains(&out),
        "the probe answered 200 for {out} ms after kill -9: {m:?}"
    );
    assert!(num(&m, "haproxy_down_ms") >= 0, "{m:?}");
}

// ---- on the host: no system bus, no systemd ------------------------------------------

use crate::support::{eventually, free_port, probe, probe_status, Daemon, DEADLINE};

/// Without a system bus (here: none at the address given), `unit=` is said once not to be
/// followed, and the service answers from its check alone; the drain commands still work.
#[test]
fn without_a_system_bus_unit_is_said_once_and_the_checks_decide() {
    let port = free_port();
    let mut d = Daemon::prepare(&format!(
        "[app]\nport={port}\nbind=127.0.0.1\nunit=app.service\n"
    ));
    let nobus = format!("unix:path={}", d.path("no-bus").display());
    d.spawn(&[("DBUS_SYSTEM_BUS_ADDRESS", &nobus)]);
    d.notify.lines.wait("READY=1");
    d.log.wait("cannot follow app.service on the system bus");
    assert_eq!(probe_status(port), 200);
    let s = d.svc("app");
    assert_eq!(
        (s["unit"].as_str(), s["unit_state"].as_str()),
        (Some("app.service"), Some("unknown"))
    );
    let text = d.ok(&["status", "app"]);
    assert!(
        text.contains("  unit:        app.service unknown\n"),
        "{text}"
    );

    // The drain unit's commands, by hand.
    let out = d.ok(&["unit_stopping", "app.service"]);
    assert_eq!(
        out,
        "app.service stopping: out until it is active again: app\n"
    );
    let r = probe(port);
    assert_eq!(r.status, 500);
    assert!(
        r.body.contains("Unit app.service is stopping: draining"),
        "{}",
        r.body
    );
    d.ok(&["unit_started", "app.service"]);
    assert_eq!(probe_status(port), 200);
    let (code, out, err) = d.ctl(&["unit_stopping", "other.service"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(format!("{out}{err}").contains("no service follows unit 'other.service'"));

    // A reload that adds a unit: still not followed, and not said again.
    d.rewrite(&format!(
        "[app]\nport={port}\nbind=127.0.0.1\nunit=app.service\n\
         [db]\nport={}\nbind=127.0.0.1\nunit=db.service\n",
        free_port()
    ));
    d.ok(&["reload"]);
    assert_eq!(d.svc("db")["unit_state"], "unknown");
    let said = d
        .log
        .all()
        .iter()
        .filter(|l| l.contains("cannot follow"))
        .count();
    assert_eq!(said, 1, "{:?}", d.log.all());
}

/// `unit_started --wait` without a bus and without an announced stop (the application was
/// restarted behind psentinel's back, its check failing meanwhile): the check runs again at
/// once and until it passes, not after the check's interval (a minute), and the command goes
/// on to wait for the load balancers.
#[test]
fn unit_started_wait_checks_again_at_once_without_a_bus() {
    let port = free_port();
    let mut d = Daemon::prepare(&format!(
        "[app]\nport={port}\nbind=127.0.0.1\nunit=app.service\n\
         check_script={{dir}}/check.sh\ncheck_script_interval=60\n"
    ));
    let flag = d.path("app-listens");
    d.script("check.sh", &format!("test -e {}", flag.display()));
    let nobus = format!("unix:path={}", d.path("no-bus").display());
    d.spawn(&[("DBUS_SYSTEM_BUS_ADDRESS", &nobus)]);
    d.notify.lines.wait("READY=1");
    eventually("the first check fails", DEADLINE, || {
        (d.svc("app")["state"] == "down").then_some(())
    });
    std::fs::write(&flag, "").unwrap();
    // No load balancer probes here: past the check, the wait runs to its timeout and says so.
    let (_, out, err) = d.ctl(&["unit_started", "app.service", "--wait", "--timeout", "5s"]);
    assert!(
        err.contains("timed out") && err.contains("no load balancer has reached psentinel"),
        "waited for the probers, so the check passed: {out}{err}"
    );
    assert_eq!(d.svc("app")["state"], "up");
}

/// A change that cannot be saved (state_dir cannot be written) is in effect, and says so to
/// whoever made it (exit status 1), in `status` and in the metrics; it is saved as soon as
/// saving works again, without another command, and survives a `kill -9` after that.
#[test]
fn a_change_that_cannot_be_saved_says_so_and_is_saved_later() {
    let port = free_port();
    let mut d = Daemon::prepare(&format!("[app]\nport={port}\nbind=127.0.0.1\n"));
    // state_dir cannot be made: a file holds its name (as a full or read-only disk, saving
    // fails; root writes through read-only modes, so a mode would prove nothing here).
    let blocker = d.path("state");
    std::fs::write(&blocker, "").unwrap();
    d.spawn(&[]);
    d.notify.lines.wait("READY=1");
    let (code, out, err) = d.ctl(&["disable", "app", "deploy"]);
    let said = format!("{out}{err}");
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("app disabled\n"), "{said}");
    assert!(said.contains("in effect, but NOT SAVED to "), "{said}");
    assert_eq!(probe_status(port), 503, "in effect");
    let text = d.ok(&["status"]);
    assert!(text.contains("STATE NOT SAVED: cannot write "), "{text}");
    assert_eq!(d.status_json()["state_saved"], false);
    assert!(d.ok(&["metrics"]).contains("\npsentinel_state_saved 0\n"));

    std::fs::remove_file(&blocker).unwrap();
    eventually("state saved again", DEADLINE, || {
        (d.status_json()["state_saved"] == true).then_some(())
    });
    d.log.wait("state saved again");
    d.kill9();
    let before = d.notify.lines.len();
    d.spawn(&[]);
    d.notify.lines.wait_from(before, "READY=1", DEADLINE);
    assert_eq!(probe_status(port), 503);
    assert_eq!(d.svc("app")["reason"], "deploy");
}
