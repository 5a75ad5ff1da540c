//! Probe connections whose request has not (all) arrived yet: one waiting room per port, open
//! while somebody waits in it.
//!
//! HAProxy sends its request with the connection, so the accept loop answers it at once
//! ([`crate::probe`]); the rest wait here until their head is complete, [`HEAD_DEADLINE`]
//! after they were accepted, whichever comes first. A waiting connection costs an entry in
//! this room (its socket, its peer, its deadline, its place under the port's cap, and a head
//! buffer only once it sent part of one) and an entry in the room's own epoll set: no task, no
//! timer and no registration with tokio's reactor each. The accept loop watches the room
//! with one reactor registration (the epoll descriptor) and one timer (the earliest
//! deadline), so 5,000 idle clients cost a few hundred bytes each instead of a task each.
//!
//! The room's epoll set is level-triggered: a connection stays ready until its bytes are
//! read, so nothing is lost between the reactor's edge-triggered wake-up of the room and the
//! reads.

use crate::probe::{parse_head, read_now, Got, Head, CHUNK, HEAD_DEADLINE};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// A connection waiting for its request.
pub struct Waiter {
    pub stream: TcpStream,
    pub ip: IpAddr,
    /// What it sent so far; empty (no allocation) while it sent nothing.
    pub buf: Vec<u8>,
    deadline: Instant,
    pub permit: OwnedSemaphorePermit,
}

impl Waiter {
    /// Accepted now: its request is due within [`HEAD_DEADLINE`].
    pub fn new(
        stream: TcpStream,
        ip: IpAddr,
        buf: Vec<u8>,
        permit: OwnedSemaphorePermit,
    ) -> Waiter {
        Waiter {
            stream,
            ip,
            buf,
            deadline: Instant::now() + HEAD_DEADLINE,
            permit,
        }
    }
}

/// The room's epoll descriptor, as tokio's reactor sees it.
struct EpollFd(Epoll);

impl AsRawFd for EpollFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0 .0.as_raw_fd()
    }
}

/// Events taken from the room's epoll set per call.
const EVENTS: usize = 64;

pub struct Room {
    epoll: AsyncFd<EpollFd>,
    waiting: HashMap<RawFd, Waiter>,
    /// (deadline, descriptor) in the order accepted, so in deadline order. An entry whose
    /// connection was answered meanwhile (or whose descriptor now belongs to a later
    /// connection, with a later deadline) is skipped when it comes up.
    order: VecDeque<(Instant, RawFd)>,
}

impl Room {
    pub fn new() -> std::io::Result<Room> {
        let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        // Deprecated because a borrowed descriptor could be closed under the registration;
        // this AsyncFd owns the epoll descriptor, so it cannot (as for [`crate::probe::Port`]).
        #[allow(deprecated)]
        let epoll = AsyncFd::with_interest(EpollFd(ep), Interest::READABLE)?;
        Ok(Room {
            epoll,
            waiting: HashMap::new(),
            order: VecDeque::new(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Takes a connection in. Its socket must be non-blocking-safe to read with
    /// `MSG_DONTWAIT` (any socket is). When the kernel refuses it a place in the set (out of
    /// memory), it is closed unanswered, as a connection past the deadline is.
    pub fn admit(&mut self, w: Waiter) {
        let fd = w.stream.as_raw_fd();
        let ev = EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP, fd as u64);
        if let Err(e) = self.epoll.get_ref().0.add(w.stream.as_fd(), ev) {
            tracing::warn!("cannot watch a probe connection for its request: {e}");
            return;
        }
        self.order.push_back((w.deadline, fd));
        self.waiting.insert(fd, w);
    }

    /// The earliest deadline to wake up for.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|(at, _)| *at)
    }

    /// Closes, unanswered, every connection whose deadline has passed.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(at, fd)) = self.order.front() {
            if at > now {
                break;
            }
            self.order.pop_front();
            if self.waiting.get(&fd).is_some_and(|w| w.deadline == at) {
                self.remove(fd); // closed: an incomplete request gets no answer
            }
        }
        if self.waiting.is_empty() {
            self.order.clear();
        }
    }

    fn remove(&mut self, fd: RawFd) -> Option<Waiter> {
        let w = self.waiting.remove(&fd)?;
        let _ = self.epoll.get_ref().0.delete(w.stream.as_fd());
        Some(w)
    }

