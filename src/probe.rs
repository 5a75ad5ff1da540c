//! Probe responders: HTTP (HAProxy `option httpchk`) and agent-check, one accept loop per port.
//!
//! # HTTP
//!
//! Any method, any target, HTTP/1.0 or 1.1. The request head is read (at most
//! [`MAX_HEAD`] bytes, within [`HEAD_DEADLINE`]), then one complete HTTP/1.0 response is written
//! and the connection closed:
//!
//! | service state                         | status                         |
//! |---------------------------------------|--------------------------------|
//! | up (check passed, no check, stopped)  | 200                            |
//! | down (check failing)                  | 500                            |
//! | disabled                              | `disabled_status` (503)        |
//! | paused                                | `paused_status` (503)          |
//! | starting (no result yet)              | 503                            |
//!
//! The reason phrase says why (`HTTP/1.0 503 Disabled: deploy v2`); HAProxy shows it as the
//! check's description. The body is one line, `<service> <state> <reason>`; HEAD gets none.
//! A request that is not HTTP gets `400` (as soon as a byte shows it: a TLS hello is refused at
//! once; header lines are checked too, and only HTTP/1.0 and 1.1 are accepted), a head over
//! [`MAX_HEAD`] or with more than [`MAX_HEADERS`] header lines gets `431`; a client that sends
//! nothing is closed at the deadline without an answer. A client that half-closes after the
//! request line is answered.
//!
//! # Agent
//!
//! On connect, without reading, one line and close (HAProxy `agent-check`):
//!
//! | service state        | line                                   |
//! |----------------------|----------------------------------------|
//! | up                   | `up ready #<reason>`, or `up ready 75% #<reason>` with a weight |
//! | down, starting       | `down ready #<reason>`                 |
//! | disabled             | `maint up #<reason>` / `maint down #<reason>` |
//! | paused               | `drain up #<reason>` / `drain down #<reason>` |
//! | warning (a plugin's exit 1) | `drain up #<reason>`            |
//!
//! `ready` with every up/down answer lifts a MAINT or DRAIN that HAProxy set from an earlier
//! answer, so a missed transition cannot leave a server stuck out of the pool. `maint` and
//! `drain` carry the check's own health (`up` while it passes or there is none, `down`
//! otherwise) for one reason: HAProxy (2.6) shows the `#` text only next to a health word, as
//! `via agent : up (Disabled: deploy v2)` in `show stat`'s `last_agt` and in its health-check
//! log; without it the operator's reason would be invisible on the HAProxy side.
//!
//! ## Weight
//!
//! A check can ask for a share of the server's configured weight by printing a line
//! `weight=NN%` (0 to 100, the line on its own, surrounding blanks ignored) anywhere in its
//! output; the last such line of the kept output tail counts. While the service is up, the
//! agent answer carries it (`up ready 75% #OK: check passed`) and HAProxy sets the server's
//! effective weight to that share; `0%` takes the server out of balancing like a drain.
//! HAProxy keeps the last weight it was given, so a check that lowers the weight must print
//! `weight=100%` to restore it; a run without the line leaves the weight as it was. The
//! percentage is worked out by the engine when it builds a service's view (see
//! [`crate::view::replies::weight_from_output`]), never on the probe path. HTTP probes ignore it.
//!
//! # Cost
//!
//! Answers are pre-rendered in the snapshot ([`crate::view::replies::Replies`]): a probe costs an accept, a read
//! (tried at once, before waiting on the reactor), a write of the shared bytes, and the wait
//! for the prober's close. An idle connection costs a task and no buffer until bytes arrive
//! (1 KiB reads on the stack, never held across an await). `bench/` measures all this.
//! Connections per port are capped at [`MAX_CONNS`]; past the cap a connection is answered at
//! once without waiting for its request, so a flood of idle clients cannot lock out HAProxy.
//!
//! After each answer the responder records it through the service's [`Tap`]
//! ([`crate::probe_stats`]): atomic counters and a non-blocking hand-off of (peer, answer, whether
//! the peer closed after reading it, HAProxy's `X-Haproxy-Server-State` if sent) to the
//! observer task. The header is only located here, without allocating when absent; the
//! observer parses it.

