//! Manual state that lasts: reasons, who, expiry, persistence across restarts, authorisation.

use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

#[test]
fn disable_for_a_while_expires_by_itself_and_records_who_and_why() {
    let port = free_port();
    let d = Daemon::start(&format!("[web]\nport={port}\npausable=yes\n"));
    // Long enough that the checks below, each a process spawn, cannot outlast it on a loaded
    // machine; the expiry itself is tested with a short one after them.
    let out = d.ok(&["disable", "web", "--for", "1h", "deploy", "v2"]);
    assert!(out.contains("web disabled until"), "{out}");
    let s = d.svc("web");
    assert_eq!(s["reason"], "deploy v2");
    assert_eq!(s["disabled_by"], current_user());
    let (since, until) = (
        s["disabled_since"].as_u64().unwrap(),
        s["disabled_until"].as_u64().unwrap(),
    );
    assert!(
        until >= since + 3_600_000_000 && until < since + 3_601_000_000,
        "{since} {until}"
    );
    assert_eq!(probe(port).reason, "Disabled: deploy v2");
    let text = d.ok(&["status", "web"]);
    assert!(
        text.contains(&format!("disabled:    yes, by {} since", current_user()))
            && text.contains("until")
            && text.contains("deploy v2"),
        "{text}"
    );
    // The expiry is the engine's own timer: wait for its log line, then the probe is back.
    d.ok(&["disable", "web", "--for", "1s", "deploy", "v2"]);
    d.log.wait("timed disable of web ran out");
    assert_eq!(probe_status(port), 200);
    assert_eq!(d.svc("web")["disabled_until"], 0);

    // pause carries a reason and --for too.
    d.ok(&["pause", "web", "--for", "1h", "db", "maintenance"]);
    let s = d.svc("web");
    assert_eq!(
        (s["paused"].as_bool(), s["reason"].as_str()),
        (Some(true), Some("db maintenance"))
    );
    assert!(s["paused_until"].as_u64().unwrap() > 0);
    assert_eq!(probe(port).reason, "Paused: db maintenance");
}

#[test]
fn manual_state_is_restored_before_the_first_probe() {
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let mut d = Daemon::start(&format!(
        "[a]\nport={p1}\n[b]\nport={p2}\npausable=yes\n[c]\nport={p3}\npausable=yes\nstart_paused=yes\n"
    ));
    d.ok(&["disable", "a", "--for", "1h", "kept across restarts"]);
    d.ok(&["pause", "b", "maintenance"]);
    d.ok(&["run", "c"]);
    d.ok(&["disable_test", "a"]);
    d.restart();
    // The very first answer after the restart already carries the saved state.
    assert_eq!(probe(p1).reason, "Disabled: kept across restarts");
    assert_eq!(probe(p2).reason, "Paused: maintenance");
    assert_eq!(
        probe_status(p3),
        200,
        "an operator's run beats start_paused"
    );
    let a = d.svc("a");
    assert_eq!(a["disabled_by"], current_user());
    assert!(a["disabled_until"].as_u64().unwrap() > 0);
    assert_eq!(a["checks_enabled"], false);
    // Also after kill -9: every change was written at once.
    d.ok(&["enable", "a"]);
    d.kill9();
    d.restart();
    assert_eq!(probe_status(p1), 200);
    // A service removed from the configuration drops its state.
    d.rewrite(&format!("[a]\nport={p1}\n"));
    d.ok(&["reload"]);
    let saved = std::fs::read_to_string(d.path("state/state.json")).unwrap();
    assert!(!saved.contains("\"b\""), "{saved}");
}

#[test]
fn a_recent_check_result_survives_kill_9_so_the_node_does_not_flap() {
    let port = free_port();
    let d = Daemon::prepare("");
    let marker = d.path("ran-once");
    let release = d.path("release");
    // The first run is fast; every later run waits until the test creates `release`, so the
    // first answer after the restart can only come from the saved result, however slow the
    // machine.
    let check = d.script(
        "blocked-after-first.sh",
        &format!(
            "if [ -e {0} ]; then while [ ! -e {1} ]; do sleep 0.05; done; fi; touch {0}; exit 0",
            marker.display(),
            release.display()
        ),
    );
    d.rewrite(&format!(
        "[app]\nport={port}\ncheck_script={}\ncheck_script_interval=30\ncheck_timeout=600\n",
        check.display()
    ));
    let mut d = d.started(&[]);
    wait_status(port, 200);
    // Results are written within a second (batched): wait for the file to hold it.
    let state = d.path("state/state.json");
    eventually("check result saved", DEADLINE, || {
        std::fs::read_to_string(&state)
            .ok()
            .filter(|s| s.contains("\"Code\": 0"))
            .map(|_| ())
    });
    d.kill9();
    d.restart();
    let r = probe(port);
    assert_eq!(
        r.status, 200,
        "first answer after kill -9 + restart: {}",
        r.raw
    );
    assert_eq!(
        d.svc("app")["checks_count"],
        0,
        "no new check has finished yet"
    );
    std::fs::write(&release, "").unwrap();
    d.stop();
}

