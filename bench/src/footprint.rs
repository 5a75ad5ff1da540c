//! Footprint: memory with 100 services, wake-ups at idle, start-up time with 1000 services,
//! the open-files limit and the listen backlog the daemon ends up with.

use crate::load::{self, Kind};
use crate::servers::{self, Scratch};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    pub child: Child,
    pub ports: Vec<u16>,
    pub ready_after: Duration,
    pub cfg: std::path::PathBuf,
    _scratch: Scratch,
    _reserved: crate::ports::Reserved,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 5,000 connections that never send a byte, on one port: the daemon's RSS growth per
/// connection once it holds a descriptor for each (before its 5 s read deadline).
fn idle_connections(bin: &Path) -> f64 {
    const IDLE: usize = 5_000;
    let lim = libc::rlimit {
        rlim_cur: 16_384,
        rlim_max: 16_384,
    };
    // SAFETY: setrlimit reads the struct we pass; raising our own limit (we are root here, or
    // the hard limit allows it) so that 5,000 client sockets fit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    eprintln!("footprint: {IDLE} idle connections on {}", bin.display());
    let d = start(bin, 1, None, &[]);
    probe_all(&d.ports);
    let pid = d.child.id();
    let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |r| r.count());
    std::thread::sleep(Duration::from_millis(100));
    let (fd0, rss0) = (fds(), status_field(pid, "VmRSS"));
    let conns: Vec<_> = (0..IDLE)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", d.ports[0])).expect("connect"))
        .collect();
    let end = Instant::now() + Duration::from_secs(4);
    while fds() < fd0 + IDLE - 8 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let held = fds().saturating_sub(fd0).max(1);
    let rss1 = status_field(pid, "VmRSS");
    drop(conns);
    (rss1.saturating_sub(rss0) * 1024) as f64 / held as f64
}

/// Starts psentinel with `n` services and waits for READY=1 on a notify socket of our own.
pub fn start(bin: &Path, n: usize, check: Option<&str>, env: &[(&str, &str)]) -> Daemon {
    start_then(bin, n, check, env, |_| {})
}

/// Like [`start`]; `meanwhile` runs (with the ports) as soon as the daemon is spawned, on a
/// thread of its own, while we wait for READY=1.
pub fn start_then(
    bin: &Path,
    n: usize,
    check: Option<&str>,
    env: &[(&str, &str)],
    meanwhile: impl FnOnce(Vec<u16>) + Send + 'static,
) -> Daemon {
    let scratch = Scratch::new(&format!("fp{n}"));
    let reserved = crate::ports::reserve(n);
    let ports = reserved.ports.clone();
    let cfg = servers::psentinel_config(&scratch.0, &ports, check);
    let notify_path = scratch.0.join("notify");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let t0 = Instant::now();
    let mut cmd = Command::new(bin);
    cmd.args(["-d", "--foreground", "-f"])
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &notify_path)
        .env_remove("LISTEN_FDS")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Start it with the usual soft limit of 1024 open files, to see that it raises its own.
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_max > 1024 {
                lim.rlim_cur = 1024;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("start psentinel");
    let ports2 = ports.clone();
    std::thread::spawn(move || meanwhile(ports2));
    let mut buf = [0u8; 4096];
    loop {
        let len = notify.recv(&mut buf).expect("READY=1 within 30 s");
        if String::from_utf8_lossy(&buf[..len])
            .lines()
            .any(|l| l == "READY=1")
        {
            break;
        }
    }
    Daemon {
        child,
        ports,
        ready_after: t0.elapsed(),
        cfg,
        _scratch: scratch,
        _reserved: reserved,
    }
}

pub fn status_field(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| {
            v.trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Context switches of all threads: every wake-up of the process counts here.
fn switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .map(|t| {
            let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            s.lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

fn probe_all(ports: &[u16]) {
    for p in ports {
        load::probe_any(SocketAddr::from(([127, 0, 0, 1], *p)), Kind::Options)
            .unwrap_or_else(|e| panic!("port {p}: {e}"));
    }
}

fn nofile(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| {
            let f: Vec<_> = l.split_whitespace().collect();
            format!("soft {} / hard {}", f[3], f[4])
        })
        .unwrap_or_default()
}

/// Send-Q of a listening socket in `ss -ltn` is its backlog.
fn backlog(port: u16) -> String {
    Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "? (ss missing)".into())
}

pub fn run(bin: &Path) {
    let idle = Duration::from_secs(crate::env_num("BENCH_IDLE_SECS", 10));
    println!("## Footprint\n");
    println!("| measure | value |");
    println!("|---|---|");
    eprintln!("footprint: 100 services, idle {idle:?} without and with checks");
    for (label, check, env) in [
        ("100 services, no checks", None, vec![]),
        (
            "100 services, no checks, 1 worker",
            None,
            vec![("TOKIO_WORKER_THREADS", "1")],
        ),
        (
            "100 services, `/bin/true` every 10 s",
            Some("/bin/true"),
            vec![],
        ),
    ] {
        let d = start(bin, 100, check, &env);
        probe_all(&d.ports);
        let pid = d.child.id();
        let s0 = switches(pid);
        let c0 = servers::cpu_us(pid);
        std::thread::sleep(idle);
        let (s1, c1) = (switches(pid), servers::cpu_us(pid));
        println!(
            "| {label}: RSS after a probe on every port | {:.1} MB |",
            status_field(pid, "VmRSS") as f64 / 1024.0
        );
        println!("| {label}: threads | {} |", status_field(pid, "Threads"));
        println!(
            "| {label}: wake-ups (context switches) in {}s idle | {} |",
            idle.as_secs(),
            s1 - s0
        );
        println!(
            "| {label}: CPU in {}s idle | {} ms |",
            idle.as_secs(),
            (c1 - c0) / 1000
        );
        if check.is_none() && env.is_empty() {
            println!(
                "| open files limit (started with soft 1024) | {} |",
                nofile(pid)
            );
            println!(
                "| listen backlog of a probe port | {} |",
                backlog(d.ports[0])
            );
        }
    }
    for (name, b) in crate::scale_bins(bin) {
        for run in 1..=2 {
            let each = idle_connections(&b);
            println!("| {name}: 5000 idle connections (run {run}) | {each:.0} B each |");
        }
    }
    eprintln!("footprint: 1000 services");
    let t0 = Instant::now();
    let d = start(bin, 1000, None, &[]);
    probe_all(&d.ports);
    let all = t0.elapsed();
    println!(
        "| 1000 services: start to READY=1 | {} ms |",
        d.ready_after.as_millis()
    );
    println!(
        "| 1000 services: start to every port answered (probed one by one) | {} ms |",
        all.as_millis()
    );
    println!(
        "| 1000 services: RSS | {:.1} MB |",
        status_field(d.child.id(), "VmRSS") as f64 / 1024.0
    );
    println!();
}
