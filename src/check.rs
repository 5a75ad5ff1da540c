//! Check runners: one task per service runs its check script on an interval.
//!
//! Why it looks like this:
//! - The next run starts `interval` after the previous one *ended*, so runs of one service never
//!   overlap and a slow check cannot pile up copies of itself.
//! - The script runs without a shell, in a process group of its own, with stdout and stderr on
//!   one pipe. On timeout the whole group gets SIGTERM, then SIGKILL 2 s later; after every run
//!   the group gets SIGKILL, so children a script left behind die with it.
//! - The daemon is a child subreaper ([`become_subreaper`]): a grandchild that escaped the group
//!   (setsid, double fork) is re-parented to us instead of init, and [`sweep_orphans`] kills and
//!   reaps it: the [`reaper`] task sweeps after check runs end and on SIGCHLD, once for all
//!   that ended together (a sweep reads the kernel's list of our children per thread; a
//!   thousand checks ending at start-up swept a thousand times). Nothing a script does
//!   leaves zombies or strays. Which pids are checks of ours is the daemon's own record
//!   ([`Processes`]), not a global: the process's children are one set,
//!   so only one daemon per process sweeps them (tests run several engines in one process,
//!   without sweeping).
//! - Only the last [`OUTPUT_TAIL`] bytes of output are kept, and the first line up to
//!   [`FIRST_LINE_MAX`] bytes (where a monitoring plugin says what it found); the rest is read
//!   and dropped, so a script that prints megabytes costs CPU, never memory.

use crate::config::ServiceConfig;
use crate::model::{micros, CheckResult, Exit};
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Bytes of combined stdout/stderr kept per run.
pub const OUTPUT_TAIL: usize = 4096;
/// Bytes of the first line kept besides the tail (a plugin's summary and perfdata).
pub const FIRST_LINE_MAX: usize = 1024;
/// Between SIGTERM and SIGKILL to a timed-out check's process group.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long output is still read after the check ended and its group was killed; an escaped
/// process holding the pipe open must not hold the runner.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);

/// The check processes one daemon spawned, which tokio reaps and [`sweep_orphans`] leaves
/// alone, and whether that daemon sweeps orphans at all. Cheap to clone.
#[derive(Clone)]
pub struct Processes(Arc<Tracked>);

struct Tracked {
    pids: Mutex<BTreeSet<i32>>,
    sweep: bool,
    /// One check process starts at a time, on a blocking-pool thread: see [`start`].
    starting: tokio::sync::Semaphore,
    /// A run ended: the [`reaper`] sweeps for what it left behind.
    ended: tokio::sync::Notify,
}

impl Processes {
    /// `sweep`: kill and reap the children of this process that no check tracks. Only for the
    /// one daemon of a process, its subreaper; a second one would take the first one's checks
    /// for orphans.
    pub fn new(sweep: bool) -> Processes {
        Processes(Arc::new(Tracked {
            pids: Mutex::new(BTreeSet::new()),
            sweep,
            starting: tokio::sync::Semaphore::new(1),
            ended: tokio::sync::Notify::new(),
        }))
    }

