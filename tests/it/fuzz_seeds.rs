//! The fuzz seeds as a regression test on stable: every file of fuzz/seeds/<target> goes
//! through the very function that fuzz target calls (fuzz/src/lib.rs, compiled in here), so a
//! seed that once found a bug, or shows a property, keeps being checked without nightly.

#[path = "../../fuzz/src/lib.rs"]
mod bodies;

use std::path::Path;

/// Feeds every seed of `target` to `body`; returns how many there were.
fn replay(target: &str, body: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let data = std::fs::read(e.path()).unwrap();
        let seed = e.path();
        let ran = std::panic::catch_unwind(|| body(&data));
        assert!(ran.is_ok(), "{target}: seed {} fails", seed.display());
        n += 1;
    }
    n
}

#[test]
fn every_fuzz_seed_replays_cleanly() {
    for (target, body) in [
        ("parse_head", bodies::parse_head as fn(&[u8])),
        ("control_command", bodies::control_command),
        ("config", bodies::config),
    ] {
        let n = replay(target, body);
        assert!(n > 0, "no seeds in fuzz/seeds/{target}");
        eprintln!("{target}: {n} seeds replayed");
    }
}
