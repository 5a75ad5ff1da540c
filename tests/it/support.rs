//! Harness: start the daemon on a temp dir and free ports, wait on its events, probe it.
//!
//! Readiness is READY=1 on a NOTIFY_SOCKET of the test's own, not a sleep; log lines are
//! collected from stderr and waited on with deadlines.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_psentinel");
pub const DEADLINE: Duration = Duration::from_secs(20);

pub use crate::ports::free_port;

/// Lines seen so far, and a condvar to wait for more.
#[derive(Default, Clone)]
pub struct Lines(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Lines {
    pub fn push(&self, l: String) {
        let (m, c) = &*self.0;
        m.lock().unwrap().push(l);
        c.notify_all();
    }

    pub fn all(&self) -> Vec<String> {
        self.0 .0.lock().unwrap().clone()
    }

    /// Waits until a line (after the first `from`) contains `needle`; returns its index.
    pub fn wait_from(&self, from: usize, needle: &str, deadline: Duration) -> usize {
        let (m, c) = &*self.0;
        let end = Instant::now() + deadline;
        let mut g = m.lock().unwrap();
        loop {
            if let Some(i) = g.iter().skip(from).position(|l| l.contains(needle)) {
                return from + i;
            }
            let now = Instant::now();
            assert!(
                now < end,
                "no line containing {needle:?} within {deadline:?}; seen:\n{}",
                g.join("\n")
            );
            g = c.wait_timeout(g, end - now).unwrap().0;
        }
    }

    pub fn wait(&self, needle: &str) -> usize {
        self.wait_from(0, needle, DEADLINE)
    }

    pub fn len(&self) -> usize {
        self.0 .0.lock().unwrap().len()
    }
}

/// A fake systemd notify socket: collects every datagram as a line.
pub struct Notify {
    pub path: PathBuf,
    pub lines: Lines,
}

impl Notify {
    pub fn new(dir: &Path) -> Notify {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let lines = Lines::default();
        let l2 = lines.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                for part in String::from_utf8_lossy(&buf[..n]).lines() {
                    l2.push(part.to_string());
                }
            }
        });
        Notify { path, lines }
    }
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub cfg: PathBuf,
    pub sock: PathBuf,
    pub child: Option<Child>,
    pub log: Lines,
    pub notify: Notify,
}

/// The `[general]` section every test config gets: everything inside the test's temp dir.
pub fn general(dir: &Path) -> String {
    format!(
        "[general]\nlog_level=3\npid_file={0}/psentinel.pid\nsock_file={0}/psentinel.sock\nstate_dir={0}/state\ndbus=off\n",
        dir.display()
    )
}

impl Daemon {
    /// Writes `services` (INI sections) plus a [general] section into a temp dir and starts
    /// `psentinel -D` on it; returns once READY=1 arrived.
    pub fn start(services: &str) -> Daemon {
        let d = Daemon::prepare(services);
        d.started(&[])
    }

    /// Config written, daemon not started yet (to add scripts into `dir` first, or start it
    /// with other options).
    pub fn prepare(services: &str) -> Daemon {
        Daemon::prepare_general(services, "")
    }

    /// Like `prepare`, with `extra` lines (`key=value\n`) added to `[general]`.
    pub fn prepare_general(services: &str, extra: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("psentinel.cfg");
        let services = services.replace("{dir}", &dir.path().display().to_string());
        std::fs::write(&cfg, format!("{services}\n{}{extra}", general(dir.path()))).unwrap();
        let notify = Notify::new(dir.path());
        Daemon {
            sock: dir.path().join("psentinel.sock"),
            cfg,
            child: None,
            log: Lines::default(),
            notify,
            dir,
        }
    }

    pub fn started(mut self, extra_env: &[(&str, &str)]) -> Daemon {
        self.spawn(extra_env);
        self.notify.lines.wait("READY=1");
        self
    }

    /// Starts the process without waiting for READY=1.
    pub fn spawn(&mut self, extra_env: &[(&str, &str)]) {
        self.spawn_via(&[], extra_env);
    }