use crate::probe_stats::{haproxy_header, Answer, ProbeKind, Tap};
use crate::view::replies::{http_response, Replies};
use crate::view::Snapshot;
use nix::errno::Errno;
use nix::sys::socket::{recv, send, MsgFlags};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub const MAX_HEAD: usize = 8192;
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// After answering: how long we wait for the client's close, so that unread request bytes do
/// not turn our close into a reset that could destroy the answer in flight.
const LINGER: Duration = Duration::from_secs(1);
pub const MAX_CONNS: usize = 16_384;

/// What a request head turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// A request; `head_only` for HEAD.
    Request { head_only: bool },
    /// Not HTTP: 400.
    Garbage,
    /// Longer than [`MAX_HEAD`]: 431.
    TooLarge,
    /// Not complete yet: read more.
    Partial,
}

/// Headers parsed per request; more is answered like a head over [`MAX_HEAD`] (431). Probers
/// send a handful; the slots are left uninitialised, so the bound costs nothing per probe.
pub const MAX_HEADERS: usize = 100;

/// Classifies the bytes received so far. `eof`: the client will send nothing more.
///
/// The parsing is httparse's (strict HTTP/1.0 and 1.1 request heads, bare `\n` line ends
/// accepted); the bounds and what they answer are ours.
pub fn parse_head(buf: &[u8], eof: bool) -> Head {
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(_)) => Head::Request {
            head_only: req.method == Some("HEAD"),
        },
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => Head::TooLarge,
        // Half-closed after the request line: what was sent is a request, answer it. (After
        // optional empty lines, the first line end is the request line's.)
        Ok(httparse::Status::Partial) if eof => {
            if req.version.is_some() && buf.trim_ascii_start().contains(&b'\n') {
                Head::Request {
                    head_only: req.method == Some("HEAD"),
                }
            } else {
                Head::Garbage
            }
        }
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(httparse::Error::TooManyHeaders) => Head::TooLarge,
        Err(_) => Head::Garbage,
    }
}

fn static_reply(status: u16, reason: &str) -> Arc<[u8]> {
    http_response(status, reason, &format!("{reason}\n"), true)
}

/// Bytes taken per read. A probe's head fits (HAProxy sends 20 to 200 bytes); a longer head
/// is collected on the heap, up to [`MAX_HEAD`]. Lives on the stack and never across an
/// await, so an idle connection's task holds no buffer.
const CHUNK: usize = 1024;

/// What a read without waiting found.
enum Got {
    Nothing,
    Bytes(usize),
    Eof,
    Failed,
}

/// Reads what is already there, straight from the socket. tokio's own `try_read` answers
/// "would block" without asking the kernel until the reactor has seen the socket readable,
/// which for a connection just accepted costs a trip through epoll and a task wake-up.
fn read_now(stream: &TcpStream, buf: &mut [u8]) -> Got {
    match recv(stream.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
        Ok(0) => Got::Eof,
        Ok(n) => Got::Bytes(n),
        Err(Errno::EAGAIN | Errno::EINTR) => Got::Nothing,
        Err(_) => Got::Failed,
    }
}

/// Writes what the socket takes now; returns how much (a fresh connection's send buffer takes
/// a whole answer).
fn write_now(stream: &TcpStream, bytes: &[u8]) -> usize {
    send(
        stream.as_raw_fd(),
        bytes,
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
    )
    .unwrap_or(0)
}

/// On shutdown, after the accept loops stopped: waits up to `limit` for the probe
/// connections being answered. `in_flight` is the daemon's tracker of those connections,
/// handed to every [`serve`]: a probe accepted just before SIGTERM is answered, not reset,
/// and the ones still waiting in the backlog of a socket systemd holds are answered by the
/// next process.
pub async fn finish_in_flight(in_flight: &TaskTracker, limit: Duration) {
    let t = in_flight;
    t.close();
    if tokio::time::timeout(limit, t.wait()).await.is_err() {
        tracing::warn!(
            "{} probe connections still unanswered after {limit:?}; closing them",
            t.len()
        );
    }
}

