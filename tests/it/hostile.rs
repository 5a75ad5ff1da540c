//! Hostile clients and hostile check scripts: nothing a prober, an operator's socket client or
//! a check script does may take the daemon down, block another port, or leak memory, fds,
//! zombies or processes. Bounds are asserted (memory, counts, answers arriving at all within a
//! generous deadline); speed is measured in bench/, and only printed here.

use crate::support::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

// ---- what /proc says about the daemon ----

/// A `VmRSS:`-style field of /proc/<pid>/status, in kB.
fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| {
            v.trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

fn fds(pid: impl std::fmt::Display) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| {
            std::fs::read_link(e.path())
                .map(|l| l.display().to_string())
                .unwrap_or_default()
        })
        .collect()
}

/// The test process holds thousands of sockets: use all the hard limit allows.
fn raise_nofile(need: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
    assert!(
        hard >= need,
        "this test needs {need} open files; the hard RLIMIT_NOFILE is {hard} (raise it: ulimit -Hn)"
    );
}

fn timed_probe(port: u16) -> (Reply, Duration) {
    let t0 = Instant::now();
    let r = probe(port);
    (r, t0.elapsed())
}

fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).unwrap()
}

/// Reads to EOF (or reset), bounded by DEADLINE; returns what arrived.
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("read: {e} after {} bytes", out.len()),
        }
    }
}

fn two_services() -> (Daemon, u16, u16) {
    let (a, b) = (free_port(), free_port());
    let d = Daemon::start(&format!("[target]\nport={a}\n[bystander]\nport={b}\n"));
    (d, a, b)
}

// ---- hostile probers ----

#[test]
fn five_thousand_idle_connections_cost_little_and_do_not_delay_a_probe() {
    const IDLE: usize = 5_000;
    raise_nofile(IDLE as u64 + 1_000);
    let (d, port, other) = two_services();
    let pid = d.pid();
    // A round trip on the control socket first: every start-up task has run by then (some
    // open descriptors of their own after READY=1).
    d.ok(&["version"]);
    let before = fds(pid).len();
    assert_eq!(probe_status(port), 200);
    let fds0 = eventually("the probe's connection closed", DEADLINE, || {
        let n = fds(pid).len();
        (n <= before).then_some(n)
    });
    let rss0 = status_kb(pid, "VmRSS");

    // Opened from a few threads at once: all of them must be open together well within the
    // 5 s read deadline, even on a loaded machine.
    let t0 = Instant::now();
    let openers: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || (0..IDLE / 8).map(|_| connect(port)).collect::<Vec<_>>())
        })
        .collect();
    let mut idle: Vec<TcpStream> = openers
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let opened = t0.elapsed();
    // Accepted (a place each in the port's waiting room) once the daemon holds a descriptor for each of them. A few of
    // the daemon's own descriptors (a state file being written, the control connection of
    // `version` not yet dropped, the first probe's connection, which the observer closes up to
    // 20 ms after the prober did: src/linger.rs) may come and go meanwhile and are not worth
    // a failure.
    const OWN: usize = 8;
    let mut held = 0;
    let accepted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually("daemon accepted every idle connection", DEADLINE, || {
            held = fds(pid).len().saturating_sub(fds0);
            (held + OWN >= IDLE).then_some(())
        })
    }));
    assert!(
        accepted.is_ok(),
        "the daemon holds {held} of the {IDLE} idle connections opened in {opened:?}"
    );
    let rss1 = status_kb(pid, "VmRSS");
    let per_conn = (rss1.saturating_sub(rss0) * 1024) as f64 / held as f64;
    let (r, on_port) = timed_probe(port);
    assert_eq!(
        r.status, 200,
        "a probe is answered while {IDLE} clients idle"
    );
    let (r, on_other) = timed_probe(other);
    assert_eq!(r.status, 200);
    eprintln!(
        "{IDLE} idle connections: opened and accepted in {opened:?}; RSS {rss0} kB -> {rss1} kB \
         = {per_conn:.0} B each; probe on their port {on_port:?}, on another port {on_other:?}"
    );
    // Each waits in its port's waiting room (src/waiting.rs), not in a task of its own.
    assert!(
        per_conn <= 1024.0,
        "{per_conn:.0} bytes per idle connection (RSS {rss0} kB -> {rss1} kB), bound 1 KB"
    );

    // All of them are closed by the daemon at the read deadline (5 s), without an answer.
    let t1 = Instant::now();
    for s in &mut idle {
        assert!(read_all(s).is_empty(), "an idle client gets no answer");
    }
    eprintln!(
        "idle connections all closed {:?} after they were opened",
        t1.elapsed() + opened
    );
    eventually("daemon closed the idle connections", DEADLINE, || {
        (fds(pid).len() <= fds0).then_some(())
    });
    assert_eq!(probe_status(port), 200);
}