    /// Starts `WRAPPER... psentinel -D -f CFG`, without waiting for READY=1: for a wrapper
    /// that ends by exec'ing its arguments (systemd-socket-activate; `sh -c '...; exec "$0"
    /// "$@"'`), so the daemon keeps the wrapper's pid.
    pub fn spawn_via(&mut self, wrapper: &[&str], extra_env: &[(&str, &str)]) {
        let mut cmd = match wrapper.split_first() {
            None => Command::new(BIN),
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(BIN);
                c
            }
        };
        cmd.arg("-D")
            .arg("-f")
            .arg(&self.cfg)
            .env("NOTIFY_SOCKET", &self.notify.path)
            .env_remove("LISTEN_FDS")
            .env_remove("JOURNAL_STREAM")
            // A pipe nobody writes to (kept open with the Child): a check that inherited the
            // daemon's stdin instead of getting /dev/null would be seen.
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        self.keep(cmd.spawn().unwrap());
    }

    /// Starts the daemon with `listeners` passed as systemd passes a socket unit's sockets
    /// (LISTEN_FDS, descriptors from 3 on; at most two), without waiting for READY=1. The
    /// sockets stay ours: a restart hands the same ones, with what waits in their backlog, to
    /// the next process, as systemd does.
    pub fn spawn_activated(&mut self, listeners: &[&std::net::TcpListener]) {
        assert!((1..=2).contains(&listeners.len()));
        let fd = |i: usize| -> Stdio {
            match listeners.get(i) {
                Some(l) => Stdio::from(std::os::fd::OwnedFd::from(l.try_clone().unwrap())),
                None => Stdio::null(),
            }
        };
        // The shell moves them from stdin and stdout to 3 and 4, then becomes the daemon
        // (LISTEN_PID is its own pid).
        let script = format!(
            "exec 3<&0 4>&1 0</dev/null 1>/dev/null; LISTEN_PID=$$ LISTEN_FDS={} exec \"$0\" \"$@\"",
            listeners.len()
        );
        let child = Command::new("sh")
            .args(["-c", &script, BIN, "-D", "-f"])
            .arg(&self.cfg)
            .env("NOTIFY_SOCKET", &self.notify.path)
            .env_remove("JOURNAL_STREAM")
            .stdin(fd(0))
            .stdout(fd(1))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.keep(child);
    }

    /// The daemon just spawned: its stderr goes to the log (what tests wait on), and it is
    /// the one `Drop` stops.
    fn keep(&mut self, mut child: Child) {
        let log = self.log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.push(line);
            }
        });
        self.child = Some(child);
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes an executable script into the test dir.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        script(self.dir.path(), name, body)
    }

    /// `psentinel -c WORDS... -f CFG`: (exit code, stdout, stderr).
    pub fn ctl(&self, words: &[&str]) -> (i32, String, String) {
        ctl_as(&self.cfg, words, None)
    }

    /// Like ctl, asserting exit 0; returns stdout.
    pub fn ok(&self, words: &[&str]) -> String {
        let (code, out, err) = self.ctl(words);
        assert_eq!(code, 0, "psentinel -c {words:?}: {out}{err}");
        out
    }

    pub fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).unwrap()
    }

    /// Status of one service from `status --json`.
    pub fn svc(&self, name: &str) -> serde_json::Value {
        self.status_json()["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM and wait for the exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        wait_exit(&mut child, DEADLINE)
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Restart on the same dir/config (state dir kept); waits for READY=1 again.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        let before = self.notify.lines.len();
        self.spawn(&[]);
        self.notify.lines.wait_from(before, "READY=1", DEADLINE);
    }

    /// Rewrites the services part of the config (keeps [general]).
    pub fn rewrite(&self, services: &str) {
        let services = services.replace("{dir}", &self.dir.path().display().to_string());
        std::fs::write(
            &self.cfg,
            format!("{services}\n{}", general(self.dir.path())),
        )
        .unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn wait_exit(child: &mut Child, deadline: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + deadline;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(
            Instant::now() < end,
            "process {} did not exit within {deadline:?}",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// `psentinel -c` as the current user, or via `runuser -u USER` when `user` is given.
pub fn ctl_as(cfg: &Path, words: &[&str], user: Option<&str>) -> (i32, String, String) {
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", BIN]);
            c
        }
        None => Command::new(BIN),
    };
    run(cmd.arg("-c").args(words).arg("-f").arg(cfg))
}

/// Runs a command to its end: exit code (-1 if killed by a signal), stdout, stderr.
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A parsed HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub raw: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` raw on a new connection to 127.0.0.1:port and reads until close.
pub fn raw(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into()
}

pub fn parse_reply(raw: String) -> Reply {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in {raw:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.0"), "{raw:?}");
    let status = parts.next().unwrap().parse().unwrap();
    let reason = parts.next().unwrap_or("").to_string();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    Reply {
        status,
        reason,
        headers,
        body: body.to_string(),
        raw: raw.clone(),
    }
}

/// HAProxy's classic probe: `OPTIONS * HTTP/1.0`.
pub fn probe(port: u16) -> Reply {
    parse_reply(raw(port, b"OPTIONS * HTTP/1.0\r\n\r\n"))
}

pub fn probe_status(port: u16) -> u16 {
    probe(port).status
}

/// Polls `f` until it returns Some, or fails after `deadline`. For state that has no event
/// to wait on from outside the process (a probe answer changing).
pub fn eventually<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "{what}: not within {deadline:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the probe on `port` answers `status`.
pub fn wait_status(port: u16, status: u16) -> Reply {
    let mut last = None;
    eventually(&format!("port {port} answering {status}"), DEADLINE, || {
        let r = probe(port);
        if r.status == status {
            Some(r)
        } else {
            last = Some(r.raw);
            None
        }
    })
}

/// Children of `pid` (all its threads) and their states (`Z` = zombie).
pub fn children(pid: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let list = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for c in list
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
        {
            let stat = std::fs::read_to_string(format!("/proc/{c}/stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next())
                .unwrap_or('?');
            out.push((c, state));
        }
    }
    out
}

pub fn zombies(pid: u32) -> Vec<u32> {
    children(pid)
        .into_iter()
        .filter(|(_, s)| *s == 'Z')
        .map(|(p, _)| p)
        .collect()
}

/// Processes anywhere, other than `daemon`, whose command line mentions `token` (a test's own
/// temp dir).
pub fn processes_with(token: &str, daemon: u32) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(token) && pid != daemon.to_string() {
            out.push(format!("{pid}: {cmd}"));
        }
    }
    out
}

/// The user this test runs as: what the daemon records as `disabled_by`/`paused_by` for our
/// commands (tests run as root or as a normal user).
pub fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .expect("the test's uid has a passwd entry")
        .name
}

/// A system user and group made for one test, removed at the end. Needs root (useradd).
pub struct TestUser {
    pub user: String,
    pub group: String,
}

impl TestUser {
    pub fn new(tag: &str) -> TestUser {
        let id = format!("{tag}{}", std::process::id());
        let (user, group) = (format!("psu{id}"), format!("psg{id}"));
        let run = |cmd: &mut Command| {
            let st = cmd.status().unwrap();
            assert!(st.success(), "{cmd:?}: {st} (this test needs root)");
        };
        run(Command::new("groupadd").args(["--system", &group]));
        run(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--groups",
            &group,
            &user,
        ]));
        TestUser { user, group }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.user).status();
        let _ = Command::new("groupdel").arg(&self.group).status();
    }
}
