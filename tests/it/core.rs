//! The core behaviour end to end: probes, checks, operator commands, reload, bad input.

use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn probes_follow_checks_and_operators() {
    let port = free_port();
    let d = Daemon::prepare("");
    let flag = d.path("healthy");
    std::fs::write(&flag, "").unwrap();
    let check = d.script(
        "check.sh",
        &format!("echo checking; test -e {}", flag.display()),
    );
    d.rewrite(&format!(
        "[ourapp]\nport={port}\ncheck_script={}\ncheck_script_interval=0.2\n",
        check.display()
    ));
    let mut d = d.started(&[]);

    let r = wait_status(port, 200);
    assert_eq!(r.reason, "OK: check passed");
    assert_eq!(
        r.header("Content-Length").unwrap(),
        r.body.len().to_string()
    );
    assert_eq!(r.header("Connection"), Some("close"));
    assert_eq!(r.body, "ourapp up OK: check passed\n");

    std::fs::remove_file(&flag).unwrap();
    let r = wait_status(port, 500);
    assert_eq!(r.reason, "Check failed: exit 1");

    let out = d.ok(&["disable", "ourapp", "deploy", "v2"]);
    assert!(out.contains("ourapp disabled"), "{out}");
    let r = probe(port);
    assert_eq!((r.status, r.reason.as_str()), (503, "Disabled: deploy v2"));
    let s = d.svc("ourapp");
    assert_eq!(s["state"], "disabled");
    assert_eq!(s["reason"], "deploy v2");
    assert_eq!(s["enabled"], false);
    assert_eq!(s["disabled_by"], current_user());
    // Checks keep running while disabled: more runs finish after the disable than before it,
    // and the answer stays 503.
    let at_disable = s["checks_count"].as_u64().unwrap();
    eventually("checks running while disabled", DEADLINE, || {
        (d.svc("ourapp")["checks_count"].as_u64().unwrap() >= at_disable + 2).then_some(())
    });
    assert_eq!(probe_status(port), 503);

    std::fs::write(&flag, "").unwrap();
    d.ok(&["enable", "ourapp"]);
    wait_status(port, 200);
    let st = d.stop();
    assert!(st.success(), "{st:?}");
    assert!(!d.sock.exists(), "socket removed on stop");
}

