//! The prober: HAProxy-style checks, a new TCP connection per probe, from blocking threads.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `option httpchk` with no arguments: `OPTIONS / HTTP/1.0`.
    Options,
    /// `option httpchk GET /health` + `http-check send ver HTTP/1.1 hdr Connection close`.
    Get,
}

impl Kind {
    pub fn request(self) -> &'static [u8] {
        match self {
            Kind::Options => b"OPTIONS / HTTP/1.0\r\n\r\n",
            Kind::Get => b"GET /health HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Options => "OPTIONS / HTTP/1.0",
            Kind::Get => "GET /health HTTP/1.1",
        }
    }
}

/// One probe: connect, send, read to EOF; Ok(latency) when the answer was a 200.
pub fn probe(addr: SocketAddr, kind: Kind) -> Result<Duration, String> {
    probe_expecting(addr, kind, b"200")
}

/// Like [`probe`], accepting any HTTP status (a service still starting answers 503).
pub fn probe_any(addr: SocketAddr, kind: Kind) -> Result<Duration, String> {
    probe_expecting(addr, kind, b"")
}

fn probe_expecting(addr: SocketAddr, kind: Kind, status: &[u8]) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(kind.request())
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut buf = [0u8; 512];
    let mut got = 0;
    loop {
        match s.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got = (got + n).min(buf.len() - 1),
            Err(e) => return Err(format!("read from {addr}: {e}")),
        }
    }
    let dt = t0.elapsed();
    let head = &buf[..got];
    if head.starts_with(b"HTTP/1.") && head.get(9..).is_some_and(|h| h.starts_with(status)) {
        Ok(dt)
    } else {
        Err(format!(
            "{addr} answered {:?}",
            String::from_utf8_lossy(&head[..got.min(40)])
        ))
    }
}

/// What one timed run produced.
#[derive(Default, Debug)]
pub struct Run {
    pub probes: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

/// `concurrency` threads probing back to back for `secs`.
pub fn drive(addr: SocketAddr, kind: Kind, concurrency: usize, dur: Duration) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut r = Run::default();
                while !stop.load(Ordering::Relaxed) {
                    match probe(addr, kind) {
                        Ok(dt) => {
                            r.probes += 1;
                            r.latencies.push(dt);
                        }
                        Err(e) => {
                            r.errors += 1;
                            r.first_error.get_or_insert(e);
                        }
                    }
                }
                r
            })
        })
        .collect();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    let mut total = Run::default();
    for w in workers {
        let r = w.join().expect("probe thread");
        total.probes += r.probes;
        total.errors += r.errors;
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
        total.latencies.extend(r.latencies);
    }
    total.elapsed = t0.elapsed();
    total
}

/// Probes until one answers 200 or `deadline` passes.
pub fn wait_answering(addr: SocketAddr, deadline: Duration) -> Result<(), String> {
    let end = Instant::now() + deadline;
    loop {
        match probe(addr, Kind::Options) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > end => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
