//! Deploys with zero failed requests (docs/deploys.md), proved against real peers: a real
//! HAProxy with `http-check send-state` in front of two application instances on loopback
//! (Python's threaded HTTP server: a few ms per request, and `/long` streaming for 3 s), one
//! psentinel per instance, and a load generator through HAProxy (std threads, at least
//! 200 requests/s, with long requests throughout).
//!
//! - A rolling deploy by command line (`disable --wait=drained`, stop the app, start it,
//!   `enable --wait`) fails no request and completes every long one; the same roll with a
//!   plain restart fails requests. Both numbers are printed (`--nocapture`).
//! - The capacity guard: with one node out the other's disable is refused, `--force` takes
//!   it out; with two HAProxy instances probing, the guard consults both.

use crate::haproxy_support::Haproxy;
use crate::support::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The application: `/` takes 3 ms, `/long` streams 30 lines 100 ms apart then `done`.
const APP: &str = r#"
import sys, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def log_message(self, *a):
        pass
    def do_GET(self):
        if self.path == "/long":
            self.send_response(200)
            self.end_headers()
            for _ in range(30):
                self.wfile.write(b"chunk\n")
                self.wfile.flush()
                time.sleep(0.1)
            self.wfile.write(b"done\n")
        else:
            time.sleep(0.003)
            body = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

ThreadingHTTPServer.allow_reuse_address = True
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer.request_queue_size = 512
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

/// One application instance (a python3 process) on 127.0.0.1:port.
struct App {
    script: std::path::PathBuf,
    port: u16,
    child: Option<Child>,
}

impl App {
    fn start(dir: &std::path::Path, port: u16) -> App {
        let script = dir.join("app.py");
        std::fs::write(&script, APP).unwrap();
        let mut a = App {
            script,
            port,
            child: None,
        };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let child = Command::new("python3")
            .arg(&self.script)
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run python3 ({e}): the deploy tests need it; apt-get install python3"
                )
            });
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        eventually("the app listening", DEADLINE, || {
            TcpStream::connect(addr).ok().map(|_| ())
        });
    }

    /// Stops the process at once: whatever it was serving is cut.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the load generator saw.
#[derive(Default)]
struct Tally {
    short_ok: AtomicU64,
    short_failed: AtomicU64,
    long_ok: AtomicU64,
    long_failed: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn failed(&self) -> u64 {
        self.short_failed.load(SeqCst) + self.long_failed.load(SeqCst)
    }
}

/// One GET through HAProxy: Ok when the answer is a 200 whose body ends as expected.
fn get(fe: u16, path: &str, ends: &str) -> Result<(), String> {
    let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], fe)))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| format!("read: {e}"))?;
    let out = String::from_utf8_lossy(&out);
    if out.starts_with("HTTP/1.0 200") && out.ends_with(ends) {
        Ok(())
    } else {
        Err(format!(
            "{path}: {:?}",
            out.chars().take(60).collect::<String>()
        ))
    }
}

/// Load through HAProxy until dropped: `SHORT_THREADS` paced workers (together
/// `SHORT_RATE` requests/s) and `LONG_THREADS` workers each doing `/long` back to back.
struct Load {
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    started: Instant,
}

const SHORT_THREADS: u32 = 10;
const SHORT_RATE: u32 = 250;
const LONG_THREADS: u32 = 4;

impl Load {
    fn start(fe: u16) -> Load {
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let every = Duration::from_secs(1) * SHORT_THREADS / SHORT_RATE;
        for i in 0..SHORT_THREADS {
            let (tally, stop) = (tally.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                // Spread the workers over one period; each keeps its own schedule.
                let mut next = Instant::now() + every * i / SHORT_THREADS;
                while !stop.load(SeqCst) {
                    if let Some(d) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                    next += every;
                    match get(fe, "/", "ok\n") {
                        Ok(()) => tally.short_ok.fetch_add(1, SeqCst),
                        Err(e) => {
                            tally.failures.lock().unwrap().push(e);
                            tally.short_failed.fetch_add(1, SeqCst)
                        }
                    };
                }
            }));
        }
        for _ in 0..LONG_THREADS {
            let (tally, stop) = (tally.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(SeqCst) {
                    match get(fe, "/long", "done\n") {
                        Ok(()) => tally.long_ok.fetch_add(1, SeqCst),
                        Err(e) => {
                            tally.failures.lock().unwrap().push(e);
                            tally.long_failed.fetch_add(1, SeqCst)
                        }
                    };
                }
            }));
        }
        Load {
            tally,
            stop,
            threads,
            started: Instant::now(),
        }
    }

    /// Stops the workers (a long request in flight completes first) and returns the tally
    /// and the rate of short requests.
    fn finish(mut self) -> (Arc<Tally>, f64) {
        let elapsed = self.started.elapsed().as_secs_f64();
        self.stop.store(true, SeqCst);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        let t = &self.tally;
        let rate = (t.short_ok.load(SeqCst) + t.short_failed.load(SeqCst)) as f64 / elapsed;
        (self.tally.clone(), rate)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
    }
}

