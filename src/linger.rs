//! An answered probe connection, waiting for the prober to close it.
//!
//! The prober's close after our answer is how psentinel knows the answer was read (HAProxy
//! reads, updates the server, then closes): `--wait` and the prober table count only those.
//! Waiting for it in the responder would cost each probe a task, a timer and a reactor
//! registration; instead the responder writes the answer, half-closes, and hands the socket
//! to the observer ([`crate::observer`]) inside the probe's record. The observer looks at
//! it lazily, with a non-blocking read each time it wakes (at most every 20 ms while probes
//! come): the close is seen at most that much later, as it was when the responder waited.
//!
//! Until it is seen, the socket stays open (up to [`LINGER`] after the answer): closing it
//! with unread request bytes would turn our close into a reset that can destroy the answer in
//! flight; what the prober sends meanwhile is read and discarded (at most [`MAX_DRAIN`]).
//! The connection keeps its place under the port's connection cap until then.

use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// How long after the answer we wait for the prober's close.
pub const LINGER: Duration = Duration::from_secs(1);
/// Bytes read and discarded after the answer before we stop waiting for the close.
pub const MAX_DRAIN: usize = 65_536;

/// An answered connection; closed when dropped.
pub struct Linger {
    stream: TcpStream,
    until: Instant,
    drained: usize,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Linger {
    /// `stream` has had the whole answer written and its write side shut down.
    pub fn new(stream: TcpStream, permit: Option<OwnedSemaphorePermit>) -> Linger {
        Linger {
            stream,
            until: Instant::now() + LINGER,
            drained: 0,
            _permit: permit,
        }
    }

    /// Some(true): the prober closed (FIN or reset), so it read the answer. Some(false): it
    /// did not within [`LINGER`] (or kept sending); stop waiting. None: not yet.
    pub fn closed(&mut self, now: Instant) -> Option<bool> {
        loop {
            // On the stack, never kept: a lingering connection holds no buffer.
            let mut sink = [0u8; 1024];
            match recv(self.stream.as_raw_fd(), &mut sink, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return Some(true),
                Ok(n) => {
                    self.drained += n;
                    if self.drained >= MAX_DRAIN {
                        return Some(false);
                    }
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return (now >= self.until).then_some(false),
                Err(_) => return Some(true),
            }
        }
    }
}
