//! Scale: many services, many checks. Measured, never asserted.
//!
//! - 1,000 services each with a check: from the daemon's spawn to the moment every port has
//!   answered (probers start at once, one thread per 100 ports, each port retried until it
//!   answers), and to READY=1; and the daemon's own CPU (its children, the checks, excluded)
//!   in its first [`FIRST_SECS`] seconds, where the first thousand results come in: on a busy
//!   machine the times move with everything else, this much less.
//! - 10,000 services (open-files limit raised by the daemon itself): start, RSS per service,
//!   `psentinel -c status --json` of all of them.
//! - 500 services checked every second (500 check runs per second): probe latency on one of
//!   their ports meanwhile, and the daemon's own CPU (its children, the checks, excluded).

use crate::footprint::{self, status_field};
use crate::load::{self, Kind};
use crate::servers;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `/bin/true`, every second (the line goes into each service's section).
const TRUE_EVERY_SECOND: &str = "/bin/true\ncheck_script_interval=1";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// How long after its spawn the daemon's CPU is read (the default interval is 10 s: one run
/// of each check by then).
const FIRST_SECS: u64 = 3;

/// Spawn to READY=1 and to every port answered, with 1000 services each checked by `check`,
/// and the daemon's own CPU in its first [`FIRST_SECS`] seconds.
fn all_ports_answer(bin: &Path, check: Option<&str>) -> (Duration, Duration, Duration) {
    let last = Arc::new(Mutex::new(None::<Duration>));
    let t0 = Instant::now();
    let seen = last.clone();
    let d = footprint::start_then(bin, 1000, check, &[], move |ports| {
        let threads: Vec<_> = ports
            .chunks(100)
            .map(|chunk| {
                let chunk = chunk.to_vec();
                std::thread::spawn(move || {
                    for p in chunk {
                        let end = Instant::now() + Duration::from_secs(30);
                        while load::probe_any(addr(p), Kind::Options).is_err() {
                            assert!(Instant::now() < end, "port {p} never answered");
                            std::thread::sleep(Duration::from_millis(2));
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("prober thread");
        }
        *seen.lock().unwrap() = Some(t0.elapsed());
    });
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(all) = *last.lock().unwrap() {
            std::thread::sleep(
                (t0 + Duration::from_secs(FIRST_SECS)).saturating_duration_since(Instant::now()),
            );
            let cpu = Duration::from_micros(servers::cpu_us(d.child.id()));
            return (d.ready_after, all, cpu);
        }
        assert!(Instant::now() < end, "not every port answered within 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn status_json_ms(bin: &Path, cfg: &Path) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let out = Command::new(bin)
            .args(["-c", "status", "--json", "-f"])
            .arg(cfg)
            .output()
            .expect("psentinel -c status --json");
        assert!(out.status.success(), "status --json failed");
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    best
}

pub fn run(bins: &[(&str, &Path)]) {
    let secs = crate::env_num("BENCH_SCALE_SECS", 10);
    println!("## Scale\n");
    println!(
        "| measure | {} |",
        bins.iter().map(|b| b.0).collect::<Vec<_>>().join(" | ")
    );
    println!("|---|{}", "---|".repeat(bins.len()));
    let row = |label: &str, vals: Vec<String>| println!("| {label} | {} |", vals.join(" | "));

    for (label, check) in [("no check", None), ("`/bin/true` each", Some("/bin/true"))] {
        eprintln!("scale: 1000 services, {label}, every port answered");
        let (mut ready, mut all, mut cpu) = (vec![], vec![], vec![]);
        for (_, bin) in bins {
            let (r, a, c) = all_ports_answer(bin, check);
            ready.push(format!("{} ms", r.as_millis()));
            all.push(format!("{} ms", a.as_millis()));
            cpu.push(format!("{} ms", c.as_millis()));
        }
        row(&format!("1000 services, {label}: spawn to READY=1"), ready);
        row(
            &format!("1000 services, {label}: spawn to every port answered"),
            all,
        );
        row(
            &format!(
                "1000 services, {label}: the daemon's own CPU in its first {FIRST_SECS} s (checks excluded)"
            ),
            cpu,
        );
    }
    if std::env::var_os("BENCH_SCALE_START_ONLY").is_some() {
        return;
    }

    eprintln!("scale: 10000 services");
    let (mut ready, mut rss, mut status) = (vec![], vec![], vec![]);
    for (_, bin) in bins {
        let d = footprint::start(bin, 10_000, None, &[]);
        ready.push(format!("{} ms", d.ready_after.as_millis()));
        let kb = status_field(d.child.id(), "VmRSS");
        rss.push(format!(
            "{:.1} MB = {:.1} KB/service",
            kb as f64 / 1024.0,
            kb as f64 / 10_000.0
        ));
        status.push(format!("{:.0} ms", status_json_ms(bin, &d.cfg)));
    }
    row("10000 services: spawn to READY=1", ready);
    row("10000 services: RSS", rss);
    row(
        "10000 services: `psentinel -c status --json` (whole command, best of 3)",
        status,
    );

    eprintln!("scale: 500 services checked every second, {secs} s");
    let (mut p50, mut p99, mut cpu) = (vec![], vec![], vec![]);
    for (_, bin) in bins {
        let d = footprint::start(bin, 500, Some(TRUE_EVERY_SECOND), &[]);
        // Let the first runs spread out before measuring.
        std::thread::sleep(Duration::from_secs(2));
        let pid = d.child.id();
        let c0 = servers::cpu_us(pid);
        let mut run = load::drive(
            addr(d.ports[0]),
            Kind::Options,
            1,
            Duration::from_secs(secs),
        );
        let c1 = servers::cpu_us(pid);
        run.latencies.sort_unstable();
        let pct = |p: usize| {
            let i = (run.latencies.len() * p / 100).min(run.latencies.len().saturating_sub(1));
            run.latencies
                .get(i)
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
        };
        p50.push(format!("{:.0} µs", pct(50)));
        p99.push(format!("{:.0} µs", pct(99)));
        cpu.push(format!(
            "{:.0} ms/s ({:.0} µs per check run)",
            (c1 - c0) as f64 / 1e3 / secs as f64,
            (c1 - c0) as f64 / (500 * secs) as f64
        ));
    }
    row("500 checks/s: probe p50 (serial probes)", p50);
    row("500 checks/s: probe p99", p99);
    row(
        "500 checks/s: the daemon's own CPU (checks excluded), per second",
        cpu,
    );
    println!();
}
