//! Ports for tests, reserved so that parallel test processes never share one. Included by
//! the integration tests (tests/it/main.rs) and, by path, by the engine's unit tests in src/,
//! which bind probe ports too.

#[path = "port_locks.rs"]
mod port_locks;

use nix::fcntl::Flock;
use port_locks::{ephemeral_low, lock_file, reserve, PORT_LOW};
use std::sync::Mutex;

/// A TCP port reserved for this test process ([`port_locks`]): free on every address (the
/// daemon binds all of them by default), outside the kernel's ephemeral range, and locked until
/// the process exits, so that no other test process, of this suite or of another checkout, is
/// handed the same port between our check and the daemon's bind. Tests run in parallel as
/// separate processes (nextest) or threads (cargo test): the lock covers both.
pub fn free_port() -> u16 {
    static HELD: Mutex<Vec<Flock<std::fs::File>>> = Mutex::new(Vec::new());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let seed = std::process::id().wrapping_mul(7919) ^ nanos;
    let mut held = HELD.lock().unwrap();
    let Some((port, lock)) = reserve(1, seed).pop() else {
        panic!("no free port in {PORT_LOW}..{}", ephemeral_low());
    };
    held.push(lock);
    port
}

#[test]
fn free_ports_are_reserved_outside_the_ephemeral_range() {
    use nix::fcntl::FlockArg;
    let (a, b) = (free_port(), free_port());
    assert_ne!(a, b);
    for p in [a, b] {
        assert!((PORT_LOW..ephemeral_low()).contains(&p), "{p}");
        // Another process (another open file description) cannot take the reservation.
        let f = std::fs::File::open(lock_file(p)).unwrap();
        assert!(
            Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err(),
            "{p} not held"
        );
    }
}
