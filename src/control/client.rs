//! `psentinel -c COMMAND [ARG...]`: sends one request, prints the answer, exits with its code.

use super::proto::{Code, Command, COMMANDS, PROGRESS};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Runs one command; returns the exit status (0 done, 1 refused or unreachable, 2 usage,
/// 3 `test`: the check failed).
pub fn run(socket: &Path, words: &[String]) -> u8 {
    // The daemon's own parser, run here first: a typo is a usage error before anything is
    // sent, also when no daemon runs. Commands this client does not know go as they are.
    if words
        .first()
        .is_some_and(|name| COMMANDS.iter().any(|(n, _, _)| n == name))
    {
        if let Err(e) = Command::parse(words) {
            eprintln!("psentinel: {e}");
            return Code::Usage as u8;
        }
    }
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "the socket does not exist: is the daemon running? (systemctl status psentinel)"
                }
                std::io::ErrorKind::ConnectionRefused => {
                    "nothing listens on it: the daemon is not running (stale socket file)"
                }
                std::io::ErrorKind::PermissionDenied => {
                    "permission denied on the socket or its directory"
                }
                _ => "is the daemon running, and is sock_file (or --socket) right?",
            };
            eprintln!(
                "psentinel: cannot reach the daemon on {}: {e}; {hint}",
                socket.display()
            );
            return 1;
        }
    };
    let line = match shlex::try_join(words.iter().map(String::as_str)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("psentinel: cannot send this command: {e}");
            return 2;
        }
    };
    if let Err(e) = stream.write_all(format!("{line}\n").as_bytes()) {
        eprintln!("psentinel: cannot send to {}: {e}", socket.display());
        return 1;
    }
    // Progress lines (`--wait`) come first, as they happen: shown on stderr at once.
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut status = String::new();
    loop {
        status.clear();
        if let Err(e) = reader.read_line(&mut status) {
            eprintln!("psentinel: no answer from {}: {e}", socket.display());
            return 1;
        }
        match status.strip_prefix(PROGRESS) {
            Some(p) => eprint!("{p}"),
            None => break,
        }
    }
    let status = status.trim_end_matches('\n');
    let Some(code) = Code::from_status_line(status) else {
        eprintln!(
            "psentinel: unexpected answer from {}: {status:?}",
            socket.display()
        );
        return 1;
    };
    // Copied as it comes: `status` of thousands of services is megabytes, sent in chunks.
    let copied = if matches!(code, Code::Ok | Code::Failed) {
        copy(&mut reader, &mut std::io::stdout().lock())
    } else {
        eprint!("psentinel: ");
        copy(&mut reader, &mut std::io::stderr().lock())
    };
    match copied {
        Ok(()) => {}
        Err(Copy::Read(e)) => {
            eprintln!("\npsentinel: no answer from {}: {e}", socket.display());
            return 1;
        }
        Err(Copy::Write(e)) => {
            eprintln!("psentinel: cannot write the answer: {e}");
            return 1;
        }
    }
    code as u8
}

/// Which side of [`copy`] failed.
enum Copy {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// The rest of the answer, from the socket to `out`.
fn copy(from: &mut impl BufRead, out: &mut impl Write) -> Result<(), Copy> {
    loop {
        let n = {
            let buf = match from.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Copy::Read(e)),
            };
            if buf.is_empty() {
                return out.flush().map_err(Copy::Write);
            }
            out.write_all(buf).map_err(Copy::Write)?;
            buf.len()
        };
        from.consume(n);
    }
}