/// Accept loop of one probe port. Ends on shutdown or when the engine aborts it (reload).
pub async fn serve(
    listener: Arc<TcpListener>,
    service: Arc<str>,
    kind: ProbeKind,
    snap: watch::Receiver<Arc<Snapshot>>,
    tap: Tap,
    in_flight: TaskTracker,
    shutdown: CancellationToken,
) {
    let conns = Arc::new(Semaphore::new(MAX_CONNS));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning on the error.
                    tracing::warn!(psentinel_service = %service, "accept on {} failed: {e}", kind.as_str());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // No set_nodelay: one write, then close; Nagle never delays a first write.
        match conns.clone().try_acquire_owned() {
            Ok(permit) => {
                let snap = snap.clone();
                let service = service.clone();
                let tap = tap.clone();
                in_flight.spawn(async move {
                    match kind {
                        ProbeKind::Http => answer_http(stream, peer, &snap, &service, &tap).await,
                        ProbeKind::Agent => {
                            if let Some(r) = current(&snap, &service) {
                                let acked = answer_and_close(stream, &r.agent).await;
                                tap.record(
                                    peer.ip(),
                                    kind,
                                    Answer::Agent(r.state),
                                    Some(r.state),
                                    acked,
                                    None,
                                );
                            }
                        }
                    }
                    drop(permit);
                });
            }
            Err(_) => {
                // Over the cap: answer now, from what is already readable, without a task.
                // Straight to the socket: tokio's try_read/try_write would see no readiness yet
                // on a connection just accepted and do nothing.
                let mut scratch = [0u8; CHUNK];
                let _ = read_now(&stream, &mut scratch);
                if let Some(r) = current(&snap, &service) {
                    let (bytes, answer) = match kind {
                        ProbeKind::Http => (&r.full, Answer::Http(r.status)),
                        ProbeKind::Agent => (&r.agent, Answer::Agent(r.state)),
                    };
                    write_now(&stream, bytes);
                    tap.record(peer.ip(), kind, answer, Some(r.state), false, None);
                }
            }
        }
    }
}

fn current(snap: &watch::Receiver<Arc<Snapshot>>, service: &str) -> Option<Replies> {
    snap.borrow()
        .services
        .get(service)
        .map(|v| v.replies.clone())
}

