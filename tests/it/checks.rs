//! What a check script can rely on, and how its results count: `rise`/`fall`, its
//! environment and stdin, exit statuses for signals, no overlap, `test` during a run.

use crate::support::*;
use std::io::{Read, Write};
use std::time::Duration;

/// A daemon whose service `app` runs `body` (with `{dir}` the test dir) every `interval`.
fn with_check(body: &str, extra: &str) -> (Daemon, u16) {
    let port = free_port();
    let d = Daemon::prepare("");
    let token = d.dir.path().display().to_string();
    let check = d.script("check.sh", &body.replace("{dir}", &token));
    d.rewrite(&format!(
        "[app]\nport={port}\ncheck_script={}\n{extra}",
        check.display()
    ));
    (d.started(&[]), port)
}

/// Runs `test app` and waits until the result is counted (`checks_count` = `n`); returns the
/// probe's status then.
fn test_run(d: &Daemon, port: u16, n: u64) -> u16 {
    d.ctl(&["test", "app"]);
    eventually(&format!("result {n} counted"), DEADLINE, || {
        (d.svc("app")["checks_count"] == n).then_some(())
    });
    probe_status(port)
}

#[test]
fn rise_and_fall_count_consecutive_results_after_the_first() {
    // Results are driven one by one with `test` (the interval is an hour); the exit code
    // comes from a file.
    let (d, port) = with_check(
        "exit $(cat {dir}/code 2>/dev/null || echo 1)",
        "check_script_interval=3600\nrise=3\nfall=2\n",
    );
    let code = d.path("code");
    // The first result decides at once, whatever rise says.
    wait_status(port, 500);
    assert_eq!(d.svc("app")["checks_count"], 1);
    std::fs::write(&code, "0").unwrap();
    assert_eq!(test_run(&d, port, 2), 500, "1 pass of rise=3");
    assert_eq!(test_run(&d, port, 3), 500, "2 passes of rise=3");
    assert_eq!(test_run(&d, port, 4), 200, "3 passes: up");
    std::fs::write(&code, "1").unwrap();
    assert_eq!(test_run(&d, port, 5), 200, "1 failure of fall=2");
    std::fs::write(&code, "0").unwrap();
    assert_eq!(test_run(&d, port, 6), 200, "a pass resets the count");
    std::fs::write(&code, "1").unwrap();
    assert_eq!(test_run(&d, port, 7), 200, "1 failure again");
    assert_eq!(test_run(&d, port, 8), 500, "2 consecutive failures: down");
}

#[test]
fn a_check_gets_its_service_name_and_dev_null_as_stdin() {
    let (d, _) = with_check(
        "echo \"service=$PSENTINEL_SERVICE\"\necho \"stdin=$(readlink /proc/$$/fd/0)\"",
        "check_script_interval=3600\n",
    );
    let (code, out, err) = d.ctl(&["test", "app"]);
    assert_eq!(code, 0, "{out}{err}");
    // The harness gives the daemon a pipe as stdin: an inherited stdin would show here.
    for want in ["service=app", "stdin=/dev/null"] {
        assert!(out.contains(want), "{want:?} missing from {out}");
    }
}

#[test]
fn a_check_killed_by_a_signal_exits_128_plus_n() {
    // SIGUSR1 is 10 on Linux: 138, as the shell shows it.
    let (d, port) = with_check("kill -USR1 $$", "check_script_interval=3600\n");
    wait_status(port, 500);
    let s = d.svc("app");
    assert_eq!(s["last_exit_status"], 138, "{s}");
    // `psentinel -c test` exits 3 for any failed check; the output tells the status.
    let (code, out, _) = d.ctl(&["test", "app"]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("exit status 138 (killed by signal 10)"),
        "{out}"
    );
}

