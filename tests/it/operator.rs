//! Operator commands' promises: `pause --all` and `--for`, `--wait` counted on a real prober's
//! answers, `enable --wait` on a service that stays out, `control_group` members, and a reload
//! whose new port cannot be bound.

use crate::support::*;
use std::net::TcpListener;
use std::time::{Duration, Instant};

#[test]
fn pause_all_and_pause_for_expire() {
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let d = Daemon::start(&format!(
        "[pgpool]\nport={p1}\npausable=yes\n[pgwrite]\nport={p2}\npausable=yes\n[web]\nport={p3}\n"
    ));
    d.ok(&["pause", "--all", "maintenance"]);
    assert_eq!(probe(p1).reason, "Paused: maintenance");
    assert_eq!(probe(p2).reason, "Paused: maintenance");
    assert_eq!(probe_status(p3), 200, "not pausable: untouched");
    d.ok(&["run"]);
    assert_eq!((probe_status(p1), probe_status(p2)), (200, 200));
    // A timed pause lifts itself (the engine's timer: wait for its log line).
    d.ok(&["pause", "pgpool", "--for", "1s", "short"]);
    assert_eq!(probe(p1).reason, "Paused: short");
    d.log.wait("the timed pause of pgpool ran out; lifted");
    assert_eq!(probe_status(p1), 200);
    assert_eq!(d.svc("pgpool")["paused_until"], 0);
}

/// Starts `psentinel -c WORDS` in a thread.
fn ctl_thread(d: &Daemon, words: &[&str]) -> std::thread::JoinHandle<(i32, String, String)> {
    let cfg = d.cfg.clone();
    let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    std::thread::spawn(move || {
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        ctl_as(&cfg, &words, None)
    })
}

/// Gives `n` answers (as a prober that reads and closes, like HAProxy) that must not be
/// enough: the command keeps waiting; then one more, after which it ends with exit 0.
fn waits_for_exactly(port: u16, n: usize, cmd: std::thread::JoinHandle<(i32, String, String)>) {
    for _ in 0..n {
        probe(port);
    }
    // Absence can only be watched for a while.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!cmd.is_finished(), "--wait ended after {n} answers");
    probe(port);
    eventually("--wait ended after one more answer", DEADLINE, || {
        cmd.is_finished().then_some(())
    });
    let (code, out, err) = cmd.join().unwrap();
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn pause_and_run_wait_for_the_probers_answers() {
    let port = free_port();
    let d = Daemon::start(&format!(
        "[pool]\nport={port}\npausable=yes\nhaproxy_fall=3\nhaproxy_rise=2\n"
    ));
    // A prober seen in the last minute (this test, from 127.0.0.1).
    assert_eq!(probe_status(port), 200);
    let pause = ctl_thread(&d, &["pause", "pool", "--wait", "--timeout", "20s"]);
    eventually("paused", DEADLINE, || {
        (d.svc("pool")["paused"] == true).then_some(())
    });
    waits_for_exactly(port, 2, pause);
    let run = ctl_thread(&d, &["run", "pool", "--wait", "--timeout", "20s"]);
    eventually("running", DEADLINE, || {
        (d.svc("pool")["paused"] == false).then_some(())
    });
    waits_for_exactly(port, 1, run);
    assert_eq!(probe_status(port), 200);
}

#[test]
fn enable_wait_on_a_service_that_stays_out_fails_at_once() {
    let port = free_port();
    let d = Daemon::start(&format!("[pool]\nport={port}\npausable=yes\n"));
    assert_eq!(probe_status(port), 200); // a prober to wait for
    d.ok(&["disable", "pool", "deploy"]);
    d.ok(&["pause", "pool", "db"]);
    let t0 = Instant::now();
    let (code, out, err) = d.ctl(&["enable", "pool", "--wait", "--timeout", "30s"]);
    let took = t0.elapsed();
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        took < Duration::from_secs(10),
        "took {took:?}: waited instead of saying at once that it stays out"
    );
    assert!(format!("{out}{err}").contains("paused"), "{out}{err}");
    // The enable itself stands.
    assert_eq!(d.svc("pool")["enabled"], true);
    assert_eq!(probe(port).reason, "Paused: db");
}

#[test]
fn reload_is_refused_as_a_whole_when_a_new_port_cannot_be_bound() {
    let (p1, p2, taken) = (free_port(), free_port(), free_port());
    let d = Daemon::start(&format!("[a]\nport={p1}\n[b]\nport={p2}\n"));
    // Someone else holds the new port on every address.
    let _holder = TcpListener::bind(("0.0.0.0", taken)).unwrap();
    d.rewrite(&format!("[a]\nport={p1}\n[c]\nport={taken}\n"));
    let (code, out, err) = d.ctl(&["reload"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("reload refused") && err.contains(&taken.to_string()),
        "{err}"
    );
    // Nothing changed: b still answers, c does not exist.
    assert_eq!(probe_status(p2), 200);
    let names: Vec<String> = d.status_json()["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a", "b"]);
}

/// Needs root: it creates a user and a group, and runs the client as that user (runuser).
#[test]
fn control_group_members_may_change_state_over_the_socket() {
    use std::os::unix::fs::PermissionsExt;
    let member = TestUser::new("m");
    let port = free_port();
    let d = Daemon::prepare_general(
        &format!("[web]\nport={port}\n"),
        &format!("control_group={}\n", member.group),
    );
    let d = d.started(&[]);
    // The member must reach the socket and read the config: open the temp dir up.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&d.cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out, err) = ctl_as(
        &d.cfg,
        &["disable", "web", "member", "change"],
        Some(&member.user),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(probe(port).reason, "Disabled: member change");
    assert_eq!(d.svc("web")["disabled_by"], member.user.as_str());
    // Positive control: `nobody` is no member and is refused.
    let (code, _, err) = ctl_as(&d.cfg, &["enable", "web"], Some("nobody"));
    assert_eq!(code, 1);
    assert!(err.contains("not authorised"), "{err}");
    let (code, out, err) = ctl_as(&d.cfg, &["enable", "web"], Some(&member.user));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(probe_status(port), 200);
}