#[test]
fn an_idle_port_holds_one_descriptor_and_a_waiting_room_only_while_someone_waits() {
    // 10,000 services must fit the usual open-files limit: a port's waiting room (an epoll set)
    // exists only while a connection waits for its request.
    let ports: Vec<u16> = (0..100).map(|_| free_port()).collect();
    let services: String = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("[s{i}]\nport={p}\n"))
        .collect();
    let d = Daemon::start(&services);
    let pid = d.pid();
    d.ok(&["version"]);
    for p in &ports {
        assert_eq!(probe_status(*p), 200);
    }
    let base = eventually("the probes' connections closed", DEADLINE, || {
        let n = fds(pid).len();
        (n < ports.len() + 40).then_some(n)
    });
    // Rooms are counted by their epoll sets: `base` may still hold answered connections the
    // observer lets go a few milliseconds later, but a room closes with its last answer.
    let epolls = || fds(pid).iter().filter(|l| l.contains("eventpoll")).count();
    let rooms0 = epolls();
    // One slow client: its connection and the room's epoll set.
    let mut slow = connect(ports[0]);
    eventually("the slow connection waiting in a room", DEADLINE, || {
        (epolls() == rooms0 + 1).then_some(())
    });
    slow.write_all(b"OPTIONS / HTTP/1.0\r\n\r\n").unwrap();
    assert!(String::from_utf8_lossy(&read_all(&mut slow)).starts_with("HTTP/1.0 200"));
    drop(slow);
    eventually("the room closed with its last connection", DEADLINE, || {
        (epolls() == rooms0 && fds(pid).len() <= base).then_some(())
    });
}

#[test]
fn garbage_of_every_kind_in_bulk_is_bounded_and_leaves_no_descriptors() {
    let (d, port, other) = two_services();
    let pid = d.pid();
    assert_eq!(probe_status(port), 200);
    d.ok(&["version"]); // every start-up task has run (some open descriptors after READY=1)
    let fds0 = fds(pid).len();
    let rss0 = status_kb(pid, "VmRSS");

    // A flood of 1 MiB with no newline from a writer thread: the daemon reads at most its
    // head limit, answers 431 and closes; the writer stops at the close (reset or broken
    // pipe) or when all of it went into the socket buffers, then reads the answer and the
    // close (read_all fails the test if the daemon never closes).
    let blast = std::thread::spawn(move || {
        let mut s = connect(port);
        s.set_write_timeout(Some(DEADLINE)).unwrap();
        let chunk = vec![b'a'; 64 * 1024];
        let mut sent = 0usize;
        while sent < 1 << 20 {
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        (sent, read_all(&mut s))
    });

    for i in 0..200u32 {
        // Binary garbage with a newline: 400.
        let mut g: Vec<u8> = (0..300u32).map(|j| (i * 31 + j * 17) as u8).collect();
        g.push(b'\n');
        let out = raw(port, &g);
        assert!(out.starts_with("HTTP/1.0 400 "), "garbage #{i}: {out:?}");
        // Oversized head (one request line, then 20 KB of header): 431.
        let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'b', 20_000));
        let out = raw(port, &big);
        assert!(out.starts_with("HTTP/1.0 431 "), "oversized #{i}: {out:?}");
        // Half-closed before the blank line: the request is complete, it is answered.
        let mut s = connect(port);
        s.write_all(b"OPTIONS / HTTP/1.0\r\n").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let out = read_all(&mut s);
        assert!(out.starts_with(b"HTTP/1.0 200 "), "half-closed #{i}");
        // Half-closed without a byte: not a request (400), closed, never hangs.
        let mut s = connect(port);
        s.shutdown(Shutdown::Write).unwrap();
        let out = read_all(&mut s);
        assert!(out.starts_with(b"HTTP/1.0 400 "), "empty #{i}: {out:?}");
        // Reset in the middle of a request.
        let s = connect(port);
        (&s).write_all(b"GET /health HT").unwrap();
        nix::sys::socket::setsockopt(
            &s,
            nix::sys::socket::sockopt::Linger,
            &libc::linger {
                l_onoff: 1,
                l_linger: 0,
            },
        )
        .unwrap();
        drop(s);
    }
    let (sent, answer) = blast.join().unwrap();
    eprintln!("the 1 MiB flood got {sent} bytes in before the daemon closed it");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.0 431 "),
        "the flood's answer: {answer:?}"
    );
    assert_eq!(probe_status(other), 200, "other ports unaffected");
    assert_eq!(probe_status(port), 200);
    eventually("descriptors back to where they were", DEADLINE, || {
        (fds(pid).len() <= fds0).then_some(())
    });
    let rss1 = status_kb(pid, "VmRSS");
    eprintln!("RSS {rss0} kB -> {rss1} kB after 1,000 hostile connections and a 1 MiB flood");
    assert!(rss1 < rss0 + 4096, "RSS grew from {rss0} kB to {rss1} kB");
}