/// A daemon whose state file holds a passing result saved `age` ago by a check that never
/// finishes; returns the first answer after READY=1.
fn first_answer_with_a_result_saved(age: Duration) -> Reply {
    let port = free_port();
    let d = Daemon::prepare("");
    let saved = (std::time::SystemTime::now() - age)
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let check = d.script("never-finishes.sh", "sleep 60");
    std::fs::create_dir_all(d.path("state")).unwrap();
    std::fs::write(
        d.path("state/state.json"),
        format!(
            r#"{{"version":1,"services":{{"app":{{"health":{{"healthy":true,"passes":1,"failures":0}},"last":{{"exit":{{"Code":0}},"time":{saved},"duration_us":1000,"output":""}},"check":["{}"]}}}}}}"#,
            check.display()
        ),
    )
    .unwrap();
    d.rewrite(&format!(
        "[app]\nport={port}\ncheck_script={}\ncheck_script_interval=10\ncheck_timeout=50\n",
        check.display()
    ));
    let _d = d.started(&[]);
    probe(port)
}

#[test]
fn a_stale_check_result_is_not_trusted() {
    // Positive control: the same hand-written file, saved just now, is accepted (so the
    // refusal below is about the age, not about a file the daemon cannot read).
    let fresh = first_answer_with_a_result_saved(Duration::from_secs(1));
    assert_eq!(
        (fresh.status, fresh.reason.as_str()),
        (200, "OK: check passed")
    );
    // Saved 1 hour ago: older than interval + timeout.
    let stale = first_answer_with_a_result_saved(Duration::from_secs(3600));
    assert_eq!(stale.reason, "Starting: no check result yet");
}

#[test]
fn corrupt_state_file_is_set_aside_and_services_start_in_their_configured_state() {
    let (p1, p2) = (free_port(), free_port());
    let d = Daemon::prepare(&format!(
        "[a]\nport={p1}\n[b]\nport={p2}\npausable=yes\nstart_paused=yes\n"
    ));
    std::fs::create_dir_all(d.path("state")).unwrap();
    std::fs::write(
        d.path("state/state.json"),
        b"{\"version\":1,\"services\":{\"a\":{\"admin\":",
    )
    .unwrap();
    let d = d.started(&[]);
    d.log.wait("saved state is corrupt");
    assert_eq!(probe_status(p1), 200);
    assert_eq!(probe(p2).reason, "Paused: start_paused");
    let aside: Vec<String> = std::fs::read_dir(d.path("state"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        aside.iter().any(|n| n.starts_with("state.json.corrupt-")),
        "{aside:?}"
    );
}

/// Needs root: running the client as `nobody` (runuser) is root's privilege.
#[test]
fn an_unprivileged_user_can_read_but_not_change() {
    let port = free_port();
    let d = Daemon::start(&format!("[web]\nport={port}\npausable=yes\n"));
    // nobody must reach the socket and read the config: open the temp dir up.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&d.cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mode = std::fs::metadata(&d.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666, "anyone may connect");
    let (code, out, err) = ctl_as(&d.cfg, &["status", "--json"], Some("nobody"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"name\": \"web\""));
    for words in [
        &["disable", "web"][..],
        &["pause"],
        &["enable", "web"],
        &["reload"],
        &["test", "web"],
        &["stop_server"],
    ] {
        let (code, _, err) = ctl_as(&d.cfg, words, Some("nobody"));
        assert_eq!(code, 1, "{words:?}");
        assert!(
            err.contains("not authorised") && err.contains("nobody"),
            "{words:?}: {err}"
        );
    }
    assert_eq!(probe_status(port), 200, "nothing changed");
    d.log.wait("refused");
    // The daemon's own user may; the record names it.
    d.ok(&["disable", "web", "because"]);
    let me = current_user();
    assert_eq!(d.svc("web")["disabled_by"], me);
    d.log.wait(&format!("{me}: disable web (because)"));
}