    fn pids(&self) -> std::sync::MutexGuard<'_, BTreeSet<i32>> {
        // A panic while holding this lock leaves a set of pids, still usable.
        self.0.pids.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A finished run, sent to the engine.
#[derive(Debug)]
pub struct CheckDone {
    pub service: String,
    pub runner: u64,
    pub result: CheckResult,
    /// The engine held this result back for a moment (a check killed by SIGTERM) and now
    /// takes it as it is.
    pub settled: bool,
}

pub enum RunnerCmd {
    /// Run now (after the current run, if one is going) and send the result here too.
    RunNow(oneshot::Sender<CheckResult>),
    /// `disable_test` / `enable_test`: stop or restart the interval.
    SetStopped(bool),
    /// Run again after this long at the latest (sooner than the interval): an application
    /// that has just started is checked until it passes.
    Soon(Duration),
}

/// The engine's grip on a runner: commands in, and the task aborted (killing any running
/// check's process group) when the handle is dropped.
pub struct RunnerHandle {
    pub id: u64,
    service: String,
    tx: mpsc::UnboundedSender<RunnerCmd>,
    task: JoinHandle<()>,
}

impl RunnerHandle {
    pub fn send(&self, cmd: RunnerCmd) {
        // The runner only ends when this handle is dropped, so a send cannot fail while we hold
        // the handle; if it ever did, the engine notices the missing result, nothing else.
        if self.tx.send(cmd).is_err() {
            tracing::error!(
                psentinel_service = %self.service,
                runner = self.id,
                "{}: check runner is gone",
                self.service
            );
        }
    }
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// When the first run of the `rank`-th of the checks started together (at start-up, or by one
/// reload) comes: `rank` milliseconds after, a thousand a second, the thousand-and-first at 0
/// again. A thousand processes started in the same instant took the CPU the probe ports need
/// (1,000 services with `/bin/true`: the last port answered 149-166 ms after start, against
/// 119 ms spread; docs/performance.md), and HAProxy spreads its own first checks alike.
/// A lone check, or the first of them, runs at once.
pub fn first_run_after(rank: usize) -> Duration {
    Duration::from_millis((rank % 1000) as u64)
}

/// A check runner: runs the check `first_after` from now, then every interval.
pub fn spawn_runner(
    svc: &ServiceConfig,
    argv: Vec<String>,
    id: u64,
    stopped: bool,
    first_after: Duration,
    done: mpsc::UnboundedSender<CheckDone>,
    procs: Processes,
) -> RunnerHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let job = Job {
        service: svc.name.clone(),
        argv,
        interval: svc.interval,
        timeout: svc.timeout,
        procs,
    };
    let task = tokio::spawn(runner_loop(job, id, stopped, first_after, rx, done));
    RunnerHandle {
        id,
        service: svc.name.clone(),
        tx,
        task,
    }
}

struct Job {
    service: String,
    argv: Vec<String>,
    interval: Duration,
    timeout: Duration,
    procs: Processes,
}

async fn runner_loop(
    job: Job,
    id: u64,
    mut stopped: bool,
    first_after: Duration,
    mut rx: mpsc::UnboundedReceiver<RunnerCmd>,
    done: mpsc::UnboundedSender<CheckDone>,
) {
    let mut due = !stopped && first_after.is_zero();
    let mut waiters: Vec<oneshot::Sender<CheckResult>> = Vec::new();
    let mut next = tokio::time::Instant::now() + first_after;
    loop {
        if due || !waiters.is_empty() {
            let result = run_once(&job.service, &job.argv, job.timeout, &job.procs).await;
            // The engine first: a `test` client that asks for `status` as soon as it has its
            // answer finds the result recorded (the engine is quicker than a client's round
            // trip).
            let msg = CheckDone {
                service: job.service.clone(),
                runner: id,
                result: result.clone(),
                settled: false,
            };
            if done.send(msg).is_err() {
                return; // the engine is shutting down
            }
            for w in waiters.drain(..) {
                // A `test` client that went away does not care; nothing to do.
                let _ = w.send(result.clone());
            }
            due = false;
            next = tokio::time::Instant::now() + job.interval;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next), if !stopped => due = true,
            cmd = rx.recv() => match cmd {
                None => return,
                Some(RunnerCmd::RunNow(w)) => waiters.push(w),
                Some(RunnerCmd::SetStopped(s)) => {
                    due = stopped && !s; // restarting the check runs it at once
                    stopped = s;
                }
                Some(RunnerCmd::Soon(d)) => next = next.min(tokio::time::Instant::now() + d),
            },
        }
    }
}

/// Kills the process group when dropped: covers the runner being aborted mid-check (reload,
/// shutdown) as well as the normal end of a run.
struct GroupGuard(Pid, Processes);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        // ESRCH (group already empty) is the usual, fine outcome.
        let _ = killpg(self.0, Signal::SIGKILL);
        self.1.pids().remove(&self.0.as_raw());
    }
}

/// Runs one check to completion (or timeout) and reports how it ended.
pub async fn run_once(
    service: &str,
    argv: &[String],
    timeout: Duration,
    procs: &Processes,
) -> CheckResult {
    let started = SystemTime::now();
    let t0 = Instant::now();
    let (exit, (output, first_line)) = match execute(service, argv, timeout, procs).await {
        Ok(r) => r,
        Err(why) => (Exit::CannotStart(why), Default::default()),
    };
    let result = CheckResult {
        exit,
        time: micros(started),
        duration_us: t0.elapsed().as_micros() as u64,
        output,
        first_line,
    };
    // Wakes the reaper, whose sweep comes after this (one sweep for runs ending together).
    procs.0.ended.notify_one();
    result
}

