//! An answered probe connection, waiting for the prober to close it.
//!
//! The prober's close after our answer is how psentinel knows the answer was read (HAProxy
//! reads, updates the server, then closes): `--wait` and the prober table count only those.
//! Waiting for it in the responder would cost each probe a task, a timer and a reactor
//! registration; instead the responder writes the answer, half-closes, and hands the socket
//! to the observer ([`crate::observer`]) inside the probe's record. The observer looks at
//! it lazily, with a non-blocking read: 5 ms after the answer, then every 20 ms until the
//! close, which is thus seen at most 20 ms late, as it was when the responder waited.
//!
//! Until it is seen, the socket stays open (up to [`LINGER`] after the answer): closing it
//! with unread request bytes would turn our close into a reset that can destroy the answer in
//! flight; what the prober sends meanwhile is read and discarded (at most [`MAX_DRAIN`]).
//! The connection keeps its place under the port's connection cap until then.

use crate::probe::{read_now, Got};
use std::net::TcpStream;
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
    /// The prober's close was read: nothing more can arrive.
    ended: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Linger {
    /// `stream` has had the whole answer written and its write side shut down.
    pub fn new(stream: TcpStream, permit: Option<OwnedSemaphorePermit>) -> Linger {
        Linger {
            stream,
            until: Instant::now() + LINGER,
            drained: 0,
            ended: false,
            _permit: permit,
        }
    }

    /// Some(true): the prober closed (FIN or reset), so it read the answer. Some(false): it
    /// did not within [`LINGER`] (or kept sending); stop waiting. None: not yet.
    pub fn closed(&mut self, now: Instant) -> Option<bool> {
        self.drain();
        if self.ended {
            Some(true)
        } else if self.drained >= MAX_DRAIN {
            Some(false)
        } else {
            (now >= self.until).then_some(false)
        }
    }

    /// Reads and discards what the prober sent (up to [`MAX_DRAIN`] in all) until nothing is
    /// left to read now; `ended` once its close (or an error) is read.
    fn drain(&mut self) {
        while !self.ended && self.drained < MAX_DRAIN {
            // On the stack, never kept: a lingering connection holds no buffer.
            let mut sink = [0u8; 1024];
            match read_now(&self.stream, &mut sink) {
                Got::Bytes(n) => self.drained += n,
                Got::Eof | Got::Failed => self.ended = true,
                Got::Nothing => return,
            }
        }
    }
}

impl Drop for Linger {
    /// Reads what the prober sent and we have not read before the socket closes: Linux
    /// answers a close with unread bytes by a reset, which the prober sees as an error after
    /// (or instead of) our answer.
    fn drop(&mut self) {
        self.drain();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{Shutdown, TcpListener};

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        (client, server)
    }

    /// Waits (bounded) for the kernel to deliver what the client did.
    fn settle(l: &mut Linger, now: Instant) -> Option<bool> {
        for _ in 0..200 {
            if let Some(v) = l.closed(now) {
                return Some(v);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    #[test]
    fn a_close_is_an_answer_read_and_silence_is_not() {
        // The prober reads and closes: seen as read.
        let (client, server) = pair();
        server.shutdown(Shutdown::Write).unwrap();
        let mut l = Linger::new(server, None);
        assert_eq!(l.closed(Instant::now()), None, "still open");
        drop(client);
        assert_eq!(settle(&mut l, Instant::now()), Some(true));

        // Bytes after the answer are read and discarded; they are not a close.
        let (mut client, server) = pair();
        let mut l = Linger::new(server, None);
        client.write_all(b"more").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(l.closed(Instant::now()), None);
        // Past the linger time without a close: not read; the connection is let go.
        assert_eq!(l.closed(Instant::now() + LINGER), Some(false));

        // A prober that keeps sending is given up on after MAX_DRAIN bytes.
        let (mut client, server) = pair();
        let mut l = Linger::new(server, None);
        let writer = std::thread::spawn(move || {
            let chunk = [b'x'; 4096];
            let mut sent = 0;
            while sent <= MAX_DRAIN {
                sent += client.write(&chunk).unwrap();
            }
            client
        });
        let now = Instant::now();
        let mut got = None;
        for _ in 0..400 {
            got = l.closed(now);
            if got.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(got, Some(false));
        drop(writer.join().unwrap());
    }
}
