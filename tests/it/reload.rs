//! What a reload keeps, drops and says; what a replaced decision says; the engine's journal
//! lines name their service.

use crate::support::*;

/// A check whose first run passes at once and every later run takes 5 s: an answer within
/// that time can only come from a result the daemon kept.
fn slow_after_first(d: &Daemon) -> std::path::PathBuf {
    let marker = d.path("ran-once");
    d.script(
        "slow-after-first.sh",
        &format!(
            "if [ -e {0} ]; then sleep 5; fi; touch {0}; exit 0",
            marker.display()
        ),
    )
}

#[test]
fn a_reload_that_changes_only_the_timing_keeps_the_check_result() {
    let port = free_port();
    let d = Daemon::prepare("");
    let check = slow_after_first(&d);
    let section = |interval: u32, timeout: u32| {
        format!(
            "[app]\nport={port}\ncheck_script={}\ncheck_script_interval={interval}\ncheck_timeout={timeout}\n",
            check.display()
        )
    };
    d.rewrite(&section(30, 10));
    let d = d.started(&[]);
    wait_status(port, 200);
    d.rewrite(&section(60, 20));
    let out = d.ok(&["reload"]);
    assert!(out.contains("1 kept"), "{out}");
    let r = probe(port);
    assert_eq!(r.status, 200, "the result survived the reload: {}", r.raw);
    assert_eq!(d.svc("app")["checks_count"], 1);

    // Another command: the old result says nothing about it.
    d.rewrite(&format!(
        "[app]\nport={port}\ncheck_script={} --other\ncheck_script_interval=60\ncheck_timeout=20\n",
        check.display()
    ));
    let out = d.ok(&["reload"]);
    assert!(
        out.contains("check command changed, result dropped: [app]"),
        "{out}"
    );
    assert_eq!(probe(port).reason, "Starting: no check result yet");
}

#[test]
fn a_second_disable_says_what_it_replaced_and_the_journal_keeps_both() {
    let port = free_port();
    let d = Daemon::start(&format!("[web]\nport={port}\npausable=yes\n"));
    let me = current_user();
    let first = d.ok(&["disable", "web", "deploy", "v2"]);
    assert_eq!(first, "web disabled\n");
    let second = d.ok(&["disable", "web", "--for", "1h", "deploy", "v3"]);
    assert!(
        second.starts_with("web disabled until ")
            && second.contains(&format!("; replaced the disable by {me} since "))
            && second.trim_end().ends_with(": deploy v2"),
        "{second}"
    );
    d.log.wait(&format!("{me}: disable web (deploy v2)"));
    let i = d.log.wait(&format!("{me}: disable web (deploy v3) until "));
    assert!(
        d.log.all()[i].contains(&format!("; replaces the disable by {me} since "))
            && d.log.all()[i].contains("(deploy v2)"),
        "{}",
        d.log.all()[i]
    );
    // The same for pause.
    d.ok(&["pause", "web", "db"]);
    let out = d.ok(&["pause", "web", "again"]);
    assert!(
        out.contains(&format!("; replaced the pause of web by {me} since "))
            && out.contains(": db"),
        "{out}"
    );
}

#[test]
fn a_reload_names_the_general_keys_that_wait_for_a_restart() {
    let port = free_port();
    let d = Daemon::start(&format!("[web]\nport={port}\n"));
    let text = std::fs::read_to_string(&d.cfg).unwrap();
    let changed = text
        .replace("log_level=3", "log_level=2")
        .replace("dbus=off", "dbus=off\ncontrol_group=adm");
    std::fs::write(&d.cfg, changed).unwrap();
    let out = d.ok(&["reload"]);
    assert!(
        out.contains("[general] takes effect at the next restart: log_level, control_group"),
        "{out}"
    );
    d.log
        .wait("takes effect at the next restart: log_level, control_group");
}

#[test]
fn engine_lines_name_the_service_and_counts_agree_in_number() {
    let (p1, p2) = (free_port(), free_port());
    let d = Daemon::start(&format!(
        "[a]\nport={p1}\ncheck_script=/bin/true\n[b]\nport={p2}\n"
    ));
    wait_status(p1, 200);
    d.rewrite(&format!("[a]\nport={p1}\ncheck_script=/bin/true\n"));
    let out = d.ok(&["reload"]);
    assert!(out.starts_with("reloaded: 1 service ("), "{out}");
    d.log.wait("b: service removed from the configuration");
    d.log.wait("configuration reloaded: 1 service (");
    d.log.wait("a: check finished: exit 0");
    let status = d.ok(&["status", "a"]);
    assert!(status.contains("1 service: 1 up"), "{status}");
    assert!(
        status.contains("last check:  exit status 0 at ")
            && status.contains("; 1 check since start"),
        "{status}"
    );
}

#[test]
fn a_fatal_error_is_printed_once() {
    let port = free_port();
    let _taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let d = Daemon::prepare(&format!("[web]\nport={port}\nbind=127.0.0.1\n"));
    let out = std::process::Command::new(BIN)
        .args(["-D", "-f"])
        .arg(&d.cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("cannot listen on"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
}
