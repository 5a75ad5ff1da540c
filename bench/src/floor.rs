//! The floor: the least work a tokio server can do to answer a probe. It reads once (so that
//! closing does not turn into a reset over unread bytes), writes a fixed `HTTP/1.0 200` and
//! closes. No parsing, no state, no deadline: whatever psentinel spends above this is the
//! price of being correct and robust.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REPLY: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";

pub fn run(port: u16) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            let (mut s, _) = tokio::select! {
                // A clean exit on SIGTERM, so that callgrind writes its totals.
                _ = term.recv() => return Ok(()),
                r = listener.accept() => r?,
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                if s.read(&mut buf).await.is_ok() {
                    let _ = s.write_all(REPLY).await;
                }
            });
        }
    })
}
