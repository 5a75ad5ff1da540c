//! Harness for the HAProxy suite: a real `haproxy` in the foreground on loopback, its admin
//! socket and its log; dummy back-end servers; the tested configuration snippets.
//!
//! HAProxy runs as `haproxy -f CFG -db` (foreground, no fork) in a temp dir, with
//! `stats socket DIR/admin.sock level admin` and `log stdout format raw local0`, so the test
//! reads server states from `show stat` and the health-check log from the child's stdout.
//! Checks are fast (`default-server inter 100ms rise 1 fall 2`): snippets under
//! `examples/haproxy/` leave the interval to these defaults, so the files docs/haproxy.md shows are
//! the files the tests run, with only addresses and ports substituted.
//!
//! The binary is `$PSENTINEL_HAPROXY`, default `haproxy` from PATH (Debian 12's 2.6): `make
//! test` runs these tests a second time with Debian 13's 3.0 (`tests/box/haproxy-trixie`).

#![allow(dead_code)]

use crate::support::{eventually, Lines, DEADLINE};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Words HAProxy uses when a check answer is not what it understands, or does not come:
/// none of them may ever appear for psentinel's ports.
pub const BAD_CHECK_WORDS: &[&str] = &[
    "invalid response",
    "empty response",
    "L7RSP",
    "L6RSP",
    "socket error",
    "SOCKERR",
    "timeout",
    "connection problem",
    "agent reports an error",
    "agent warns",
];

/// `global` + `defaults` every test configuration starts with; `{dir}` is the temp dir.
const PRELUDE: &str = "\
global
    log stdout format raw local0
    stats socket {dir}/admin.sock level admin
    # No chroot, user switch or pid file: one private haproxy per test, in its temp dir.

defaults
    mode http
    log global
    option log-health-checks
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout check 2s
    # Fast checks so that every transition shows within a fraction of a second.
    default-server inter 100ms fastinter 100ms downinter 100ms agent-inter 100ms rise 1 fall 2

";

/// The text of `examples/haproxy/NAME`.
pub fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/haproxy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Replaces each `from` by `to`, in order; every `from` must occur, so that an edit of an
/// example that drops an address the test relies on fails loudly instead of testing less.
pub fn substitute(text: &str, pairs: &[(&str, String)]) -> String {
    let mut out = text.to_string();
    for (from, to) in pairs {
        assert!(
            out.contains(from),
            "{from:?} not found in the example:\n{out}"
        );
        out = out.replace(from, to);
    }
    out
}

/// The haproxy the tests run: `$PSENTINEL_HAPROXY`, or `haproxy` from PATH.
pub fn haproxy_bin() -> String {
    std::env::var("PSENTINEL_HAPROXY")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "haproxy".to_string())
}

pub struct Haproxy {
    pub dir: tempfile::TempDir,
    pub cfg: PathBuf,
    pub admin: PathBuf,
    /// stdout (the log, raw format) and stderr (warnings, alerts), line by line.
    pub log: Lines,
    child: Option<Child>,
}

