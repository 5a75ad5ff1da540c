//! Ports for the daemons the bench starts with many services, reserved the way the tests
//! reserve theirs (the shared tests/it/port_locks.rs): below the kernel's ephemeral range and
//! locked against a test run at the same time.
//!
//! Ports taken from `:0` came from the ephemeral range: back-to-back scale runs now and then
//! failed with "port N never answered" (a probe's own source port had taken it first).

#[path = "../../tests/it/port_locks.rs"]
mod port_locks;

use nix::fcntl::Flock;
use std::fs::File;

/// Ports held for as long as this lives (the locks go with it).
pub struct Reserved {
    pub ports: Vec<u16>,
    _locks: Vec<Flock<File>>,
}

/// `n` distinct ports, free on every address and locked against parallel test processes.
pub fn reserve(n: usize) -> Reserved {
    let got = port_locks::reserve(n, std::process::id().wrapping_mul(7919));
    assert_eq!(
        got.len(),
        n,
        "only {} free ports in {}..{}, {n} wanted",
        got.len(),
        port_locks::PORT_LOW,
        port_locks::ephemeral_low()
    );
    let (ports, locks) = got.into_iter().unzip();
    Reserved {
        ports,
        _locks: locks,
    }
}
