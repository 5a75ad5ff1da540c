//! The daemon's end of the control socket.
//!
//! The socket file is created under a temporary name, given its mode (0666: anyone may read
//! state; changes are authorised per request from the peer's credentials, SO_PEERCRED), then
//! renamed into place, so no client ever sees it with the wrong permissions. A socket file
//! left by a crashed daemon is replaced; one that a live daemon answers on is not.
//!
//! Every accepted connection is admitted by [`super::admit`] first (a cap per uid, eviction
//! of readers), so whoever may change state always gets a connection and an answer.

use super::admit::{self, Admission, Full, Slot};
use super::proto::{self, Code, Command, MAX_LINE, REQUEST_DEADLINE};
use super::words;
use crate::engine::{CheckRun, EngineError, Handle, Outcome};
use crate::status;
use crate::view::Snapshot;
use crate::wait::{Goal, Want};
use anyhow::Context;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// The control socket and whether we own its file (we remove it on exit only then).
pub struct ControlSocket {
    listener: StdUnixListener,
    owned_path: Option<PathBuf>,
}

impl ControlSocket {
    /// Uses the socket systemd passed, or creates `path`.
    pub fn open(path: &Path, passed: Option<StdUnixListener>) -> anyhow::Result<ControlSocket> {
        if let Some(listener) = passed {
            return Ok(ControlSocket {
                listener,
                owned_path: None,
            });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| {
                format!("cannot create the socket's directory {}", dir.display())
            })?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "another psentinel is already running on {} (stop it first, or set another sock_file)",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
        }
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let listener = StdUnixListener::bind(&tmp)
            .with_context(|| format!("cannot create the control socket {}", tmp.display()))?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666))
            .and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(e)
                .with_context(|| format!("cannot put the control socket at {}", path.display()));
        }
        Ok(ControlSocket {
            listener,
            owned_path: Some(path.to_path_buf()),
        })
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if let Some(p) = &self.owned_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

// Shared with D-Bus; re-exported so callers of this module keep their paths.
pub use crate::auth::{actor_name, Auth};
use crate::auth::{Caller, Decision};

pub async fn serve(
    socket: ControlSocket,
    handle: Handle,
    auth: Arc<Auth>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    socket.listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(socket.listener.try_clone()?)?;
    let admission = Admission::default();
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("control socket accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // No credentials: counted as a uid of its own, never as root.
        let uid = stream.peer_cred().map_or(u32::MAX, |c| c.uid());
        let slot = match admission.admit(uid) {
            Ok(slot) => slot,
            Err(full) => {
                let why = match full {
                    Full::User => format!(
                        "too many control connections from uid {uid} (at most {}); close some",
                        admit::PER_UID
                    ),
                    Full::Everyone => "too many control connections; try again".to_string(),
                };
                let _ =
                    stream.try_write(format!("{}{why}\n", Code::Refused.status_line()).as_bytes());
                continue;
            }
        };
        let (handle, auth, stop) = (handle.clone(), auth.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = connection(stream, &handle, Gate { auth: &auth, slot: &slot }, &stop) => {}
                // Dropping the stream closes it: the reader that was evicted sees EOF.
                _ = slot.evicted.cancelled() => {}
            }
        });
    }
    drop(socket);
    Ok(())
}

async fn read_request(stream: &mut UnixStream) -> Result<Vec<String>, String> {
    let mut line = Vec::new();
    let mut reader = BufReader::new(stream).take(MAX_LINE as u64 + 1);
    match tokio::time::timeout(REQUEST_DEADLINE, reader.read_until(b'\n', &mut line)).await {
        Err(_) => {
            return Err(format!(
                "no command received within {}s",
                REQUEST_DEADLINE.as_secs()
            ))
        }
        Ok(Err(e)) => return Err(format!("read error: {e}")),
        Ok(Ok(_)) => {}
    }
    if line.len() > MAX_LINE {
        return Err(format!("command line longer than {MAX_LINE} bytes"));
    }
    let text = std::str::from_utf8(&line).map_err(|_| "command line is not UTF-8".to_string())?;
    shlex::split(text.trim_end_matches(['\n', '\r']))
        .ok_or_else(|| "unbalanced quotes in the command line".to_string())
}

