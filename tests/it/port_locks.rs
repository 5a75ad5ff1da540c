//! Reserving TCP ports against every other process of the tests and the bench: a lock file per
//! port in the temp dir (`flock`, held as long as the lock lives), ports below the kernel's
//! ephemeral range (so that no outgoing connection takes one between our choice and the
//! daemon's bind) and free on every address. Included by path by tests/it/ports.rs (one port
//! at a time, held until the test process exits) and bench/src/ports.rs (a thousand at once,
//! released after each run).

use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::PathBuf;

/// Where the locks are.
const PORT_LOCKS: &str = "psentinel-test-ports";
/// The lowest port handed out; the highest is below the kernel's ephemeral range.
pub const PORT_LOW: u16 = 10_000;

/// `n` distinct ports, each with its lock. Processes start looking at different places
/// (`seed`), so they rarely contend for the same locks. Fewer than `n` when the range has no
/// more.
pub fn reserve(n: usize, seed: u32) -> Vec<(u16, Flock<File>)> {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(PORT_LOCKS);
    if std::fs::create_dir(&dir).is_ok() {
        // Shared by every user who runs the tests.
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
    }
    let range = u32::from(ephemeral_low() - PORT_LOW);
    let mut got = Vec::with_capacity(n);
    for i in 0..range {
        if got.len() == n {
            break;
        }
        let port = PORT_LOW + ((seed % range + i) % range) as u16;
        let file = lock_file(port);
        // Read access is enough to lock; a file another user created is only readable.
        let Ok(f) = File::open(&file).or_else(|_| {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&file)
        }) else {
            continue;
        };
        let Ok(lock) = Flock::lock(f, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        if bindable_everywhere(port) {
            got.push((port, lock));
        }
    }
    got
}

/// The lock file of `port`.
pub fn lock_file(port: u16) -> PathBuf {
    std::env::temp_dir().join(PORT_LOCKS).join(port.to_string())
}

/// The low end of the kernel's ephemeral port range (32768 by default).
pub fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .filter(|&low| low > PORT_LOW + 1000)
        .unwrap_or(32768)
}

/// Nothing listens on `port` on any address: `[::]` (dual-stack: conflicts with any IPv4 or
/// IPv6 listener; an error other than "in use" means no IPv6 here), then `0.0.0.0` (covers a
/// host without IPv6 or with `bindv6only`).
fn bindable_everywhere(port: u16) -> bool {
    match std::net::TcpListener::bind(("::", port)) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return false,
        _ => {}
    }
    std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
}
