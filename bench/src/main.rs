//! `psentinel-bench`: how psentinel's probe ports compare with the least a tokio server can do
//! (the floor, [`floor`]) and with nginx, on the same machine in the same run.
//!
//! ```text
//! make bench                                  # everything below, from the repository root
//! psentinel-bench [all|throughput|callgrind|footprint|scale]
//! psentinel-bench floor PORT                  # the floor server alone
//! ```
//!
//! Machines are noisy, so every number is reported next to its ratio to the floor measured in
//! the same run, and repetitions are interleaved (floor, psentinel, nginx, floor, ...) so that
//! drift hits all servers alike. Environment: `BENCH_SECS` (seconds per run, 2), `BENCH_REPS`
//! (repetitions, 3), `BENCH_CALLGRIND_PROBES` (1000), `PSENTINEL_BIN` (default
//! `target/release/psentinel` of the repository), `PSENTINEL_BEFORE` (another psentinel binary
//! to compare in the same run, e.g. before a change), `BENCH_ONLY` (comma-separated servers to
//! keep besides the floor), `BENCH_SCALE_SECS` (10) and `BENCH_SCALE_START_ONLY` (see
//! [`scale`]).

mod floor;
mod footprint;
mod load;
mod ports;
mod scale;
mod servers;

use load::Kind;
use servers::Server;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn psentinel_bin() -> PathBuf {
    std::env::var_os("PSENTINEL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/psentinel")
        })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map(String::as_str).unwrap_or("all");
    if what == "floor" {
        let port = args
            .get(1)
            .and_then(|p| p.parse().ok())
            .expect("floor PORT");
        if let Err(e) = floor::run(port) {
            eprintln!("floor: {e}");
            std::process::exit(1);
        }
        return;
    }
    let bin = psentinel_bin();
    assert!(
        bin.exists(),
        "{} missing: build it with `cargo build --release` (or set PSENTINEL_BIN)",
        bin.display()
    );
    machine();
    match what {
        "all" => {
            throughput(&bin);
            callgrind(&bin);
            footprint::run(&bin);
            scale::run(&refs(&scale_bins(&bin)));
        }
        "throughput" => throughput(&bin),
        "callgrind" => callgrind(&bin),
        "footprint" => footprint::run(&bin),
        "scale" => scale::run(&refs(&scale_bins(&bin))),
        other => {
            eprintln!(
                "unknown mode {other}: all, throughput, callgrind, footprint, scale, floor PORT"
            );
            std::process::exit(2);
        }
    }
}

/// psentinel, and the other build when `PSENTINEL_BEFORE` names one: side by side.
pub(crate) fn scale_bins(bin: &std::path::Path) -> Vec<(&'static str, PathBuf)> {
    let mut v = vec![("psentinel", bin.to_path_buf())];
    if let Some(b) = std::env::var_os("PSENTINEL_BEFORE") {
        v.push(("psentinel-before", PathBuf::from(b)));
    }
    v
}

fn refs<'a>(v: &'a [(&'static str, PathBuf)]) -> Vec<(&'static str, &'a std::path::Path)> {
    v.iter().map(|(n, p)| (*n, p.as_path())).collect()
}

fn machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|x| x.1.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!(
        "machine: {cores} cores, {cpu}, Linux {}, {date}",
        kernel.trim()
    );
    println!();
}

/// Accumulated over the repetitions of one (server, kind, concurrency).
#[derive(Default)]
struct Acc {
    probes: u64,
    errors: u64,
    first_error: Option<String>,
    secs: f64,
    cpu_us: u64,
    lat: Vec<Duration>,
}

impl Acc {
    fn rate(&self) -> f64 {
        self.probes as f64 / self.secs
    }
    fn pct(&mut self, p: usize) -> f64 {
        self.lat.sort_unstable();
        let i = (self.lat.len() * p / 100).min(self.lat.len().saturating_sub(1));
        self.lat.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
    }
    fn cpu_per_probe(&self) -> f64 {
        self.cpu_us as f64 / self.probes.max(1) as f64
    }
}

/// The servers compared, in report order; the floor first. `psentinel-1w` answers the
/// worker-thread question (one tokio worker instead of one per core); it is left out under
/// callgrind, which runs every thread on one core anyway.
fn names(callgrind: bool) -> Vec<&'static str> {
    let mut v = vec!["floor", "psentinel"];
    if std::env::var_os("PSENTINEL_BEFORE").is_some() {
        v.push("psentinel-before");
    }
    if !callgrind {
        v.push("psentinel-1w");
    }
    match servers::nginx_path() {
        Some(_) => v.push("nginx"),
        None => println!("nginx not installed (apt-get install nginx-light): not compared\n"),
    }
    // BENCH_ONLY=nginx,psentinel: a subset (the floor always stays: everything is a ratio to it).
    if let Ok(only) = std::env::var("BENCH_ONLY") {
        v.retain(|n| *n == "floor" || only.split(',').any(|o| o == *n));
    }
    v
}

fn start(name: &str, bin: &std::path::Path, prefix: &[String]) -> Server {
    match name {
        "floor" => servers::floor(prefix),
        "psentinel" => servers::psentinel(bin, name, &[], prefix),
        "psentinel-before" => {
            let before = PathBuf::from(std::env::var_os("PSENTINEL_BEFORE").unwrap());
            servers::psentinel(&before, name, &[], prefix)
        }
        "psentinel-1w" => servers::psentinel(bin, name, &[("TOKIO_WORKER_THREADS", "1")], prefix),
        "nginx" => servers::nginx(&servers::nginx_path().expect("nginx"), prefix),
        other => unreachable!("no server {other}"),
    }
}