/// What a request passes before it changes anything: who may ([`Auth`]), and the
/// connection's place, protected from eviction once the change is allowed.
#[derive(Clone, Copy)]
struct Gate<'a> {
    auth: &'a Arc<Auth>,
    slot: &'a Slot,
}

async fn connection(
    mut stream: UnixStream,
    handle: &Handle,
    gate: Gate<'_>,
    stop: &CancellationToken,
) {
    let (code, body) = match read_request(&mut stream).await {
        Err(why) => (Code::Usage, why + "\n"),
        Ok(words) => match Command::parse(&words) {
            Err(why) => (Code::Usage, format!("{why}\n")),
            Ok(Command::Wait {
                cmd,
                timeout,
                drained,
            }) => execute_and_wait(*cmd, timeout, drained, &mut stream, handle, gate, stop).await,
            Ok(Command::Status { service, json }) => {
                return send_status(&mut stream, handle.snapshot(), service, json).await;
            }
            Ok(cmd) => execute(cmd, &stream, handle, gate, stop).await,
        },
    };
    let mut out = code.status_line().into_bytes();
    out.extend_from_slice(body.as_bytes());
    // A client that stopped reading loses its answer; it cannot hold the task forever.
    let _ = tokio::time::timeout(REQUEST_DEADLINE, stream.write_all(&out)).await;
    let _ = stream.shutdown().await;
}

/// How much of a `status` answer is sent at a time, and how many chunks may wait to be sent.
const STATUS_CHUNK: usize = 128 * 1024;
const STATUS_CHUNKS_AHEAD: usize = 4;

/// `status`: rendered off the runtime's workers (ten thousand services are ten megabytes of
/// JSON and tens of milliseconds of CPU, which on a worker would hold up the probes queued
/// behind it) and sent in chunks as they are made, so the client reads while the rest is
/// rendered. The whole answer gets [`REQUEST_DEADLINE`], as any other.
async fn send_status(
    stream: &mut UnixStream,
    snap: Arc<crate::view::Snapshot>,
    service: Option<String>,
    json: bool,
) {
    let deadline = tokio::time::Instant::now() + REQUEST_DEADLINE;
    let (tx, mut rx) = tokio::sync::mpsc::channel(STATUS_CHUNKS_AHEAD);
    let render = tokio::task::spawn_blocking(move || {
        let mut w = Chunks {
            buf: Vec::with_capacity(STATUS_CHUNK),
            tx,
        };
        let written = match &service {
            Some(n) if !snap.services.contains_key(n) => w.write_all(
                format!("{}unknown service '{n}'\n", Code::Refused.status_line()).as_bytes(),
            ),
            _ => w
                .write_all(Code::Ok.status_line().as_bytes())
                .and_then(|()| {
                    if json {
                        status::write_json(&mut w, &snap, service.as_deref()).unwrap_or(Ok(()))
                    } else {
                        let text = status::text(&snap, service.as_deref()).unwrap_or_default();
                        w.write_all(text.as_bytes())
                    }
                }),
        };
        // Nothing more to do when the client is gone.
        let _ = written.and_then(|()| w.send());
    });
    while let Some(chunk) = rx.recv().await {
        let sent = tokio::time::timeout_at(deadline, stream.write_all(&chunk)).await;
        // A client that stopped reading loses its answer; it cannot hold the task forever.
        if !matches!(sent, Ok(Ok(()))) {
            break;
        }
    }
    // The renderer's next chunk finds no one and it stops.
    drop(rx);
    let _ = render.await;
    let _ = stream.shutdown().await;
}

/// What the renderer of `status` writes into: a buffer sent on as a chunk once it is full.
struct Chunks {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
}

impl Chunks {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(STATUS_CHUNK));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::ErrorKind::BrokenPipe.into())
    }
}