/// Starts `cmd` off the runtime's workers, one process at a time per daemon.
///
/// Starting a process costs the daemon hundreds of microseconds of CPU (the kernel copies the
/// descriptor table, one per port, and exec's page faults), in a call that does not yield. On a
/// worker thread a thousand checks starting together held every worker for a second or more,
/// and the accept loops waiting behind them left ports unanswered that long. On one blocking
/// thread at a time they take at most one core, and the workers keep answering probes.
async fn start(
    mut cmd: tokio::process::Command,
    procs: &Processes,
) -> std::io::Result<tokio::process::Child> {
    // Closed never: the semaphore lives as long as `procs`.
    let _turn = procs.0.starting.acquire().await;
    let procs = procs.clone();
    let started = tokio::task::spawn_blocking(move || {
        // Held across fork+exec so that sweep_orphans never sees an untracked child of ours.
        let mut tracked = procs.pids();
        let child = cmd.spawn()?;
        tracked.insert(child.id().map_or(0, |p| p as i32));
        // Our copies of the pipe's write end close here: EOF comes when the group closes theirs.
        drop(cmd);
        Ok(child)
    })
    .await;
    started.unwrap_or_else(|e| Err(std::io::Error::other(format!("starting the check: {e}"))))
}

async fn execute(
    service: &str,
    argv: &[String],
    timeout: Duration,
    procs: &Processes,
) -> Result<(Exit, (String, String)), String> {
    let (program, args) = argv.split_first().ok_or("empty command line")?;
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot create a pipe: {e}"))?;
    let wr2 = wr
        .try_clone()
        .map_err(|e| format!("cannot dup a pipe: {e}"))?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("PSENTINEL_SERVICE", service)
        .stdin(Stdio::null())
        .stdout(Stdio::from(wr))
        .stderr(Stdio::from(wr2))
        .process_group(0)
        .kill_on_drop(true);
    let mut child = start(cmd, procs)
        .await
        .map_err(|e| format!("{program}: {e}"))?;
    let pid = Pid::from_raw(child.id().map_or(0, |p| p as i32));
    let _group = GroupGuard(pid, procs.clone());
    let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(rd)
        .map_err(|e| format!("cannot read the pipe: {e}"))?;
    let mut tail = Tail::default();
    let mut buf = vec![0u8; 8192];
    let mut eof = false;
    let mut timed_out = false;
    let mut deadline = tokio::time::Instant::now() + timeout;
    let status = loop {
        tokio::select! {
            n = pipe.read(&mut buf), if !eof => match n {
                Ok(0) | Err(_) => eof = true,
                Ok(n) => tail.push(&buf[..n]),
            },
            st = child.wait() => break st,
            _ = tokio::time::sleep_until(deadline) => {
                let sig = if timed_out { Signal::SIGKILL } else { Signal::SIGTERM };
                tracing::debug!(
                    psentinel_service = service,
                    "{service}: check timed out, sending {sig} to its process group"
                );
                let _ = killpg(pid, sig);
                timed_out = true;
                deadline += KILL_GRACE;
            }
        }
    };
    // Whatever the script left in its group dies now; then read what is left in the pipe.
    let _ = killpg(pid, Signal::SIGKILL);
    let drain_until = tokio::time::Instant::now() + DRAIN_AFTER_EXIT;
    while !eof {
        tokio::select! {
            n = pipe.read(&mut buf) => match n {
                Ok(0) | Err(_) => eof = true,
                Ok(n) => tail.push(&buf[..n]),
            },
            _ = tokio::time::sleep_until(drain_until) => break,
        }
    }
    let exit = match status {
        _ if timed_out => Exit::TimedOut,
        Ok(st) => match (st.code(), st.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(s)) => Exit::Signal(s),
            (None, None) => Exit::CannotStart(format!("unknown wait status {st:?}")),
        },
        Err(e) => Exit::CannotStart(format!("waiting for {program}: {e}")),
    };
    Ok((exit, tail.into_strings()))
}

