//! `psentinel -c COMMAND [ARG...]`: sends one request, prints the answer, exits with its code.

use super::proto::{Code, Command, COMMANDS, PROGRESS};
use std::io::{BufRead, BufReader, Read, Write};
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
    let mut reader = BufReader::new(stream);
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
    let mut reply = Vec::new();
    if let Err(e) = reader.read_to_end(&mut reply) {
        eprintln!("psentinel: no answer from {}: {e}", socket.display());
        return 1;
    }
    let body = String::from_utf8_lossy(&reply);
    let status = status.trim_end_matches('\n');
    let Some(code) = Code::from_status_line(status) else {
        eprintln!(
            "psentinel: unexpected answer from {}: {status:?}",
            socket.display()
        );
        return 1;
    };
    if matches!(code, Code::Ok | Code::Failed) {
        print!("{body}");
    } else {
        eprint!("psentinel: {body}");
    }
    let _ = std::io::stdout().flush();
    code as u8
}