#[test]
fn ten_thousand_probes_at_once_are_all_answered() {
    const THREADS: usize = 10;
    const EACH: usize = 1_000;
    raise_nofile((THREADS * EACH) as u64 + 1_000);
    let (d, port, other) = two_services();
    let pid = d.pid();
    d.ok(&["version"]); // every start-up task has run (some open descriptors after READY=1)
    let fds0 = fds(pid).len();
    let t0 = Instant::now();
    // Each thread opens all its connections and sends its requests first, then reads the
    // answers: up to 10,000 probes in flight at once, beyond the listen backlog.
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut conns: Vec<TcpStream> = (0..EACH)
                    .map(|_| {
                        let mut s = connect(port);
                        s.write_all(b"OPTIONS / HTTP/1.0\r\n\r\n").unwrap();
                        s
                    })
                    .collect();
                conns
                    .iter_mut()
                    .map(read_all)
                    .filter(|out| out.starts_with(b"HTTP/1.0 200 "))
                    .count()
            })
        })
        .collect();
    let (r, during) = timed_probe(other);
    assert_eq!(r.status, 200, "another port answers during the burst");
    let ok: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    eprintln!(
        "{} probes at once: {ok} answered 200 in {:?}; another port answered in {during:?}",
        THREADS * EACH,
        t0.elapsed()
    );
    assert_eq!(ok, THREADS * EACH);
    let mut left = vec![];
    let back = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually("descriptors back to where they were", DEADLINE, || {
            left = fds(pid);
            (left.len() <= fds0).then_some(())
        })
    }));
    assert!(back.is_ok(), "{fds0} descriptors before, now: {left:?}");
}

// ---- hostile control-socket clients ----