impl std::io::Write for Chunks {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.write_all(b).map(|()| b.len())
    }

    // Straight into the buffer: serde calls this for every few bytes it writes, and the
    // default's loop over `write` cost as much as the rendering itself.
    #[inline]
    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= STATUS_CHUNK {
            self.send()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// `--wait`: the change first (a refusal ends it as usual), then progress lines while the
/// probers catch up, then the status line with the outcome (see [`proto`]). `drained`: wait
/// until HAProxy holds no session on the server too (disable, pause).
async fn execute_and_wait(
    cmd: Command,
    timeout: std::time::Duration,
    drained: bool,
    stream: &mut UnixStream,
    handle: &Handle,
    gate: Gate<'_>,
    stop: &CancellationToken,
) -> (Code, String) {
    let out = if drained { Goal::Drained } else { Goal::Out };
    let want = match &cmd {
        Command::Disable { service, .. } => Want::new(out, Some(vec![service.clone()])),
        Command::Enable(s) => Want::new(Goal::In, Some(vec![s.clone()])),
        Command::Pause { service, .. } => Want::new(out, service.clone().map(|s| vec![s])),
        Command::Run(service) => Want::new(Goal::In, service.clone().map(|s| vec![s])),
        Command::UnitStopping(u) => Want::new(out, Some(following(handle, u))),
        Command::UnitStarted(u) => Want::new(Goal::In, Some(following(handle, u))),
        _ => {
            return (
                Code::Usage,
                "--wait goes with enable, disable, pause, run, unit_stopping, unit_started\n"
                    .into(),
            )
        }
    };
    let check_first = match &cmd {
        Command::UnitStarted(u) => following(handle, u),
        _ => Vec::new(),
    };
    let (code, body) = execute(cmd, stream, handle, gate, stop).await;
    if code != Code::Ok {
        return (code, body);
    }
    // The app has just started (a Type=simple app may not even listen yet): the engine checks
    // its services now and again until they pass (`unit_started`); wait for that within the
    // timeout, then for the probers.
    let deadline = tokio::time::Instant::now() + timeout;
    let checked_first = !check_first.is_empty();
    if checked_first {
        let mut snaps = handle.subscribe();
        let all_pass = |s: &Arc<Snapshot>| check_first.iter().all(|n| passing(s, n));
        let _ = tokio::time::timeout_at(deadline, snaps.wait_for(all_pass)).await;
    }
    // What is left of the timeout (said in whole seconds when nothing came first).
    let timeout = if checked_first {
        deadline.saturating_duration_since(tokio::time::Instant::now())
    } else {
        timeout
    };
    let targets = match want.targets(&handle.snapshot()) {
        Ok(t) => t,
        Err(why) => return (Code::Refused, format!("{body}{why}\n")),
    };
    let (ptx, mut prx) = tokio::sync::mpsc::unbounded_channel();
    let fut = crate::wait::wait(targets, timeout, ptx);
    tokio::pin!(fut);
    let mut client_gone = false;
    let mut lines = body.lines().map(str::to_string).collect::<Vec<_>>();
    let outcome = loop {
        for l in lines.drain(..) {
            let line = format!("{}{l}\n", proto::PROGRESS);
            let w = tokio::time::timeout(REQUEST_DEADLINE, stream.write_all(line.as_bytes()));
            if !matches!(w.await, Ok(Ok(()))) {
                client_gone = true;
            }
        }
        if client_gone {
            // Nobody to tell: the change stands, the wait ends.
            return (Code::Refused, "client gone\n".into());
        }
        tokio::select! {
            r = &mut fut => break r,
            Some(p) = prx.recv() => lines.push(p.to_string()),
        }
    };
    while let Ok(p) = prx.try_recv() {
        let line = format!("{}{p}\n", proto::PROGRESS);
        if tokio::time::timeout(REQUEST_DEADLINE, stream.write_all(line.as_bytes()))
            .await
            .is_err()
        {
            break;
        }
    }
    match outcome {
        Ok(caught) => {
            let lines: Vec<String> = caught.iter().map(|c| format!("{c}\n")).collect();
            (Code::Ok, lines.concat())
        }
        Err(why) => {
            tracing::warn!("--wait: {why}");
            (Code::Refused, format!("{why}\n"))
        }
    }
}

/// Whether waiting for `service`'s check is over: it is up, out by an operator's decision
/// (the wait then says so), or gone.
fn passing(snap: &Snapshot, service: &str) -> bool {
    use crate::model::State;
    snap.services
        .get(service)
        .map_or(true, |v| !matches!(v.state, State::Down | State::Starting))
}

/// The services that follow `unit`, in name order.
fn following(handle: &Handle, unit: &str) -> Vec<String> {
    handle
        .snapshot()
        .services
        .values()
        .filter(|v| v.cfg.unit.as_deref() == Some(unit))
        .map(|v| v.cfg.name.clone())
        .collect()
}

async fn execute(
    cmd: Command,
    stream: &UnixStream,
    handle: &Handle,
    gate: Gate<'_>,
    stop: &CancellationToken,
) -> (Code, String) {
    let mut actor = String::new();
    if let Some(req) = cmd.request() {
        let Ok(cred) = stream.peer_cred() else {
            return (
                Code::Refused,
                "cannot read the caller's credentials\n".into(),
            );
        };
        let caller = Caller::Process {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid().and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
        };
        let verdict = gate.auth.decide(&caller, &req, &handle.snapshot()).await;
        if let Decision::Refused { groups, polkit } = &verdict.decision {
            let name = &verdict.actor;
            tracing::warn!(psentinel_actor = %name, "refused {cmd:?}: not authorised");
            let what = match &req.service {
                Some(s) => format!("changing {s}"),
                None => format!("'{}'", req.verb),
            };
            return (
                Code::Refused,
                format!(
                    "not authorised: {name} may read state but {what} needs {}{}\n",
                    crate::auth::who_may(groups),
                    crate::auth::polkit_words(polkit)
                ),
            );
        }
        actor = verdict.actor;
        gate.slot.protect();
    }
    let done = |r: Result<Outcome, EngineError>| match r {
        Ok(o) => (Code::Ok, words::outcome(&o)),
        // Done but not saved: what was done, then why it is not safe yet; exit status 1 so
        // that a script does not go on as if all were well.
        Err(e @ EngineError::NotSaved { .. }) => {
            let EngineError::NotSaved { outcome, .. } = &e else {
                unreachable!()
            };
            (Code::Refused, format!("{}{e}\n", words::outcome(outcome)))
        }
        Err(e) => (Code::Refused, format!("{e}\n")),
    };
    match cmd {
        Command::Help(c) => match proto::help_text(c.as_deref()) {
            Ok(t) => (Code::Ok, t),
            Err(e) => (Code::Usage, format!("{e}\n")),
        },
        Command::Version => (Code::Ok, format!("psentinel {}\n", status::VERSION)),
        Command::Status { service, json } => {
            let snap = handle.snapshot();
            let out = if json {
                status::json(&snap, service.as_deref())
            } else {
                status::text(&snap, service.as_deref())
            };
            match out {
                Some(t) => (Code::Ok, t),
                None => (
                    Code::Refused,
                    format!("unknown service '{}'\n", service.unwrap_or_default()),
                ),
            }
        }
        Command::Enable(s) => done(handle.enable(&s, &actor).await),
        Command::Disable {
            service,
            for_,
            reason,
            force,
        } => done(
            handle
                .disable_with(&service, &reason, for_, force, &actor)
                .await,
        ),
        Command::Pause {
            service,
            for_,
            reason,
            force,
        } => done(
            handle
                .pause_with(service.as_deref(), &reason, for_, force, &actor)
                .await,
        ),
        Command::Run(s) => done(handle.resume(s.as_deref(), &actor).await),
        Command::DisableTest(s) => done(handle.set_checks_stopped(&s, true, &actor).await),
        Command::EnableTest(s) => done(handle.set_checks_stopped(&s, false, &actor).await),
        Command::Reload => done(handle.reload(&actor).await),
        Command::UnitStopping(u) => done(handle.unit_stopping(&u, &actor).await),
        Command::UnitStarted(u) => done(handle.unit_started(&u, &actor).await),
        Command::Test(s) => match handle.run_check(&s).await {
            Ok(run) => {
                let passed = match &run {
                    CheckRun::Ran(r) => r.exit.passed(),
                    CheckRun::NoCheck => true,
                };
                let code = if passed { Code::Ok } else { Code::Failed };
                (code, words::check_run(&s, &run))
            }
            Err(e) => (Code::Refused, format!("{e}\n")),
        },
        Command::Metrics => (Code::Ok, crate::metrics::render(&handle.snapshot())),
        Command::Wait { .. } => (Code::Usage, "--wait cannot be nested\n".into()),
        Command::StopServer => {
            tracing::info!(psentinel_actor = %actor, "stop requested over the control socket");
            stop.cancel();
            (Code::Ok, "stopping\n".into())
        }
    }
}