#[test]
fn test_during_a_run_waits_for_it_then_runs_afresh_and_runs_never_overlap() {
    // Every run marks itself running (mkdir fails if another run is), logs its start, and
    // waits while `hold` exists.
    let port = free_port();
    let d = Daemon::prepare("");
    let dir = d.dir.path().display().to_string();
    std::fs::write(d.path("hold"), "").unwrap();
    let check = d.script(
        "check.sh",
        &format!(
            "mkdir {dir}/running 2>/dev/null || echo overlap >> {dir}/overlaps\n\
             echo start >> {dir}/starts\n\
             while [ -e {dir}/hold ]; do sleep 0.02; done\n\
             rmdir {dir}/running\n\
             echo done"
        ),
    );
    d.rewrite(&format!(
        "[app]\nport={port}\ncheck_script={}\ncheck_script_interval=3600\ncheck_timeout=600\n",
        check.display()
    ));
    let d = d.started(&[]);
    let starts = || {
        std::fs::read_to_string(d.path("starts"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    eventually("the first run in progress", DEADLINE, || {
        (starts() == 1).then_some(())
    });
    let cfg = d.cfg.clone();
    let tester = std::thread::spawn(move || ctl_as(&cfg, &["test", "app"], None));
    // Absence can only be watched for a while: `test` neither returns nor starts a second run
    // while the first one is held.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!tester.is_finished(), "test returned during the run");
    assert_eq!(starts(), 1, "a second run started during the first");
    std::fs::remove_file(d.path("hold")).unwrap();
    let (code, out, err) = tester.join().unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        starts(),
        2,
        "test ran a fresh check after the one in progress"
    );
    assert_eq!(d.svc("app")["checks_count"], 2);
    // Many `test`s at once while the interval runs too: still one run at a time.
    d.rewrite(&format!(
        "[app]\nport={port}\ncheck_script={}\ncheck_script_interval=0.05\ncheck_timeout=600\n",
        check.display()
    ));
    d.ok(&["reload"]);
    let testers: Vec<_> = (0..4)
        .map(|_| {
            let cfg = d.cfg.clone();
            std::thread::spawn(move || ctl_as(&cfg, &["test", "app"], None).0)
        })
        .collect();
    for t in testers {
        assert_eq!(t.join().unwrap(), 0);
    }
    assert!(starts() >= 6, "{} runs", starts());
    assert!(
        !d.path("overlaps").exists(),
        "runs overlapped: {}",
        std::fs::read_to_string(d.path("overlaps")).unwrap()
    );
}

#[test]
fn a_thousand_checks_starting_together_do_not_hold_up_the_ports() {
    // Every check sleeps a second, then leaves a mark. Starting a thousand processes costs the
    // daemon about a second of CPU; if that ran where the accept loops run, ports would still
    // be silent when the first checks end. Each port is probed from the daemon's spawn on
    // (ten probers of a hundred ports, each port retried until it answers).
    let ports: Vec<u16> = (0..1000).map(|_| free_port()).collect();
    let mut services = String::new();
    for (i, p) in ports.iter().enumerate() {
        services.push_str(&format!(
            "[s{i}]\nport={p}\ncheck_script={{dir}}/check.sh\ncheck_script_interval=3600\n"
        ));
    }
    let mut d = Daemon::prepare(&services);
    let mark = d.path("finished");
    d.script("check.sh", &format!("sleep 1\ntouch {}", mark.display()));
    d.spawn(&[]);
    let probers: Vec<_> = ports
        .chunks(100)
        .map(|chunk| {
            let chunk = chunk.to_vec();
            std::thread::spawn(move || {
                for p in chunk {
                    eventually(&format!("port {p} answering"), DEADLINE, || {
                        let mut c = std::net::TcpStream::connect(("127.0.0.1", p)).ok()?;
                        c.write_all(b"OPTIONS * HTTP/1.0\r\n\r\n").ok()?;
                        let mut answer = String::new();
                        c.read_to_string(&mut answer).ok()?;
                        answer.starts_with("HTTP/1.").then_some(())
                    });
                }
            })
        })
        .collect();
    for t in probers {
        t.join().expect("prober");
    }
    assert!(
        !mark.exists(),
        "a check had finished before every port answered"
    );
    // And the checks did start: their results come in.
    eventually("a check result", DEADLINE, || mark.exists().then_some(()));
    // `status` of them all (a megabyte of JSON, sent in chunks as it is rendered) is whole.
    let s = d.status_json();
    let names: Vec<&str> = s["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let mut want: Vec<String> = (0..1000).map(|i| format!("s{i}")).collect();
    want.sort();
    assert_eq!(names, want);
    let text = d.ok(&["status"]);
    assert_eq!(text.matches("\n[s").count(), 1000, "{}", &text[..200]);
}