async fn answer_http(
    stream: TcpStream,
    peer: SocketAddr,
    snap: &watch::Receiver<Arc<Snapshot>>,
    service: &str,
    tap: &Tap,
) {
    let deadline = tokio::time::Instant::now() + HEAD_DEADLINE;
    let mut buf: Vec<u8> = Vec::new();
    let mut eof = false;
    // By the time this task runs the request has usually arrived: look once before waiting on
    // the reactor (later reads go through tokio, which must see "would block" to wait again).
    let mut look_first = true;
    let head = loop {
        if eof || !buf.is_empty() {
            match parse_head(&buf, eof) {
                Head::Partial => {}
                h => break h,
            }
        }
        if std::mem::take(&mut look_first) {
            let mut chunk = [0u8; CHUNK];
            match read_now(&stream, &mut chunk) {
                Got::Bytes(n) => buf.extend_from_slice(&chunk[..n]),
                Got::Eof => eof = true,
                Got::Nothing => {}
                Got::Failed => return,
            }
            continue;
        }
        // No buffer is held while waiting: idle connections stay cheap.
        match tokio::time::timeout_at(deadline, stream.readable()).await {
            Ok(Ok(())) => {}
            _ => return, // deadline: an incomplete request gets no answer
        }
        let mut chunk = [0u8; CHUNK];
        match stream.try_read(&mut chunk) {
            Ok(0) => eof = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    };
    let mut state = None;
    let mut status = 400;
    // The pre-rendered answer itself, shared: no copy per probe.
    let bytes: Arc<[u8]> = match head {
        Head::Request { head_only } => {
            // Read the state at answer time, not at accept time: the freshest decision wins.
            let Some(r) = current(snap, service) else {
                return;
            };
            (state, status) = (Some(r.state), r.status);
            if head_only {
                r.head
            } else {
                r.full
            }
        }
        Head::Garbage => static_reply(400, "Bad Request"),
        Head::TooLarge => {
            status = 431;
            static_reply(431, "Request Header Fields Too Large")
        }
        Head::Partial => unreachable!("handled in the loop"),
    };
    // HAProxy's `http-check send-state` header: only located here (no allocation when absent),
    // parsed by the observer.
    let hap: Option<Vec<u8>> = state.and_then(|_| haproxy_header(&buf)).map(<[u8]>::to_vec);
    drop(buf);
    let acked = answer_and_close(stream, &bytes).await;
    tap.record(
        peer.ip(),
        ProbeKind::Http,
        Answer::Http(status),
        state,
        acked,
        hap.as_deref(),
    );
}

/// Writes the answer, half-closes, and waits (bounded) for the client to close. Returns true
/// when the client closed (FIN or reset) after the whole answer was written: a prober that
/// closes has read the answer and acted on it (HAProxy updates the server, then closes), which
/// is what `--wait` counts. The wait also keeps unread request bytes from turning our close
/// into a reset that could destroy the answer in flight.
async fn answer_and_close(mut stream: TcpStream, bytes: &[u8]) -> bool {
    let deadline = tokio::time::Instant::now() + LINGER;
    // One send usually takes it all; the rest, if any, through tokio.
    let sent = write_now(&stream, bytes);
    if sent < bytes.len() {
        match tokio::time::timeout_at(deadline, stream.write_all(&bytes[sent..])).await {
            Ok(Ok(())) => {}
            _ => return false,
        }
    }
    let _ = stream.shutdown().await;
    let mut drained = 0usize;
    while drained < 65_536 {
        match tokio::time::timeout_at(deadline, stream.readable()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return true,
            Err(_) => return false,
        }
        // Not held across the await above: a lingering connection holds no buffer either.
        let mut sink = [0u8; CHUNK];
        match stream.try_read(&mut sink) {
            Ok(0) => return true,
            Ok(n) => drained += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return true, // a reset: the client closed too
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let req = |s: &str| parse_head(s.as_bytes(), false);
        assert_eq!(
            req("OPTIONS * HTTP/1.0\r\n\r\n"),
            Head::Request { head_only: false }
        );
        assert_eq!(
            req("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"),
            Head::Request { head_only: false }
        );
        assert_eq!(
            req("HEAD / HTTP/1.1\n\n"),
            Head::Request { head_only: true }
        );
        assert_eq!(req("OPTIONS * HTTP/1.0\r\n"), Head::Partial);
        assert_eq!(
            parse_head(b"OPTIONS * HTTP/1.0\r\n", true),
            Head::Request { head_only: false }
        );
        assert_eq!(req("GET /"), Head::Partial);
        assert_eq!(req("\x16\x03\x01\x02\x00\x01\n"), Head::Garbage);
        assert_eq!(req("GET / SPDY/3\r\n\r\n"), Head::Garbage);
        assert_eq!(req("G E T / HTTP/1.1\r\n\r\n"), Head::Garbage);
        assert_eq!(parse_head(&[b'a'; MAX_HEAD], false), Head::TooLarge);
        let mut long = b"GET / HTTP/1.1\r\n".to_vec();
        long.resize(MAX_HEAD, b'x');
        assert_eq!(parse_head(&long, false), Head::TooLarge);
        assert_eq!(parse_head(b"", true), Head::Garbage);
        assert_eq!(parse_head(b"GET / HTTP/1.0", true), Head::Garbage);
        assert_eq!(
            parse_head(b"GET / HTTP/1.0\r\nHost: x", true),
            Head::Request { head_only: false }
        );
    }

    #[test]
    fn heads_are_checked_whole_and_garbage_is_known_early() {
        let req = |s: &[u8]| parse_head(s, false);
        // Header lines are HTTP too: a broken one is not a request.
        assert_eq!(
            req(b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n"),
            Head::Garbage
        );
        assert_eq!(req(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"), Head::Garbage);
        assert_eq!(req(b"GET / HTTP/1.2\r\n\r\n"), Head::Garbage);
        assert_eq!(req(b"GET /a\x01b HTTP/1.1\r\n\r\n"), Head::Garbage);
        // A TLS hello or other binary needs no line end to be refused.
        assert_eq!(req(b"\x16\x03\x01\x02\x00"), Head::Garbage);
        // Too many header lines, even within MAX_HEAD: 431 like a head too long.
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(many.len() < MAX_HEAD);
        assert_eq!(req(&many), Head::TooLarge);
        // Empty lines before the request line are skipped (RFC 9112, 2.2).
        assert_eq!(
            req(b"\r\nHEAD / HTTP/1.1\r\n\r\n"),
            Head::Request { head_only: true }
        );
    }
}