/// One raw request on the control socket; returns the whole answer.
fn control_raw(sock: &Path, request: &[u8]) -> String {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let req = request.to_vec();
    let writer = {
        let mut w = s.try_clone().unwrap();
        // A writer thread: the daemon may stop reading (and close) long before we are done.
        std::thread::spawn(move || w.write_all(&req).is_ok())
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the control socket's answer: {e}"),
        }
    }
    writer.join().unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn control_socket_silent_huge_and_unknown_clients_get_clear_bounded_errors() {
    let (d, port, _) = two_services();
    let pid = d.pid();
    let rss0 = status_kb(pid, "VmRSS");

    // Says nothing: the others are served meanwhile; it gets a clear error at the deadline.
    let mut silent = UnixStream::connect(&d.sock).unwrap();
    let t0 = Instant::now();
    let out = d.ok(&["status"]);
    assert!(out.contains("target"), "{out}");
    assert_eq!(probe_status(port), 200);

    // A 1 MiB line: refused with a clear message, without reading (or keeping) all of it.
    let mut huge = vec![b'x'; 1 << 20];
    huge.push(b'\n');
    let out = control_raw(&d.sock, &huge);
    assert!(
        out.starts_with("2 usage\n") && out.contains("longer than 65536 bytes"),
        "{out:?}"
    );

    // Unknown command, raw and through the client.
    let out = control_raw(&d.sock, b"frobnicate now\n");
    assert!(
        out.starts_with("2 usage\n") && out.contains("frobnicate"),
        "{out:?}"
    );
    let (code, _, err) = d.ctl(&["frobnicate"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("frobnicate"), "{err}");
    // Binary garbage and unbalanced quotes.
    let out = control_raw(&d.sock, b"\xff\xfe\x00status\n");
    assert!(out.starts_with("2 usage\n"), "{out:?}");
    let out = control_raw(&d.sock, b"disable target 'unterminated\n");
    assert!(
        out.starts_with("2 usage\n") && out.contains("quote"),
        "{out:?}"
    );

    let mut answer = String::new();
    silent.set_read_timeout(Some(DEADLINE)).unwrap();
    silent.read_to_string(&mut answer).unwrap();
    eprintln!(
        "the silent control client was answered after {:?}",
        t0.elapsed()
    );
    assert!(
        answer.starts_with("2 usage\n") && answer.contains("no command received"),
        "{answer:?}"
    );
    assert_eq!(probe_status(port), 200);
    let rss1 = status_kb(pid, "VmRSS");
    assert!(rss1 < rss0 + 4096, "RSS grew from {rss0} kB to {rss1} kB");
    assert!(d.ok(&["version"]).contains("psentinel"));
}

// ---- hostile check scripts ----

/// A daemon with one service running `body` as its check; `stray.sh` in the test dir is a
/// process that never ends by itself and carries the test dir in its command line, so any
/// copy left behind is found in /proc.
fn check_daemon(body: &str, interval: &str, timeout: &str) -> (Daemon, u16, String) {
    let port = free_port();
    let d = Daemon::prepare("");
    let token = d.dir.path().display().to_string();
    d.script(
        "stray.sh",
        "trap '' TERM HUP INT\nwhile :; do sleep 1; done",
    );
    let body = body.replace("{dir}", &token);
    let check = d.script("check.sh", &body);
    d.rewrite(&format!(
        "[hostile]\nport={port}\ncheck_script={}\ncheck_script_interval={interval}\ncheck_timeout={timeout}\n",
        check.display()
    ));
    let d = d.started(&[]);
    (d, port, token)
}

fn wait_checks(d: &Daemon, n: u64) -> serde_json::Value {
    eventually(&format!("{n} checks done"), Duration::from_secs(60), || {
        let s = d.svc("hostile");
        (s["checks_count"].as_u64().unwrap() >= n).then_some(s)
    })
}

/// After the checks stop: no zombie children, no process of the test left anywhere.
fn assert_clean_after_stopping_checks(d: &Daemon, token: &str) {
    d.ok(&["disable_test", "hostile"]);
    let pid = d.pid();
    let mut last = (vec![], vec![]);
    let clean = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually("no zombies and no strays", DEADLINE, || {
            last = (zombies(pid), processes_with(token, pid));
            (last.0.is_empty() && last.1.is_empty()).then_some(())
        })
    }));
    assert!(
        clean.is_ok(),
        "zombie children of the daemon: {:?}; processes left: {:#?}",
        last.0,
        last.1
    );
}

#[test]
fn check_that_daemonizes_leaves_nothing_behind() {
    // setsid: out of the check's process group; ( ... & ): double fork, parent gone.
    let (d, _, token) = check_daemon(
        "setsid /bin/sh {dir}/stray.sh >/dev/null 2>&1 &\n( /bin/sh {dir}/stray.sh & )\necho forked\nexit 0",
        "0.3",
        "5",
    );
    let s = wait_checks(&d, 3);
    assert_eq!(s["last_exit_status"], 0, "{s}");
    assert_clean_after_stopping_checks(&d, &token);
}

#[test]
fn check_that_ignores_sigterm_is_killed_at_timeout_plus_grace() {
    let (d, port, token) = check_daemon("trap '' TERM\n/bin/sh {dir}/stray.sh", "0.2", "0.5");
    let s = wait_checks(&d, 2);
    assert_eq!(s["last_exit_status"], 124, "timed out: {s}");
    // SIGTERM at 0.5 s is ignored; SIGKILL follows 2 s later. The upper bound leaves the
    // loaded machine 2 s of slack and still fails a daemon that never sends SIGKILL.
    let took = Duration::from_micros(s["last_check_duration_us"].as_u64().unwrap());
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_millis(4500),
        "a run ignoring SIGTERM lasted {took:?}, not timeout 0.5 s + grace 2 s"
    );
    assert_eq!(probe_status(port), 500);
    let out = d.ok(&["status", "hostile"]);
    eprintln!("{out}");
    assert_clean_after_stopping_checks(&d, &token);
}