#[test]
fn any_method_target_and_version_and_head_without_body() {
    let port = free_port();
    let d = Daemon::start(&format!("[web]\nport={port}\n"));
    for req in [
        "OPTIONS * HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /health HTTP/1.0\r\nUser-Agent: HAProxy\r\n\r\n",
        "POST /check HTTP/1.1\n\n",
    ] {
        let r = parse_reply(raw(port, req.as_bytes()));
        assert_eq!(r.status, 200, "{req:?}");
        assert_eq!(r.body, "web up OK: no check configured\n");
    }
    let r = parse_reply(raw(port, b"HEAD / HTTP/1.1\r\n\r\n"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "", "HEAD gets no body");
    let get_len = "web up OK: no check configured\n".len().to_string();
    assert_eq!(
        r.header("Content-Length"),
        Some(get_len.as_str()),
        "HEAD tells the GET length"
    );
    drop(d);
}

#[test]
fn garbage_oversized_silent_and_reset_clients_do_not_disturb_probes() {
    let port = free_port();
    let d = Daemon::start(&format!("[web]\nport={port}\n"));
    // A client that connects and says nothing, held open through everything below.
    let idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let idle_since = std::time::Instant::now();
    assert_eq!(
        parse_reply(raw(port, b"\x16\x03\x01\x00\xff\x01\x00\n")).status,
        400
    );
    let mut big = b"GET / HTTP/1.1\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'a', 20_000));
    assert_eq!(parse_reply(raw(port, &big)).status, 431);
    // Reset mid-request.
    {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET / HT").unwrap();
        let sock = socket2_linger0(&s);
        drop(sock);
    }
    // Half-closed after a complete request still gets its answer.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"OPTIONS * HTTP/1.0\r\n").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.0 200 "), "{out:?}");
    assert_eq!(probe_status(port), 200);
    // The idle client is closed by the daemon at the read deadline (5 s after the accept),
    // without an answer. A read that times out on our side is a failure: the daemon never
    // closed it.
    let mut idle = idle;
    idle.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = Vec::new();
    idle.read_to_end(&mut buf)
        .expect("the daemon closes an idle client at its read deadline");
    assert_eq!(buf, b"", "an idle client gets no answer");
    let held = idle_since.elapsed();
    assert!(
        held >= Duration::from_secs(5),
        "closed after {held:?}, before the 5 s read deadline"
    );
    drop(d);
}

#[test]
fn broken_headers_too_many_headers_and_tls_are_refused_at_once() {
    let port = free_port();
    let d = Daemon::start(&format!("[web]\nport={port}\n"));
    // A malformed header line is not HTTP.
    let r = parse_reply(raw(port, b"GET / HTTP/1.1\r\nno colon\r\n\r\n"));
    assert_eq!(r.status, 400);
    // More header lines than the parser keeps: like a head too long.
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(parse_reply(raw(port, &many)).status, 431);
    // A TLS hello without a line end is answered 400 now, not left to the read deadline: the
    // client keeps its side open and still gets the answer well before it.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.0 400 "), "{out:?}");
    assert_eq!(probe_status(port), 200);
    drop(d);
}

/// Closes with RST instead of FIN.
fn socket2_linger0(s: &TcpStream) -> TcpStream {
    nix::sys::socket::setsockopt(
        s,
        nix::sys::socket::sockopt::Linger,
        &libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )
    .unwrap();
    s.try_clone().unwrap()
}

#[test]
fn pause_and_run_act_on_pausable_services_only() {
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let d = Daemon::start(&format!(
        "[pgpool]\nport={p1}\npausable=yes\n[pgwrite]\nport={p2}\npausable=yes\nstart_paused=yes\n[web]\nport={p3}\n"
    ));
    assert_eq!(probe_status(p2), 503, "start_paused");
    assert_eq!(probe(p2).reason, "Paused: start_paused");
    assert_eq!(probe_status(p1), 200);
    d.ok(&["pause"]);
    assert_eq!(
        (probe_status(p1), probe_status(p2), probe_status(p3)),
        (503, 503, 200)
    );
    d.ok(&["run", "pgwrite"]);
    assert_eq!((probe_status(p1), probe_status(p2)), (503, 200));
    d.ok(&["run"]);
    assert_eq!(probe_status(p1), 200);
    let (code, _, err) = d.ctl(&["pause", "web"]);
    assert_eq!(code, 1);
    assert!(err.contains("not pausable"), "{err}");
    assert_eq!(probe_status(p3), 200);
}

#[test]
fn client_errors_and_exit_codes() {
    let port = free_port();
    let d = Daemon::start(&format!("[web]\nport={port}\n"));
    let (code, _, err) = d.ctl(&["disable", "nosuch"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown service 'nosuch'"), "{err}");
    let (code, _, err) = d.ctl(&["frobnicate"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown command"), "{err}");
    // The client does not know it, the daemon names the command it likely is.
    let (code, _, err) = d.ctl(&["disbale", "web"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown command 'disbale' (did you mean 'disable'?)"),
        "{err}"
    );
    let out = d.ok(&["help"]);
    for c in [
        "status",
        "enable",
        "disable",
        "pause",
        "run",
        "test",
        "disable_test",
        "enable_test",
        "reload",
        "stop_server",
        "version",
    ] {
        assert!(out.contains(c), "help lists {c}");
    }
    assert!(d.ok(&["version"]).contains(env!("CARGO_PKG_VERSION")));
    // The classic form: options after the command.
    let out = std::process::Command::new(BIN)
        .args(["-c", "version", "-f"])
        .arg(&d.cfg)
        .output()
        .unwrap();
    assert!(out.status.success());
    // -d with -c is a usage error.
    let out = std::process::Command::new(BIN)
        .args(["-d", "-c", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // No daemon on the socket.
    let out = std::process::Command::new(BIN)
        .args(["-c", "status", "--socket"])
        .arg(d.path("nope.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope.sock") && err.contains("daemon running"),
        "{err}"
    );
}

#[test]
fn test_and_disable_test() {
    let port = free_port();
    let d = Daemon::prepare("");
    // The exit code comes from a file, so that a fresh run is told from the stored result.
    let code_file = d.path("code");
    std::fs::write(&code_file, "3").unwrap();
    let check = d.script(
        "check.sh",
        &format!(
            "echo 'hello from check'; exit $(cat {})",
            code_file.display()
        ),
    );
    d.rewrite(&format!(
        "[app]\nport={port}\ncheck_script={} arg\ncheck_script_interval=3600\n",
        check.display()
    ));
    let d = d.started(&[]);
    wait_status(port, 500);
    let (code, out, _) = d.ctl(&["test", "app"]);
    assert_eq!(code, 3, "a failed check: exit 3");
    assert!(
        out.contains("exit status 3") && out.contains("hello from check"),
        "{out}"
    );
    d.ok(&["disable_test", "app"]);
    assert_eq!(probe_status(port), 200, "a stopped check counts as passing");
    assert_eq!(d.svc("app")["checks_enabled"], false);
    // enable_test runs the check at once (the interval is an hour): the answer carries the
    // new run's exit code, not the stored one.
    std::fs::write(&code_file, "4").unwrap();
    d.ok(&["enable_test", "app"]);
    eventually("a fresh run after enable_test", DEADLINE, || {
        let r = probe(port);
        (r.status == 500 && r.reason == "Check failed: exit 4").then_some(())
    });
}

#[test]
fn check_that_cannot_start_is_a_clear_failure() {
    let port = free_port();
    let d = Daemon::start(&format!(
        "[app]\nport={port}\ncheck_script=/nonexistent/check --x\n"
    ));
    let r = wait_status(port, 500);
    assert!(
        r.reason.contains("cannot start") && r.reason.contains("/nonexistent/check"),
        "{}",
        r.reason
    );
    assert_eq!(d.svc("app")["last_exit_status"], 127);
}

#[test]
fn config_errors_at_start_and_with_t() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.cfg");
    std::fs::write(&cfg, "[web]\nport=1\ncheck_scrpt=/bin/true\n").unwrap();
    for mode in ["-t", "-D"] {
        let out = std::process::Command::new(BIN)
            .args([mode, "-f"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{mode}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("bad.cfg: [web] check_scrpt = '/bin/true': unknown key"),
            "{mode}: {err}"
        );
    }
    let ok = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/psentinel.cfg");
    let out = std::process::Command::new(BIN)
        .args(["-t", "-f", ok])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn reload_adds_removes_keeps_state_and_refuses_bad_config() {
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let d = Daemon::start(&format!("[a]\nport={p1}\n[b]\nport={p2}\n"));
    d.ok(&["disable", "a", "kept"]);
    d.rewrite(&format!("[a]\nport={p1}\n[c]\nport={p3}\n"));
    let out = d.ok(&["reload"]);
    assert!(
        out.contains("added: [c]") && out.contains("removed: [b]"),
        "{out}"
    );
    assert_eq!(probe(p1).reason, "Disabled: kept");
    assert_eq!(probe_status(p3), 200);
    assert!(
        TcpStream::connect(("127.0.0.1", p2)).is_err(),
        "removed service's port closed"
    );
    // A bad file is refused; the running config stays.
    d.rewrite("[a]\nport=notaport\n");
    let (code, _, err) = d.ctl(&["reload"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("reload refused") && err.contains("port = 'notaport'"),
        "{err}"
    );
    assert_eq!(probe_status(p3), 200);
    // SIGHUP reloads too.
    d.rewrite(&format!("[a]\nport={p1}\n"));
    let before = d.log.len();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    d.log.wait_from(before, "configuration reloaded", DEADLINE);
    assert!(TcpStream::connect(("127.0.0.1", p3)).is_err());
}

#[test]
fn second_daemon_on_the_same_socket_refuses_and_stale_socket_is_replaced() {
    let port = free_port();
    let mut d = Daemon::start(&format!("[web]\nport={port}\n"));
    let out = std::process::Command::new(BIN)
        .args(["-D", "-f"])
        .arg(&d.cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));
    assert_eq!(probe_status(port), 200, "the first daemon is undisturbed");
    d.kill9();
    assert!(d.sock.exists(), "kill -9 leaves the socket file");
    d.restart();
    assert_eq!(probe_status(port), 200);
    d.ok(&["status"]);
}

/// The two cases' files (examples/case1-ourapp.cfg, case2-pgpool.cfg) parse as they are;
/// `-t` fails only because their check scripts are not installed here (a check that cannot
/// run is an error of `-t`).
#[test]
fn case_example_configs_validate() {
    for f in ["case1-ourapp.cfg", "case2-pgpool.cfg"] {
        let p = format!("{}/examples/{f}", env!("CARGO_MANIFEST_DIR"));
        let out = std::process::Command::new(BIN)
            .args(["-t", "-f", &p])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{f}: {err}");
        // Every error is a check program the example's host would have; a header line
        // ("N errors:") precedes them when there are several.
        for line in err.lines().filter(|l| !l.ends_with(" errors:")) {
            assert!(
                line.contains("check_script = '/usr/local/psentinel/test_")
                    && line.ends_with("does not exist"),
                "{f}: {line}"
            );
        }
    }
}

#[test]
fn detach_writes_pid_file_and_reports_start_up_errors() {
    let port = free_port();
    let d = Daemon::prepare(&format!("[web]\nport={port}\n"));
    let pid_file = d.path("psentinel.pid");
    // Without NOTIFY_SOCKET/LISTEN_FDS, -d forks and returns once the child serves.
    let out = std::process::Command::new(BIN)
        .args(["-d", "-f"])
        .arg(&d.cfg)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(probe_status(port), 200, "answers as soon as -d returned");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    // A second one cannot start: the parent reports the child's error and exits 1.
    let out = std::process::Command::new(BIN)
        .args(["-d", "-f"])
        .arg(&d.cfg)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));
    d.ok(&["stop_server"]);
    eventually("detached daemon gone", DEADLINE, || {
        (!pid_file.exists() && !d.sock.exists()).then_some(())
    });
}

#[test]
fn children_a_check_leaves_behind_are_killed() {
    let port = free_port();
    let d = Daemon::prepare("");
    // The test dir is in every stray's command line: any copy left behind is found in /proc.
    let token = d.dir.path().display().to_string();
    let started = d.path("started");
    d.script(
        "stray.sh",
        &format!(
            "echo $$ >> {}\ntrap '' TERM HUP INT\nwhile :; do sleep 1; done",
            started.display()
        ),
    );
    // One child stays in the check's process group, one escapes it with setsid. The check
    // exits only once both are running, so they are there to be killed.
    let check = d.script(
        "forks.sh",
        &format!(
            "/bin/sh {token}/stray.sh >/dev/null 2>&1 &\n\
             setsid /bin/sh {token}/stray.sh >/dev/null 2>&1 &\n\
             while [ \"$(wc -l < {0} 2>/dev/null)\" != 2 ]; do sleep 0.05; done\n\
             echo forked; exit 0",
            started.display()
        ),
    );
    d.rewrite(&format!(
        "[app]\nport={port}\ncheck_script={}\ncheck_script_interval=3600\n",
        check.display()
    ));
    let d = d.started(&[]);
    wait_status(port, 200);
    let strays = std::fs::read_to_string(&started).unwrap();
    assert_eq!(strays.lines().count(), 2, "both children started: {strays}");
    let mut left = vec![];
    let gone = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually("no process left from the check", DEADLINE, || {
            left = processes_with(&token, d.pid());
            left.is_empty().then_some(())
        })
    }));
    assert!(gone.is_ok(), "processes left: {left:#?}");
    // And no zombie children of the daemon (reaping follows SIGCHLD: wait for it).
    eventually("no zombie children", DEADLINE, || {
        zombies(d.pid()).is_empty().then_some(())
    });
}

#[test]
fn log_level_is_honoured() {
    let port = free_port();
    let d = Daemon::prepare(&format!("[web]\nport={port}\n"));
    // -D raises the level to debug; a -d --foreground daemon keeps log_level (here 0 = errors).
    let cfg = std::fs::read_to_string(&d.cfg)
        .unwrap()
        .replace("log_level=3", "log_level=0");
    std::fs::write(&d.cfg, cfg).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["-d", "--foreground", "-f"])
        .arg(&d.cfg)
        .env("NOTIFY_SOCKET", &d.notify.path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    d.notify.lines.wait("READY=1");
    d.ok(&["disable", "web"]);
    d.ok(&["stop_server"]);
    let out = out.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "log_level=0 prints no info lines"
    );
}