/// Two nodes: app + psentinel each, one HAProxy (node lb1) in front with send-state.
struct Pool {
    apps: Vec<App>,
    nodes: Vec<Daemon>,
    hap: Haproxy,
    fe: u16,
}

impl Pool {
    fn start() -> Pool {
        let fe = free_port();
        let mut apps = Vec::new();
        let mut nodes = Vec::new();
        let mut servers = String::new();
        for n in 1..=2 {
            let (app_port, check_port) = (free_port(), free_port());
            let d = Daemon::start(&format!("[app]\nport={check_port}\nbind=127.0.0.1\n"));
            apps.push(App::start(d.dir.path(), app_port));
            nodes.push(d);
            servers += &format!(
                "    server app{n} 127.0.0.1:{app_port} check port {check_port} inter 100ms\n"
            );
        }
        let hap = Haproxy::start(&format!(
            "global\n    node lb1\n\nfrontend fe\n    bind 127.0.0.1:{fe}\n    default_backend be\n\n\
             backend be\n    option httpchk\n    http-check send-state\n{servers}"
        ));
        for n in 1..=2 {
            hap.wait_status("be", &format!("app{n}"), "UP");
        }
        Pool {
            apps,
            nodes,
            hap,
            fe,
        }
    }

    /// Until HAProxy has at least one session on `appN`: a restart now cuts a long request.
    fn wait_busy(&self, n: usize) {
        self.hap.wait("be", &format!("app{n}"), "busy", |s| {
            s.get("scur").parse::<u32>().unwrap_or(0) > 0
        });
    }
}

fn ctl(d: &Daemon, words: &[&str]) -> String {
    let (code, out, err) = d.ctl(words);
    assert_eq!(code, 0, "psentinel -c {words:?}:\n{out}{err}");
    format!("{out}{err}")
}

#[test]
fn rolling_deploy_with_drain_fails_no_request_and_a_plain_restart_does() {
    let mut pool = Pool::start();
    let load = Load::start(pool.fe);
    std::thread::sleep(Duration::from_secs(1));
    let mut drained_restart = Vec::new();
    for n in 0..2 {
        let t0 = Instant::now();
        let d = &pool.nodes[n];
        let out = ctl(
            d,
            &[
                "disable",
                "app",
                "--wait=drained",
                "--timeout",
                "30s",
                "deploy",
            ],
        );
        assert!(
            out.contains("app: drained: every recent prober (1)"),
            "{out}"
        );
        assert_eq!(
            pool.hap.server("be", &format!("app{}", n + 1)).get("scur"),
            "0",
            "drained means no session: {out}"
        );
        pool.apps[n].stop();
        pool.apps[n].spawn();
        ctl(d, &["enable", "app", "--wait", "--timeout", "30s"]);
        drained_restart.push(t0.elapsed());
    }
    std::thread::sleep(Duration::from_millis(500));
    let (drained, rate) = load.finish();

    // The same roll with a plain restart: nobody tells HAProxy.
    let load = Load::start(pool.fe);
    std::thread::sleep(Duration::from_secs(1));
    for n in 0..2 {
        pool.wait_busy(n + 1);
        pool.apps[n].stop();
        pool.apps[n].spawn();
    }
    // HAProxy holds a request to a refused server for up to a second before it retries:
    // the paced workers catch up meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    let (plain, plain_rate) = load.finish();

    let line = |what: &str, t: &Tally, rate: f64| {
        format!(
            "{what}: {} failed of {} short requests and {} failed of {} long ones ({rate:.0} short requests/s)",
            t.short_failed.load(SeqCst),
            t.short_ok.load(SeqCst) + t.short_failed.load(SeqCst),
            t.long_failed.load(SeqCst),
            t.long_ok.load(SeqCst) + t.long_failed.load(SeqCst),
        )
    };
    println!(
        "{}",
        line("rolling deploy with disable --wait=drained", &drained, rate)
    );
    println!(
        "  drained restart per node: {:.1}s, {:.1}s",
        drained_restart[0].as_secs_f64(),
        drained_restart[1].as_secs_f64()
    );
    println!(
        "{}",
        line("the same roll with a plain restart", &plain, plain_rate)
    );
    assert!(
        rate >= 200.0,
        "load too thin to prove anything: {rate:.0}/s"
    );
    assert!(plain_rate >= 200.0, "load too thin: {plain_rate:.0}/s");
    assert!(drained.long_ok.load(SeqCst) >= 4, "long requests ran");
    assert_eq!(
        drained.failed(),
        0,
        "drained roll: {:?}",
        drained.failures.lock().unwrap()
    );
    assert!(
        plain.failed() > 0,
        "a plain restart under load should fail requests"
    );
    pool.hap.assert_clean_log();
}