/// Keeps the last [`OUTPUT_TAIL`] bytes pushed into it, and the first line.
#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
    dropped: bool,
    first: Vec<u8>,
    /// The first line ended (or reached [`FIRST_LINE_MAX`]).
    first_done: bool,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        if !self.first_done {
            let room = FIRST_LINE_MAX - self.first.len();
            let line = match data.iter().position(|b| *b == b'\n') {
                Some(nl) => {
                    self.first_done = true;
                    &data[..nl]
                }
                None => data,
            };
            self.first.extend_from_slice(&line[..line.len().min(room)]);
            if self.first.len() >= FIRST_LINE_MAX {
                self.first_done = true;
            }
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() > 2 * OUTPUT_TAIL {
            let cut = self.buf.len() - OUTPUT_TAIL;
            self.buf.drain(..cut);
            self.dropped = true;
        }
    }

    /// The output (its tail) and its first line.
    fn into_strings(mut self) -> (String, String) {
        if self.buf.len() > OUTPUT_TAIL {
            let cut = self.buf.len() - OUTPUT_TAIL;
            self.buf.drain(..cut);
            self.dropped = true;
        }
        let text = String::from_utf8_lossy(&self.buf);
        let first = String::from_utf8_lossy(&self.first).into_owned();
        if self.dropped {
            (format!("[...] {text}"), first)
        } else {
            (text.into_owned(), first)
        }
    }
}

/// Makes this process the reaper of its orphaned descendants (see module doc).
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// Kills and reaps children of ours that no check runner tracks: escaped grandchildren of check
/// scripts, re-parented to us because we are a subreaper. Cheap: reads the kernel's list of our
/// children, not all of /proc.
pub fn sweep_orphans(procs: &Processes) {
    if !procs.0.sweep {
        return;
    }
    let me = std::process::id();
    // Locked before listing: a check reaped and untracked between the two steps could
    // otherwise look like an orphan (and its pid be reused).
    let tracked = procs.pids();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{me}/task")) else {
        return;
    };
    let mut children = Vec::new();
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            children.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    for pid in children.into_iter().filter(|p| !tracked.contains(p)) {
        let pid = Pid::from_raw(pid);
        tracing::debug!(
            pid = pid.as_raw(),
            "killing and reaping a process a check left behind"
        );
        let _ = kill(pid, Signal::SIGKILL);
        // Not blocking: a process that has not died yet is reaped on its SIGCHLD.
        let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
    }
}

/// How long the reaper lets run ends and SIGCHLDs gather before it sweeps again: a sweep
/// per batch, not per run. A process a check left behind lives at most this much longer.
const SWEEP_GATHER: Duration = Duration::from_millis(10);