fn throughput(bin: &std::path::Path) {
    let secs = Duration::from_secs(env_num("BENCH_SECS", 2));
    let reps = env_num("BENCH_REPS", 3) as usize;
    let servers: Vec<Server> = names(false).iter().map(|n| start(n, bin, &[])).collect();
    let kinds = [Kind::Options, Kind::Get];
    let concs = [1usize, 32];
    let mut acc: BTreeMap<(usize, usize, usize), Acc> = BTreeMap::new();
    eprintln!(
        "throughput: {} servers x {} kinds x {:?} concurrency x {reps} reps x {secs:?}",
        servers.len(),
        kinds.len(),
        concs
    );
    for rep in 0..reps {
        for (k, &kind) in kinds.iter().enumerate() {
            for (c, &conc) in concs.iter().enumerate() {
                // Rotate the order each repetition: no server always runs first or last.
                for i in 0..servers.len() {
                    let s = (i + rep) % servers.len();
                    let srv = &servers[s];
                    let cpu0 = servers::cpu_us(srv.pid());
                    let run = load::drive(srv.addr, kind, conc, secs);
                    let cpu1 = servers::cpu_us(srv.pid());
                    let a = acc.entry((k, c, s)).or_default();
                    a.probes += run.probes;
                    a.errors += run.errors;
                    if a.first_error.is_none() {
                        a.first_error = run.first_error;
                    }
                    a.secs += run.elapsed.as_secs_f64();
                    a.cpu_us += cpu1 - cpu0;
                    a.lat.extend(run.latencies);
                }
            }
        }
        eprintln!("  repetition {} of {reps} done", rep + 1);
    }
    println!("## Probe throughput and latency ({reps} x {secs:?} per cell, interleaved)\n");
    println!("| probe | conc | server | conns/s | x floor | p50 µs | x floor | p99 µs | x floor | CPU µs/probe | x floor | errors |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (k, kind) in kinds.iter().enumerate() {
        for (c, conc) in concs.iter().enumerate() {
            let mut floor = acc.remove(&(k, c, 0)).unwrap_or_default();
            let (fr, f50, f99, fcpu) = (
                floor.rate(),
                floor.pct(50),
                floor.pct(99),
                floor.cpu_per_probe(),
            );
            for (s, srv) in servers.iter().enumerate() {
                let mut owned;
                let a = if s == 0 {
                    &mut floor
                } else {
                    owned = acc.remove(&(k, c, s)).unwrap_or_default();
                    &mut owned
                };
                let (r, p50, p99, cpu) = (a.rate(), a.pct(50), a.pct(99), a.cpu_per_probe());
                println!(
                    "| {} | {conc} | {} | {r:.0} | {:.2} | {p50:.0} | {:.2} | {p99:.0} | {:.2} | {cpu:.1} | {:.2} | {} |",
                    kind.name(),
                    srv.name,
                    r / fr,
                    p50 / f50,
                    p99 / f99,
                    cpu / fcpu,
                    a.errors
                );
                if let Some(e) = &a.first_error {
                    eprintln!("  {}: first error: {e}", srv.name);
                }
            }
        }
    }
    println!();
    for s in servers {
        s.stop();
    }
}

/// User-space instructions per probe under callgrind: deterministic where wall time is not.
/// Each server runs twice, answering N1 and N2 serial probes; the difference of the totals
/// divided by N2 - N1 cancels start-up and shutdown.
fn callgrind(bin: &std::path::Path) {
    if std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("valgrind not installed (apt-get install valgrind): no instruction counts\n");
        return;
    }
    let n2 = env_num("BENCH_CALLGRIND_PROBES", 1000);
    let n1 = n2 / 5;
    let dir = servers::Scratch::new("callgrind");
    let mut per_probe: Vec<(String, f64)> = Vec::new();
    eprintln!("callgrind: each server twice, {n1} and {n2} probes");
    for name in names(true) {
        let mut totals = Vec::new();
        for n in [n1, n2] {
            let out = dir.0.join(format!("{name}.{n}"));
            std::fs::create_dir_all(&out).expect("callgrind dir");
            let srv = start(name, bin, &servers::callgrind(&out.join("cg.out")));
            for _ in 0..n {
                load::probe(srv.addr, Kind::Options).expect("probe under callgrind");
            }
            let log = srv.stop();
            let total = callgrind_total(&out);
            if total.is_none() {
                eprintln!("{log}");
            }
            totals.push(total);
        }
        match (totals[0], totals[1]) {
            (Some(t1), Some(t2)) => {
                let ir = (t2 as f64 - t1 as f64) / (n2 - n1) as f64;
                eprintln!("  {name}: {ir:.0} instructions per probe");
                per_probe.push((name.to_string(), ir));
            }
            _ => eprintln!("  {name}: no callgrind totals (see above), left out"),
        }
    }
    println!("## User-space instructions per probe (callgrind, OPTIONS, serial)\n");
    println!("| server | instructions/probe | x floor |");
    println!("|---|---|---|");
    let floor = per_probe.first().map_or(f64::NAN, |x| x.1);
    for (name, ir) in &per_probe {
        println!("| {name} | {ir:.0} | {:.2} |", ir / floor);
    }
    println!();
}

/// Sum of the totals of every callgrind file in `dir` (one per process).
fn callgrind_total(dir: &std::path::Path) -> Option<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        total += text
            .lines()
            .find_map(|l| {
                l.strip_prefix("summary:")
                    .or_else(|| l.strip_prefix("totals:"))
            })
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
    }
    if total == 0 {
        eprintln!("  no callgrind totals in {}", dir.display());
        return None;
    }
    Some(total)
}