#[test]
fn the_guard_refuses_the_last_server_of_any_balancer_and_force_overrides() {
    let pool = Pool::start();
    let (d1, d2) = (&pool.nodes[0], &pool.nodes[1]);
    // A second HAProxy (lb2) whose backend has only app2.
    let check2 = d2.svc("app")["port"].as_u64().unwrap();
    let _lb2 = Haproxy::start(&format!(
        "global\n    node lb2\n\nbackend only2\n    option httpchk\n    http-check send-state\n\
         server app2 127.0.0.1:{} check port {check2} inter 100ms\n",
        pool.apps[1].port
    ));
    eventually("lb2 probing app2 with its weight", DEADLINE, || {
        let s = d2.ok(&["status", "app"]);
        s.contains("HAProxy lb2 (127.0.0.1) backend only2: this server 1 of 1")
            .then_some(())
    });

    // lb1 keeps app1, but lb2 would have no server left: refused, naming lb2.
    let (code, out, err) = d2.ctl(&["disable", "app", "deploy"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("HAProxy lb2 (127.0.0.1) backend only2 would keep 0 of 1 weight (0%): no usable server left"),
        "{err}"
    );
    assert!(!err.contains("lb1"), "lb1 keeps app1: {err}");
    assert_eq!(d2.svc("app")["state"], "up", "refused: nothing changed");

    // app1 is only behind lb1, which keeps app2: allowed. Then app2 is the last one of both.
    ctl(
        d1,
        &["disable", "app", "--wait", "--timeout", "30s", "first"],
    );
    eventually("lb1 counting app2 alone", DEADLINE, || {
        let s = d2.ok(&["status", "app"]);
        s.contains("HAProxy lb1 (127.0.0.1) backend be: this server 1 of 1")
            .then_some(())
    });
    let (code, out, err) = d2.ctl(&["disable", "app", "second"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("HAProxy lb1 (127.0.0.1) backend be would keep 0 of 1"),
        "{err}"
    );
    assert!(
        err.contains("HAProxy lb2 (127.0.0.1) backend only2 would keep 0 of 1"),
        "{err}"
    );
    assert!(err.contains("--force takes it out anyway"), "{err}");

    let out = ctl(
        d2,
        &[
            "disable",
            "app",
            "--force",
            "--wait",
            "--timeout",
            "30s",
            "second",
        ],
    );
    assert!(out.contains("app disabled; forced: HAProxy lb"), "{out}");
    pool.hap.wait_status("be", "app2", "DOWN");
    assert!(
        d2.log
            .all()
            .iter()
            .any(|l| l.contains("--force on app: past the capacity guard")),
        "the journal records the override"
    );
}

#[test]
fn without_send_state_there_is_no_guard_and_status_says_capacity_unknown() {
    let d = Daemon::start(&format!("[app]\nport={}\nbind=127.0.0.1\n", free_port()));
    let s = d.ok(&["status", "app"]);
    assert!(s.contains("capacity:    unknown"), "{s}");
    assert_eq!(d.svc("app")["capacity"], serde_json::Value::Null);
    ctl(&d, &["disable", "app", "nobody guards"]);
}