#[test]
fn check_that_never_exits_is_bounded_by_its_timeout() {
    let (d, port, token) = check_daemon("exec /bin/sh {dir}/stray.sh", "0.2", "0.5");
    let t0 = Instant::now();
    let s = wait_checks(&d, 2);
    eprintln!("2 runs of a never-ending check took {:?}", t0.elapsed());
    assert_eq!(s["last_exit_status"], 124, "{s}");
    assert_eq!(probe_status(port), 500);
    assert_clean_after_stopping_checks(&d, &token);
}

#[test]
fn check_that_prints_100_mb_keeps_a_4k_tail_and_little_memory() {
    let (d, port, token) = check_daemon(
        "head -c 100000000 /dev/zero | tr '\\0' x\necho\necho END {dir}",
        "0.2",
        "60",
    );
    let s = wait_checks(&d, 2);
    let out = s["output"].as_str().unwrap();
    assert!(out.len() <= 4096 + 16, "output kept: {} bytes", out.len());
    assert!(out.trim_end().ends_with(&format!("END {token}")), "{out:?}");
    assert_eq!(s["last_exit_status"], 0);
    assert_eq!(probe_status(port), 200);
    let rss = status_kb(d.pid(), "VmRSS");
    eprintln!("RSS after 2 x 100 MB of check output: {rss} kB");
    assert!(rss < 20_000, "RSS {rss} kB after 100 MB of check output");
    assert_clean_after_stopping_checks(&d, &token);
}

#[test]
fn check_that_exits_at_once_without_reading_or_writing() {
    // Closes its output and exits before psentinel reads anything.
    let (d, port, token) = check_daemon("exec >&- 2>&-\nexit 3", "0.05", "5");
    let s = wait_checks(&d, 20);
    assert_eq!(s["last_exit_status"], 3);
    assert_eq!(s["output"], "");
    assert_eq!(probe_status(port), 500);
    assert_clean_after_stopping_checks(&d, &token);
}

/// Descriptors of the daemon once no check is running (no check pipe open).
fn idle_fds(d: &Daemon) -> usize {
    let pid = d.pid();
    eventually("no check pipe open", DEADLINE, || {
        // Pipes the daemon shares with this test process (its stderr, anything inherited) are
        // not a check's; every other pipe is.
        let ours = fds("self");
        let f = fds(pid);
        f.iter()
            .all(|l| !l.starts_with("pipe:") || ours.contains(l))
            .then_some(f.len())
    })
}

#[test]
fn ten_thousand_check_runs_leak_no_descriptors_and_no_zombies() {
    const SERVICES: u64 = 4;
    const RUNS: u64 = 10_000;
    let ports: Vec<u16> = (0..SERVICES).map(|_| free_port()).collect();
    let cfg: String = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!("[fast{i}]\nport={p}\ncheck_script=/bin/true\ncheck_script_interval=0.001\n")
        })
        .collect();
    let d = Daemon::start(&cfg);
    let pid = d.pid();
    let total = |d: &Daemon| -> u64 {
        d.status_json()["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["checks_count"].as_u64().unwrap())
            .sum()
    };
    let set_checks = |cmd: &str| {
        for i in 0..SERVICES {
            d.ok(&[cmd, &format!("fast{i}")]);
        }
    };
    eventually("100 checks", DEADLINE, || (total(&d) >= 100).then_some(()));
    set_checks("disable_test");
    let fds0 = idle_fds(&d);
    set_checks("enable_test");
    let t0 = Instant::now();
    eventually(&format!("{RUNS} checks"), Duration::from_secs(300), || {
        let n = total(&d);
        (n >= RUNS).then_some(n)
    });
    eprintln!("{RUNS} check runs in {:?}", t0.elapsed());
    set_checks("disable_test");
    // Eventually: a control connection or a check's /dev/null may still be closing.
    let mut fds1 = 0;
    let same = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually("descriptors back to where they were", DEADLINE, || {
            fds1 = idle_fds(&d);
            (fds1 <= fds0).then_some(())
        })
    }));
    assert!(
        same.is_ok(),
        "{fds1} descriptors after {RUNS} checks, {fds0} before: {:?}",
        fds(pid)
    );
    eventually("no zombies", DEADLINE, || {
        zombies(pid).is_empty().then_some(())
    });
    for p in ports {
        assert_eq!(probe_status(p), 200);
    }
}