/// Sweeps after check runs end and on every SIGCHLD (orphans that die later are reaped too).
/// Call before the first check starts: a SIGCHLD that arrives before the listener exists is
/// lost to it.
pub fn reaper(
    procs: Processes,
    shutdown: tokio_util::sync::CancellationToken,
) -> impl std::future::Future<Output = ()> {
    let sig = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child());
    async move {
        let mut sig = match sig {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(
                    "cannot listen for SIGCHLD ({e}); orphans of check scripts are reaped after checks only"
                );
                None
            }
        };
        loop {
            sweep_orphans(&procs);
            let signalled = async {
                match sig.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = procs.0.ended.notified() => {}
                s = signalled => if s.is_none() { return },
            }
            // What ends meanwhile is covered by the sweep after this wait.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(SWEEP_GATHER) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn exit_code_and_output() {
        let r = run_once(
            "t",
            &argv(&["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(5),
            &Processes::new(false),
        )
        .await;
        assert_eq!(r.exit, Exit::Code(3));
        assert!(
            r.output.contains("out") && r.output.contains("err"),
            "{:?}",
            r.output
        );
    }

    #[tokio::test]
    async fn missing_program_cannot_start() {
        let r = run_once(
            "t",
            &argv(&["/nonexistent/check"]),
            Duration::from_secs(5),
            &Processes::new(false),
        )
        .await;
        match r.exit {
            Exit::CannotStart(why) => assert!(why.contains("/nonexistent/check"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn timeout_kills_the_group_even_if_term_is_ignored() {
        let r = run_once(
            "t",
            &argv(&["/bin/sh", "-c", "trap '' TERM; sleep 30 & sleep 30; wait"]),
            Duration::from_millis(200),
            &Processes::new(false),
        )
        .await;
        assert_eq!(r.exit, Exit::TimedOut);
        assert!(r.duration_us < 10_000_000, "{}", r.duration_us);
    }

    #[tokio::test]
    async fn output_is_capped_to_the_tail() {
        let r = run_once(
            "t",
            &argv(&[
                "/bin/sh",
                "-c",
                "head -c 1000000 /dev/zero | tr '\\0' x; echo END",
            ]),
            Duration::from_secs(10),
            &Processes::new(false),
        )
        .await;
        assert!(r.output.len() <= OUTPUT_TAIL + 10, "{}", r.output.len());
        assert!(r.output.ends_with("END\n"));
    }

    /// Checks started together: the first runs right away, the next ones their rank in
    /// milliseconds later (a lower bound only: a run never comes early).
    #[tokio::test]
    async fn checks_started_together_first_run_a_millisecond_apart() {
        assert_eq!(first_run_after(0), Duration::ZERO);
        assert_eq!(first_run_after(250), Duration::from_millis(250));
        assert_eq!(first_run_after(1000), Duration::ZERO);
        assert_eq!(first_run_after(1999), Duration::from_millis(999));

        let cfg = crate::config::Config::parse(
            "[a]\nport=1\ncheck_script=/bin/true\n",
            std::path::Path::new("t.cfg"),
        )
        .unwrap();
        let svc = cfg.services.values().next().unwrap();
        let (done, mut results) = mpsc::unbounded_channel();
        let t0 = SystemTime::now();
        let procs = Processes::new(false);
        let _first = spawn_runner(
            svc,
            argv(&["/bin/true"]),
            1,
            false,
            first_run_after(0),
            done.clone(),
            procs.clone(),
        );
        let _later = spawn_runner(
            svc,
            argv(&["/bin/true"]),
            2,
            false,
            first_run_after(300),
            done,
            procs,
        );
        let mut started = std::collections::BTreeMap::new();
        while started.len() < 2 {
            let d = results.recv().await.unwrap();
            started.insert(d.runner, d.result.time - micros(t0));
        }
        assert!(started[&2] >= 300_000, "started {} µs after", started[&2]);
        assert!(started[&1] < started[&2], "{started:?}");
    }

    #[test]
    fn tail_keeps_last_bytes() {
        let mut t = Tail::default();
        for _ in 0..10 {
            t.push(&[b'a'; 1000]);
        }
        t.push(b"zz");
        let (s, first) = t.into_strings();
        assert!(s.starts_with("[...] ") && s.ends_with("zz"));
        assert_eq!(s.len(), OUTPUT_TAIL + 6);
        assert_eq!(
            first.len(),
            FIRST_LINE_MAX,
            "a first line without end is bounded"
        );
    }

    #[test]
    fn first_line_survives_a_flood_and_binary() {
        let mut t = Tail::default();
        t.push(b"DISK OK");
        t.push(b" - free | a=1\n");
        for _ in 0..1000 {
            t.push(&[0xff, 0, b'\n', 0x80]);
        }
        let (out, first) = t.into_strings();
        assert_eq!(first, "DISK OK - free | a=1");
        assert!(out.len() <= OUTPUT_TAIL * 3 + 6, "{}", out.len());
    }

    #[tokio::test]
    async fn megabytes_of_binary_output_still_get_a_verdict() {
        let r = run_once(
            "t",
            &argv(&[
                "/bin/sh",
                "-c",
                "echo 'PROCS WARNING | p=5'; head -c 8000000 /dev/urandom; exit 1",
            ]),
            Duration::from_secs(20),
            &Processes::new(false),
        )
        .await;
        assert_eq!(r.exit, Exit::Code(1));
        assert_eq!(r.first_line, "PROCS WARNING | p=5");
        assert!(r.output.len() <= OUTPUT_TAIL * 3 + 6, "{}", r.output.len());
    }
}
