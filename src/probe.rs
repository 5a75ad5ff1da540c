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
//! Answers are pre-rendered in the snapshot ([`crate::view::replies::Replies`]), and each accept
//! loop keeps its service's view until a new snapshot is published. The usual probe (its
//! request arrived with the connection, or an agent check) is answered inside the accept loop:
//! an accept, one read, one write of the shared bytes, a half-close, and a hand-off to the
//! observer, which watches the socket for the prober's close ([`crate::linger`]); no task, no
//! timer, no reactor registration. A connection whose request is not (all) there yet gets a
//! place in the port's waiting room ([`crate::waiting`]) until it arrives (within
//! [`HEAD_DEADLINE`]): an idle connection costs an entry there, not a task, a timer and a
//! reactor registration of its own. `bench/` measures all this.
//! Connections per port are capped at [`MAX_CONNS`] (answered ones count until the observer
//! lets them go); past the cap a connection is answered at once without waiting for its
//! request, so a flood of idle clients cannot lock out HAProxy.
//!
//! After each answer the responder records it through the service's [`Tap`]
//! ([`crate::probe_stats`]): atomic counters and a non-blocking hand-off of (peer, answer, the
//! answered socket, HAProxy's `X-Haproxy-Server-State` if sent) to the observer task, which
//! counts the answer as read once the prober closes. The header is only located here, without
//! allocating when absent; the observer parses it.