    /// Waits until a waiting connection has something to read (bytes, a close or an error).
    pub async fn readable(&self) {
        loop {
            let Ok(mut guard) = self.epoll.readable().await else {
                return std::future::pending().await;
            };
            // A look without taking: level-triggered entries stay ready until read.
            let mut one = [EpollEvent::empty()];
            match self.epoll.get_ref().0.wait(&mut one, EpollTimeout::ZERO) {
                Ok(n) if n > 0 => return,
                _ => guard.clear_ready(),
            }
        }
    }

    /// Reads every ready connection; those whose head is complete (or not HTTP, or too long,
    /// or cut short by the client's close) leave the room into `done` with what it is;
    /// those that failed are closed.
    pub fn take_ready(&mut self, done: &mut Vec<(Waiter, Head)>) {
        let mut events = [EpollEvent::empty(); EVENTS];
        loop {
            let n = match self.epoll.get_ref().0.wait(&mut events, EpollTimeout::ZERO) {
                Ok(n) => n,
                Err(_) => return,
            };
            for ev in &events[..n] {
                let fd = ev.data() as RawFd;
                match self.read(fd) {
                    Step::Wait => {}
                    Step::Done(head) => {
                        if let Some(w) = self.remove(fd) {
                            done.push((w, head));
                        }
                    }
                    Step::Failed => {
                        self.remove(fd);
                    }
                }
            }
            if n < EVENTS {
                return;
            }
        }
    }

    /// Reads what one connection sent, until the kernel has no more or the head is whole.
    fn read(&mut self, fd: RawFd) -> Step {
        let Some(w) = self.waiting.get_mut(&fd) else {
            return Step::Failed;
        };
        loop {
            // On the stack, never kept: a waiting connection holds only what it sent.
            let mut chunk = [0u8; CHUNK];
            match read_now(&w.stream, &mut chunk) {
                Got::Bytes(n) => {
                    w.buf.extend_from_slice(&chunk[..n]);
                    match parse_head(&w.buf, false) {
                        Head::Partial => {}
                        head => return Step::Done(head),
                    }
                }
                Got::Eof => return Step::Done(parse_head(&w.buf, true)),
                Got::Nothing => return Step::Wait,
                Got::Failed => return Step::Failed,
            }
        }
    }
}

enum Step {
    Wait,
    Done(Head),
    Failed,
}

impl AsFd for EpollFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0 .0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::Semaphore;

    /// A connected pair: (client, the server's end in a waiter).
    fn pair(cap: &Arc<Semaphore>) -> (TcpStream, Waiter) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, peer) = l.accept().unwrap();
        let permit = cap.clone().try_acquire_owned().unwrap();
        (client, Waiter::new(server, peer.ip(), Vec::new(), permit))
    }

    /// Waits (bounded) for the room to see what the clients did.
    async fn settle(room: &mut Room, done: &mut Vec<(Waiter, Head)>, want: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while done.len() < want {
                room.readable().await;
                room.take_ready(done);
            }
        })
        .await
        .expect("the room saw the requests");
    }

    #[tokio::test]
    async fn a_head_in_parts_leaves_the_room_whole_and_silence_expires() {
        let cap = Arc::new(Semaphore::new(3));
        let mut room = Room::new().unwrap();
        let (mut slow, w) = pair(&cap);
        room.admit(w);
        let (silent, w) = pair(&cap);
        room.admit(w);
        let (mut garbage, w) = pair(&cap);
        room.admit(w);
        assert_eq!(
            cap.available_permits(),
            0,
            "each waiter keeps its place under the cap"
        );

        let mut done = Vec::new();
        slow.write_all(b"GET /health HTTP/1.1\r\nHo").unwrap();
        garbage.write_all(b"\x16\x03\x01\x02\x00").unwrap();
        settle(&mut room, &mut done, 1).await;
        assert!(matches!(done[0].1, Head::Garbage), "known at once");
        slow.write_all(b"st: x\r\n\r\n").unwrap();
        settle(&mut room, &mut done, 2).await;
        assert_eq!(done[1].1, Head::Request { head_only: false });
        assert_eq!(done[1].0.buf, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        done.clear();
        assert_eq!(cap.available_permits(), 2);

        // The silent one is closed, unanswered, once its deadline passed; not before.
        room.expire(Instant::now());
        assert!(!room.is_empty() && room.next_deadline().is_some());
        room.expire(Instant::now() + HEAD_DEADLINE);
        assert!(room.is_empty() && room.next_deadline().is_none());
        assert_eq!(cap.available_permits(), 3);
        let mut buf = [0u8; 16];
        silent
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(std::io::Read::read(&mut &silent, &mut buf).unwrap(), 0);
    }
}
