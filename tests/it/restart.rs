//! Restarts under probes, on the host: the daemon is stopped (SIGTERM) and started again
//! while probers keep coming, with its probe sockets handed over the way systemd's socket
//! unit does, so that probes arriving meanwhile wait in the backlog for the next process.
//! Every probe must get its whole answer and a clean close: no refusal, no empty reply, no
//! reset (HAProxy counts a reset after the answer as a failed check).

use crate::support::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a prober behaves; each kind stresses another part of the hand-over.
#[derive(Clone, Copy, Debug)]
enum Prober {
    /// HAProxy's usual probe: the request with the connection, then read to the close.
    Http,
    /// A request whose head comes after a pause (answered by a responder that waits for it).
    Slow,
    /// `http-check send meth POST body ...`: the body comes after the head, so after the
    /// answer may already be written; its bytes must not turn our close into a reset.
    Body,
    /// HAProxy `agent-check`: reads without sending.
    Agent,
}

/// One probe: Ok(the answer's first line) after a clean close, Err(what went wrong).
fn probe_once(kind: Prober, port: u16, agent_port: u16) -> Result<String, String> {
    let target = if matches!(kind, Prober::Agent) {
        agent_port
    } else {
        port
    };
    let mut s = TcpStream::connect(("127.0.0.1", target)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let pause = || std::thread::sleep(Duration::from_millis(15));
    let send = |s: &mut TcpStream, b: &[u8]| s.write_all(b).map_err(|e| format!("send: {e}"));
    match kind {
        Prober::Http => send(&mut s, b"OPTIONS * HTTP/1.0\r\n\r\n")?,
        Prober::Slow => {
            pause();
            send(&mut s, b"OPTIONS * HTTP/1.0\r\n\r\n")?;
        }
        Prober::Body => {
            send(
                &mut s,
                b"POST /health HTTP/1.0\r\nContent-Length: 4\r\n\r\n",
            )?;
            pause();
            send(&mut s, b"ping")?;
            pause();
        }
        Prober::Agent => {}
    }
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) if got.is_empty() => Err("empty reply".into()),
        Ok(_) => Ok(String::from_utf8_lossy(&got)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Err(format!(
            "reset after {} bytes{}",
            got.len(),
            if got.is_empty() { "" } else { " of answer" }
        )),
        Err(e) => Err(format!("read: {e}")),
    }
}

type Outcome = (Prober, Result<String, String>);

#[test]
fn restarts_under_probes_lose_no_answer() {
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let agent = TcpListener::bind("127.0.0.1:0").unwrap();
    let (port, agent_port) = (
        http.local_addr().unwrap().port(),
        agent.local_addr().unwrap().port(),
    );
    let mut d = Daemon::prepare(&format!(
        "[app]\nport = {port}\nagent_port = {agent_port}\nbind = 127.0.0.1\n"
    ));
    d.spawn_activated(&[&http, &agent]);
    d.notify.lines.wait("READY=1");

    let stop = Arc::new(AtomicBool::new(false));
    // Every probe: its kind, and its answer's first line or what went wrong.
    let tally: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let kinds = [
        Prober::Http,
        Prober::Http,
        Prober::Slow,
        Prober::Body,
        Prober::Body,
        Prober::Agent,
    ];
    let threads: Vec<_> = kinds
        .iter()
        .map(|&kind| {
            let (stop, tally) = (stop.clone(), tally.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = probe_once(kind, port, agent_port);
                    tally.lock().unwrap().push((kind, r));
                }
            })
        })
        .collect();

    const RESTARTS: usize = 12;
    for _ in 0..RESTARTS {
        // Let probes flow, then stop in the middle of them and start the next process.
        let before = tally.lock().unwrap().len();
        eventually("probes between restarts", DEADLINE, || {
            (tally.lock().unwrap().len() >= before + 12).then_some(())
        });
        let status = d.stop();
        assert!(status.success(), "the daemon stopped with {status}");
        let ready = d.notify.lines.len();
        d.spawn_activated(&[&http, &agent]);
        d.notify.lines.wait_from(ready, "READY=1", DEADLINE);
    }
    let before = tally.lock().unwrap().len();
    eventually("probes after the last restart", DEADLINE, || {
        (tally.lock().unwrap().len() >= before + 12).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    d.stop();

    let tally = tally.lock().unwrap();
    let failed: Vec<String> = tally
        .iter()
        .filter_map(|(k, r)| r.as_ref().err().map(|e| format!("{k:?}: {e}")))
        .collect();
    let wrong: Vec<String> = tally
        .iter()
        .filter_map(|(k, r)| {
            let line = r.as_ref().ok()?;
            let want = match k {
                Prober::Agent => "up ready",
                _ => "HTTP/1.0 200",
            };
            (!line.starts_with(want)).then(|| format!("{k:?}: {line}"))
        })
        .collect();
    eprintln!(
        "{RESTARTS} restarts under probes: {} probes, {} failed",
        tally.len(),
        failed.len()
    );
    assert!(
        failed.is_empty() && wrong.is_empty(),
        "{} of {} probes lost across {RESTARTS} restarts: {:?} {:?}",
        failed.len(),
        tally.len(),
        &failed[..failed.len().min(20)],
        &wrong[..wrong.len().min(20)]
    );
}