use crate::linger::{Linger, LINGER};
use crate::model::State;
use crate::probe_stats::{haproxy_header, Answer, ProbeKind, Tap};
use crate::view::replies::{http_response, Replies};
use crate::view::{ServiceView, Snapshot};
use crate::waiting::{Room, Waiter};
use nix::errno::Errno;
use nix::sys::socket::{recv, send, MsgFlags};
use std::mem::MaybeUninit;
use std::net::{IpAddr, Shutdown, TcpStream as StdStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub const MAX_HEAD: usize = 8192;
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
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
/// await, so an idle connection holds no buffer.
pub(crate) const CHUNK: usize = 1024;

/// What a read without waiting found.
pub(crate) enum Got {
    Nothing,
    Bytes(usize),
    Eof,
    Failed,
}

/// Reads what is already there, straight from the socket. tokio's own `try_read` answers
/// "would block" without asking the kernel until the reactor has seen the socket readable,
/// which for a connection just accepted costs a trip through epoll and a task wake-up.
pub(crate) fn read_now(stream: &impl AsRawFd, buf: &mut [u8]) -> Got {
    match recv(stream.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
        Ok(0) => Got::Eof,
        Ok(n) => Got::Bytes(n),
        Err(Errno::EAGAIN | Errno::EINTR) => Got::Nothing,
        Err(_) => Got::Failed,
    }
}

/// Writes what the socket takes now; returns how much (a fresh connection's send buffer takes
/// a whole answer). `MSG_MORE` holds the bytes back for the half-close or close that always
/// follows: the kernel then sends answer and FIN in one segment and the prober acknowledges
/// both at once, two segments fewer per probe for both kernels (nginx sends them apart).
fn write_now(stream: &impl AsRawFd, bytes: &[u8]) -> usize {
    send(
        stream.as_raw_fd(),
        bytes,
        MsgFlags::MSG_DONTWAIT
            | MsgFlags::MSG_NOSIGNAL
            | MsgFlags::from_bits_retain(libc::MSG_MORE),
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

/// A probe port's listening socket. Accepted connections stay plain sockets (no reactor
/// registration) unless their request has not arrived yet.
pub struct Port(AsyncFd<std::net::TcpListener>);

impl Port {
    pub fn new(l: TcpListener) -> std::io::Result<Port> {
        let l = l.into_std()?;
        l.set_nonblocking(true)?;
        // Deprecated because a borrowed descriptor could be closed under the registration;
        // this AsyncFd owns the listener, so it cannot. (The replacement is an unsafe fn, and
        // this crate has no unsafe code.)
        #[allow(deprecated)]
        Ok(Port(AsyncFd::with_interest(l, Interest::READABLE)?))
    }
}

/// Connections taken in one go before the accept loop lets other tasks run.
const ACCEPT_BUDGET: usize = 64;

/// Accept loop of one probe port. Ends on shutdown or when the engine aborts it (reload).
pub async fn serve(
    port: Arc<Port>,
    service: Arc<str>,
    kind: ProbeKind,
    snap: watch::Receiver<Arc<Snapshot>>,
    tap: Tap,
    in_flight: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut door = Door {
        conns: Arc::new(Semaphore::new(MAX_CONNS)),
        view: None,
        snap: snap.clone(),
        room: None,
        shared: Arc::new(Shared {
            snap,
            service,
            kind,
            tap,
            in_flight,
        }),
    };
    // One timer for the room's earliest deadline, re-armed only when that deadline changes.
    let timer = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(timer);
    let mut armed: Option<tokio::time::Instant> = None;
    let mut done = Vec::new();
    loop {
        let due = door.room.as_ref().and_then(Room::next_deadline);
        if due != armed {
            if let Some(at) = due {
                timer.as_mut().reset(at);
            }
            armed = due;
        }
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = port.0.readable() => match r {
                Ok(g) => Event::Accept(g),
                Err(e) => {
                    tracing::warn!(psentinel_service = %door.shared.service, "{} port failed: {e}", kind.as_str());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = readable(door.room.as_ref()) => Event::Request,
            () = &mut timer, if armed.is_some() => Event::Deadline,
        };
        let mut ready = match event {
            Event::Accept(g) => g,
            Event::Request => {
                door.serve_room(&mut done);
                continue;
            }
            Event::Deadline => {
                armed = None;
                if let Some(room) = door.room.as_mut() {
                    room.expire(tokio::time::Instant::now());
                }
                door.close_empty_room();
                continue;
            }
        };
        // Readiness is edge-triggered: take connections until the kernel has none left (or
        // the budget is spent; then readiness stays set and the next round comes at once).
        let mut failed = None;
        let mut taken = 0;
        while taken < ACCEPT_BUDGET {
            match ready.try_io(|l| l.get_ref().accept()) {
                Ok(Ok((stream, peer))) => door.take(stream, peer.ip()),
                Ok(Err(e)) => failed = Some(e),
                Err(_would_block) => break,
            }
            if failed.is_some() {
                break;
            }
            taken += 1;
        }
        drop(ready);
        if let Some(e) = failed {
            // EMFILE and friends: back off briefly instead of spinning on the error.
            tracing::warn!(psentinel_service = %door.shared.service, "accept on {} failed: {e}", kind.as_str());
            tokio::time::sleep(Duration::from_millis(50)).await;
        } else if taken == ACCEPT_BUDGET {
            tokio::task::yield_now().await;
        }
    }
}

/// The waiting room has a request to read; never, while there is no room.
async fn readable(room: Option<&Room>) {
    match room {
        Some(room) => room.readable().await,
        None => std::future::pending().await,
    }
}

/// What woke an accept loop.
enum Event<'a> {
    Accept(tokio::io::unix::AsyncFdReadyGuard<'a, std::net::TcpListener>),
    Request,
    Deadline,
}

/// What an accept loop holds to answer its connections.
struct Door {
    conns: Arc<Semaphore>,
    /// The service's view in the snapshot last looked at; looked up again when a new snapshot
    /// is published, not per probe.
    view: Option<Arc<ServiceView>>,
    snap: watch::Receiver<Arc<Snapshot>>,
    /// Connections whose request is not there yet ([`crate::waiting`]). Opened when the first
    /// one has to wait and closed when the last has left, so an idle port holds one
    /// descriptor (its listening socket), not two: 10,000 ports stay within the usual
    /// open-files limit. Handed over when the loop ends.
    room: Option<Room>,
    shared: Arc<Shared>,
}

impl Drop for Door {
    /// The accept loop ends (shutdown, or a reload that moves or removes the port): the
    /// connections still waiting for their request are served out by a task of the daemon's
    /// in-flight tracker, which the daemon waits for before it exits.
    fn drop(&mut self) {
        let Some(room) = self.room.take().filter(|r| !r.is_empty()) else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let shared = self.shared.clone();
        self.shared.in_flight.spawn(serve_out(room, shared));
    }
}

/// Serves a room whose accept loop ended until its last connection is answered or expires.
async fn serve_out(mut room: Room, shared: Arc<Shared>) {
    let mut done = Vec::new();
    while !room.is_empty() {
        let Some(at) = room.next_deadline() else {
            break;
        };
        tokio::select! {
            () = room.readable() => shared.serve_ready(&mut room, &mut done),
            () = tokio::time::sleep_until(at) => room.expire(tokio::time::Instant::now()),
        }
    }
}

/// What an accept loop shares with the tasks that finish its answers and serve out its waiting
/// room when it ends: one pointer each.
struct Shared {
    snap: watch::Receiver<Arc<Snapshot>>,
    service: Arc<str>,
    kind: ProbeKind,
    tap: Tap,
    in_flight: TaskTracker,
}

impl Door {
    /// Answers the waiting connections whose request is now complete.
    fn serve_room(&mut self, done: &mut Vec<(Waiter, Head)>) {
        if let Some(room) = self.room.as_mut() {
            self.shared.serve_ready(room, done);
        }
        self.close_empty_room();
    }

    /// Closes the waiting room once nobody waits in it.
    fn close_empty_room(&mut self) {
        if self.room.as_ref().is_some_and(Room::is_empty) {
            self.room = None;
        }
    }

    /// Answers from what is already readable and closes, without waiting for a request
    /// (over the cap, or when the connection cannot wait). Not watched for the prober's close.
    fn answer_at_once(&mut self, stream: StdStream, ip: IpAddr) {
        let kind = self.shared.kind;
        let mut scratch = [0u8; CHUNK];
        let _ = read_now(&stream, &mut scratch);
        if let Some(r) = self.replies() {
            let (bytes, answer, state) = match kind {
                ProbeKind::Http => (r.full.clone(), Answer::Http(r.status), r.state),
                ProbeKind::Agent => (r.agent.clone(), Answer::Agent(r.state), r.state),
            };
            write_now(&stream, &bytes);
            self.shared
                .tap
                .record(ip, kind, answer, Some(state), false, None);
        }
    }

    /// The answers of the latest snapshot.
    fn replies(&mut self) -> Option<&Replies> {
        if self.snap.has_changed().unwrap_or(false) || self.view.is_none() {
            self.view = self
                .snap
                .borrow_and_update()
                .services
                .get(&*self.shared.service)
                .cloned();
        }
        self.view.as_deref().map(|v| &v.replies)
    }

    /// A connection just accepted. The usual probe (its request already here, or an agent
    /// check) is answered right here, without a task; the observer then watches for the
    /// prober's close ([`crate::linger`]). Anything slower waits in the port's waiting room.
    fn take(&mut self, stream: StdStream, ip: IpAddr) {
        let kind = self.shared.kind;
        let Ok(permit) = self.conns.clone().try_acquire_owned() else {
            // Over the cap: answer now, from what is already readable, and close.
            self.answer_at_once(stream, ip);
            return;
        };
        if kind == ProbeKind::Agent {
            let Some(r) = self.replies() else { return };
            let (bytes, state) = (r.agent.clone(), r.state);
            let answer = Answer::Agent(state);
            self.shared
                .finish(stream, ip, permit, bytes, answer, Some(state), None);
            return;
        }
        let mut chunk = [0u8; CHUNK];
        let (got, eof) = match read_now(&stream, &mut chunk) {
            Got::Bytes(n) => (n, false),
            Got::Eof => (0, true),
            Got::Nothing => (0, false),
            Got::Failed => return,
        };
        let head = match (got, eof) {
            (0, false) => Head::Partial,
            _ => parse_head(&chunk[..got], eof),
        };
        if head == Head::Partial {
            if self.room.is_none() {
                match Room::new() {
                    Ok(room) => self.room = Some(room),
                    Err(e) => {
                        // No descriptor for the room (the limit is reached for a moment):
                        // the connection cannot wait, so it gets its answer as it is.
                        tracing::warn!(psentinel_service = %self.shared.service, "{} port: cannot wait for a request: {e}", kind.as_str());
                        self.answer_at_once(stream, ip);
                        return;
                    }
                }
            }
            let first = chunk[..got].to_vec();
            if let Some(room) = self.room.as_mut() {
                room.admit(Waiter::new(stream, ip, first, permit));
            }
            return;
        }
        let Some((bytes, answer, state)) = respond(head, self.replies()) else {
            return;
        };
        let hap = state.and_then(|_| haproxy_header(&chunk[..got]));
        self.shared
            .finish(stream, ip, permit, bytes, answer, state, hap);
    }
}

impl Shared {
    /// Answers the connections of `room` whose request is now complete (`done`: scratch).
    fn serve_ready(&self, room: &mut Room, done: &mut Vec<(Waiter, Head)>) {
        room.take_ready(done);
        for (w, head) in done.drain(..) {
            self.answer(w.stream, w.ip, w.permit, &w.buf, head);
        }
    }

    /// The slow path's answer, once its head is complete. The state is read now, not at
    /// accept time: the freshest decision wins.
    fn answer(
        &self,
        stream: StdStream,
        ip: IpAddr,
        permit: OwnedSemaphorePermit,
        buf: &[u8],
        head: Head,
    ) {
        let replies = current(&self.snap, &self.service);
        let Some((bytes, answer, state)) = respond(head, replies.as_ref()) else {
            return;
        };
        // HAProxy's `http-check send-state` header: only located here (no allocation when
        // absent), parsed by the observer.
        let hap = state.and_then(|_| haproxy_header(buf));
        self.finish(stream, ip, permit, bytes, answer, state, hap);
    }

    /// Writes the answer, half-closes and hands the connection to the observer. A send buffer
    /// that does not take the whole answer at once (never seen on a fresh connection) leaves
    /// the rest to a task.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        stream: StdStream,
        ip: IpAddr,
        permit: OwnedSemaphorePermit,
        bytes: Arc<[u8]>,
        answer: Answer,
        state: Option<State>,
        hap: Option<&[u8]>,
    ) {
        let kind = self.kind;
        let sent = write_now(&stream, &bytes);
        if sent == bytes.len() {
            let _ = stream.shutdown(Shutdown::Write);
            let linger = Linger::new(stream, Some(permit));
            self.tap
                .record_lingering(ip, kind, answer, state, hap, linger);
            return;
        }
        let tap = self.tap.clone();
        let hap = hap.map(<[u8]>::to_vec);
        self.in_flight.spawn(async move {
            let deadline = tokio::time::Instant::now() + LINGER;
            if let Some(linger) = write_rest(stream, &bytes[sent..], deadline, permit).await {
                tap.record_lingering(ip, kind, answer, state, hap.as_deref(), linger);
            }
        });
    }
}

/// The answer to a request head: bytes, what is counted, and the state it stood for (None
/// for 400/431). None when the service is gone from the snapshot.
fn respond(head: Head, replies: Option<&Replies>) -> Option<(Arc<[u8]>, Answer, Option<State>)> {
    Some(match head {
        Head::Request { head_only } => {
            let r = replies?;
            let bytes = if head_only { &r.head } else { &r.full };
            (bytes.clone(), Answer::Http(r.status), Some(r.state))
        }
        Head::Garbage => (static_reply(400, "Bad Request"), Answer::Http(400), None),
        Head::TooLarge => (
            static_reply(431, "Request Header Fields Too Large"),
            Answer::Http(431),
            None,
        ),
        Head::Partial => unreachable!("answered once complete"),
    })
}

fn current(snap: &watch::Receiver<Arc<Snapshot>>, service: &str) -> Option<Replies> {
    snap.borrow()
        .services
        .get(service)
        .map(|v| v.replies.clone())
}

/// Writes what is left of an answer (never nothing: [`Shared::finish`] comes here only when
/// the socket took part of it) through tokio, by `deadline`; half-closes, and returns the
/// connection for the observer to watch for the prober's close.
async fn write_rest(
    stream: StdStream,
    rest: &[u8],
    deadline: tokio::time::Instant,
    permit: OwnedSemaphorePermit,
) -> Option<Linger> {
    stream.set_nonblocking(true).ok()?;
    let mut stream = TcpStream::from_std(stream).ok()?;
    match tokio::time::timeout_at(deadline, stream.write_all(rest)).await {
        Ok(Ok(())) => {}
        _ => return None,
    }
    let stream = stream.into_std().ok()?;
    let _ = stream.shutdown(Shutdown::Write);
    Some(Linger::new(stream, Some(permit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Segments the socket sent (TCP_INFO's tcpi_segs_out; nix has no wrapper for it).
    #[allow(unsafe_code)]
    fn segments_sent(s: &StdStream) -> u32 {
        // SAFETY: tcp_info is plain integers; all zeroes is a valid value.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: a valid descriptor, and a buffer of the length passed.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
        info.tcpi_segs_out
    }

    #[test]
    fn the_answer_and_the_fin_leave_in_one_segment() {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut prober = StdStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let before = segments_sent(&s);
        let answer = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(write_now(&s, answer), answer.len());
        s.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        prober.read_to_end(&mut got).unwrap();
        assert_eq!(got, answer);
        assert_eq!(
            segments_sent(&s) - before,
            1,
            "answer and FIN in separate segments"
        );
    }

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
