//! Ports for tests, reserved so that parallel test processes never share one. Included by
//! the integration tests (tests/it/main.rs) and, by path, by the engine's unit tests in src/,
//! which bind probe ports too.

use std::sync::Mutex;

/// Where test processes reserve ports: one lock file per port, locked while the process lives.
const PORT_LOCKS: &str = "psentinel-test-ports";
/// The lowest port handed out; the highest is below the kernel's ephemeral range.
const PORT_LOW: u16 = 10_000;

/// A TCP port reserved for this test process: free on every address (the daemon binds all of
/// them by default), outside the kernel's ephemeral range (so no outgoing connection takes it
/// meanwhile), and locked (`flock` on a file per port in the temp dir, held until the process
/// exits) so that no other test process, of this suite or of another checkout, is handed the
/// same port between our check and the daemon's bind. Tests run in parallel as separate
/// processes (nextest) or threads (cargo test): the lock covers both.
pub fn free_port() -> u16 {
    use nix::fcntl::{Flock, FlockArg};
    use std::os::unix::fs::PermissionsExt;
    static HELD: Mutex<Vec<Flock<std::fs::File>>> = Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join(PORT_LOCKS);
    if std::fs::create_dir(&dir).is_ok() {
        // Shared by every user who runs the tests.
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
    }
    let high = ephemeral_low();
    let range = u32::from(high - PORT_LOW);
    // Processes start at different places, so they rarely contend for the same locks.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let start = (std::process::id().wrapping_mul(7919) ^ nanos) % range;
    let mut held = HELD.lock().unwrap();
    for i in 0..range {
        let port = PORT_LOW + ((start + i) % range) as u16;
        let file = dir.join(port.to_string());
        // Read access is enough to lock; a file another user created is only readable.
        let Ok(f) = std::fs::File::open(&file).or_else(|_| {
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
            held.push(lock);
            return port;
        }
    }
    panic!("no free port in {PORT_LOW}..{high}");
}

/// The low end of the kernel's ephemeral port range (32768 by default).
fn ephemeral_low() -> u16 {
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

#[test]
fn free_ports_are_reserved_outside_the_ephemeral_range() {
    use nix::fcntl::{Flock, FlockArg};
    let (a, b) = (free_port(), free_port());
    assert_ne!(a, b);
    for p in [a, b] {
        assert!((PORT_LOW..ephemeral_low()).contains(&p), "{p}");
        // Another process (another open file description) cannot take the reservation.
        let f =
            std::fs::File::open(std::env::temp_dir().join(PORT_LOCKS).join(p.to_string())).unwrap();
        assert!(
            Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err(),
            "{p} not held"
        );
    }
}