impl Haproxy {
    /// Starts haproxy on `body` (frontends and backends) after the test prelude; returns once
    /// its admin socket answers.
    pub fn start(body: &str) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("haproxy.cfg");
        let text = format!("{PRELUDE}{body}\n").replace("{dir}", &dir.path().display().to_string());
        std::fs::write(&cfg, text).unwrap();
        let bin = haproxy_bin();
        let mut child = match Command::new(&bin)
            .arg("-f")
            .arg(&cfg)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot run {bin} ({e}): the HAProxy suite needs Debian's haproxy; \
                 install it with `make deps` or `apt-get install haproxy`, or point \
                 PSENTINEL_HAPROXY at one"
            ),
        };
        let log = Lines::default();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for (pipe, tag) in [
            (Box::new(out) as Box<dyn Read + Send>, ""),
            (Box::new(err), "stderr: "),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    log.push(format!("{tag}{line}"));
                }
            });
        }
        let admin = dir.path().join("admin.sock");
        let mut h = Haproxy {
            dir,
            cfg,
            admin,
            log,
            child: Some(child),
        };
        // No readiness event in -db mode: poll the admin socket, fail fast if haproxy died.
        eventually("haproxy admin socket", DEADLINE, || {
            if let Some(st) = h.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "{bin} exited ({st}) on {}:\n{}",
                    h.cfg.display(),
                    h.log.all().join("\n")
                );
            }
            h.try_cmd("show info").ok()
        });
        h
    }

    fn try_cmd(&self, cmd: &str) -> std::io::Result<String> {
        let mut s = UnixStream::connect(&self.admin)?;
        s.set_read_timeout(Some(DEADLINE))?;
        s.write_all(format!("{cmd}\n").as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    /// One command on the admin socket; its answer.
    pub fn cmd(&self, cmd: &str) -> String {
        self.try_cmd(cmd)
            .unwrap_or_else(|e| panic!("{}: {cmd}: {e}", self.admin.display()))
    }

    /// `show stat`, one map per row, keyed by the header's column names.
    pub fn stat(&self) -> Vec<BTreeMap<String, String>> {
        parse_stat(&self.cmd("show stat"))
    }

    /// The `show stat` row of one server.
    pub fn server(&self, backend: &str, server: &str) -> Server {
        let row = self
            .stat()
            .into_iter()
            .find(|r| r["pxname"] == backend && r["svname"] == server)
            .unwrap_or_else(|| panic!("no server {backend}/{server} in show stat"));
        Server(row)
    }

    /// Waits until `backend/server` satisfies `ok`; returns that row. On timeout the message
    /// shows the last row seen and HAProxy's log.
    pub fn wait(
        &self,
        backend: &str,
        server: &str,
        what: &str,
        ok: impl Fn(&Server) -> bool,
    ) -> Server {
        let end = std::time::Instant::now() + DEADLINE;
        loop {
            let s = self.server(backend, server);
            if ok(&s) {
                return s;
            }
            assert!(
                std::time::Instant::now() < end,
                "{backend}/{server}: not {what} within {DEADLINE:?}; last: {:?}\nhaproxy log:\n{}",
                s.0,
                self.log.all().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the server's `status` column is exactly `status` (UP, DOWN, MAINT, ...).
    pub fn wait_status(&self, backend: &str, server: &str, status: &str) -> Server {
        self.wait(backend, server, status, |s| s.status() == status)
    }

    /// Fails if HAProxy ever complained about an answer from psentinel.
    pub fn assert_clean_log(&self) {
        let bad: Vec<String> = self
            .log
            .all()
            .into_iter()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                BAD_CHECK_WORDS
                    .iter()
                    .any(|w| l.contains(&w.to_ascii_lowercase()))
            })
            .collect();
        assert!(
            bad.is_empty(),
            "HAProxy reported bad check answers:\n{}",
            bad.join("\n")
        );
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One server's `show stat` row.
#[derive(Debug, Clone)]
pub struct Server(pub BTreeMap<String, String>);

impl Server {
    pub fn get(&self, col: &str) -> &str {
        self.0
            .get(col)
            .unwrap_or_else(|| panic!("no column {col:?} in show stat"))
    }
    pub fn status(&self) -> &str {
        self.get("status")
    }
    /// `check_status` without the `* ` HAProxy puts before it while a check is running.
    pub fn check_status(&self) -> &str {
        self.get("check_status").trim_start_matches("* ")
    }
    pub fn last_chk(&self) -> &str {
        self.get("last_chk")
    }
    pub fn last_agt(&self) -> &str {
        self.get("last_agt")
    }
    pub fn weight(&self) -> u32 {
        self.get("weight").parse().unwrap()
    }
}

/// HAProxy's stats CSV: a `# ` header naming the columns, then rows; fields with commas or
/// quotes are quoted with doubled quotes inside.
pub fn parse_stat(csv: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = csv.lines();
    let header = lines
        .next()
        .and_then(|h| h.strip_prefix("# "))
        .unwrap_or_else(|| panic!("show stat: no header in {csv:?}"));
    let names = split_csv(header);
    lines
        .filter(|l| !l.is_empty())
        .map(|l| names.iter().cloned().zip(split_csv(l)).collect())
        .collect()
}

fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// A stand-in back-end server: answers every connection with a tiny HTTP response whose body
/// is its name, so a request through HAProxy shows which server it reached.
pub struct Dummy {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Dummy {
    pub fn start(ip: IpAddr, port: u16, name: &str) -> Dummy {
        let addr = SocketAddr::new(ip, port);
        let listener =
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("dummy {name} on {addr}: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, name) = (stop.clone(), name.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let name = name.clone();
                std::thread::spawn(move || {
                    // Read the request head if one comes (HTTP through HAProxy); a TCP health
                    // check sends nothing and just closes.
                    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                    }
                    let body = format!("{name}\n");
                    let _ = conn.write_all(
                        format!(
                            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    );
                });
            }
        });
        Dummy { addr, stop }
    }
}

impl Drop for Dummy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag and closes the listener.
        let _ = TcpStream::connect(self.addr);
    }
}

/// One request through a HAProxy frontend on 127.0.0.1:port: the body (a dummy's name), or
/// None when HAProxy had no server to send it to.
pub fn fetch(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.trim().to_string())
}
