//! Ports for the daemons the bench starts with many services, reserved the way the tests
//! reserve theirs (tests/it/ports.rs): below the kernel's ephemeral range, so that no outgoing
//! connection (the bench's own probes, another program's) takes one between our choice and
//! the daemon's bind, and locked (`flock` on a file per port in the same directory as the
//! tests use), so that a test run at the same time is not handed the same port.
//!
//! Ports taken from `:0` came from the ephemeral range: back-to-back scale runs now and then
//! failed with "port N never answered" (a probe's own source port had taken it first).

use std::fs::File;
use std::os::fd::AsRawFd;

/// The tests' lock directory and lowest port (tests/it/ports.rs).
const PORT_LOCKS: &str = "psentinel-test-ports";
const PORT_LOW: u16 = 10_000;

/// Ports held for as long as this lives (the locks go with it).
pub struct Reserved {
    pub ports: Vec<u16>,
    _locks: Vec<File>,
}

/// `n` distinct ports, free on every address and locked against parallel test processes.
pub fn reserve(n: usize) -> Reserved {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(PORT_LOCKS);
    if std::fs::create_dir(&dir).is_ok() {
        // Shared by every user who runs the tests.
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
    }
    let high = ephemeral_low();
    let range = u32::from(high - PORT_LOW);
    // Different runs start at different places, so they rarely contend for the same locks.
    let start = std::process::id().wrapping_mul(7919) % range;
    let (mut ports, mut locks) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..range {
        if ports.len() == n {
            break;
        }
        let port = PORT_LOW + ((start + i) % range) as u16;
        let file = dir.join(port.to_string());
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
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        if bindable_everywhere(port) {
            ports.push(port);
            locks.push(f);
        }
    }
    assert_eq!(
        ports.len(),
        n,
        "only {} free ports in {PORT_LOW}..{high}, {n} wanted",
        ports.len()
    );
    Reserved {
        ports,
        _locks: locks,
    }
}

/// The low end of the kernel's ephemeral port range (32768 by default).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .filter(|&low| low > PORT_LOW + 1000)
        .unwrap_or(32768)
}

/// Nothing listens on `port` on any address (as the tests check it).
fn bindable_everywhere(port: u16) -> bool {
    match std::net::TcpListener::bind(("::", port)) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return false,
        _ => {}
    }
    std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
}
