//! The command line and the configuration file as an operator meets them: mistyped options,
//! `test` in scripts, trailing comments, every error of a file at once, and what `-t` says
//! about checks that cannot run and a control socket systemd does not pass.

use crate::support::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;

/// One request on the control socket, as `socat` would send it: the whole answer.
fn raw_request(sock: &Path, line: &str) -> String {
    let mut s = UnixStream::connect(sock).unwrap();
    s.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn unknown_options_are_usage_errors_that_change_nothing() {
    let port = free_port();
    let d = Daemon::start(&format!("[web]\nport={port}\npausable=yes\n"));
    wait_status(port, 200);

    // The deploy script: a typo must not disable (or take the typo as the reason).
    let (code, _, err) = d.ctl(&["disable", "web", "--wiat", "deploy", "v3"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("unknown option '--wiat'") && err.contains("did you mean '--wait'?"),
        "{err}"
    );
    assert!(
        err.contains("after '--'"),
        "says how to give such a reason: {err}"
    );
    for (words, near) in [
        (&["pause", "--al"][..], "--all"),
        (&["pause", "web", "--fro", "1h"][..], "--for"),
        (
            &["enable", "web", "--wait", "--timout", "5s"][..],
            "--timeout",
        ),
        (&["status", "--jsno"][..], "--json"),
        (&["status", "--sockt", "/x"][..], "--socket"),
        (&["run", "web", "-w"][..], ""),
        (&["test", "web", "-x"][..], ""),
    ] {
        let (code, _, err) = d.ctl(words);
        assert_eq!(code, 2, "{words:?}: {err}");
        let bad = words.iter().find(|w| w.starts_with('-') && **w != "--wait");
        assert!(
            err.contains(&format!("unknown option '{}'", bad.unwrap())),
            "{words:?}: {err}"
        );
        if !near.is_empty() {
            assert!(err.contains(&format!("did you mean '{near}'?")), "{err}");
        }
    }
    // A usage error is found before the daemon is asked: also when it is not running.
    let (code, _, err) = run(Command::new(BIN)
        .args(["-c", "disable", "web", "--wiat", "x", "--socket"])
        .arg(d.path("nothing-here.sock")));
    assert_eq!(code, 2, "{err}");
    // The daemon says the same to clients that type the line themselves (socat).
    let answer = raw_request(&d.sock, "disable web --wiat deploy v3");
    assert!(
        answer.starts_with("2 usage\n") && answer.contains("did you mean '--wait'?"),
        "{answer}"
    );
    let answer = raw_request(&d.sock, "pause -x");
    assert!(answer.starts_with("2 usage\n"), "{answer}");
    // Nothing changed.
    let web = d.svc("web");
    assert_eq!(
        (web["enabled"].clone(), web["paused"].clone()),
        (true.into(), false.into())
    );
    assert_eq!(probe_status(port), 200);

    // A reason that starts with '-' goes after '--' (and so do the client's own options:
    // -f comes first here); a lone '-' is a word, not an option.
    let (code, out, err) = run(Command::new(BIN)
        .arg("-f")
        .arg(&d.cfg)
        .args(["-c", "disable", "web", "--", "--wiat", "deploy"]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(d.svc("web")["reason"], "--wiat deploy");
    d.ok(&["disable", "web", "deploy", "-", "v3"]);
    assert_eq!(d.svc("web")["reason"], "deploy - v3");
}

#[test]
fn test_exits_3_when_the_check_fails_and_says_the_status_once() {
    let (p1, p2) = (free_port(), free_port());
    let d = Daemon::prepare("");
    let bad = d.script("bad.sh", "echo 'db unreachable'; exit 3");
    d.rewrite(&format!(
        "[good]\nport={p1}\ncheck_script=/bin/true\ncheck_script_interval=3600\n\
         [bad]\nport={p2}\ncheck_script={}\ncheck_script_interval=3600\n",
        bad.display()
    ));
    let d = d.started(&[]);
    let (code, out, err) = d.ctl(&["test", "good"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("good: exit status 0 after "), "{out}");
    assert!(!out.contains("(exit 0)"), "the status said once: {out}");
    // A failed check: exit 3, and the same report on stdout (it is the result asked for).
    let (code, out, err) = d.ctl(&["test", "bad"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.starts_with("bad: exit status 3 after ") && out.contains("db unreachable"),
        "{out}"
    );
    assert!(err.is_empty(), "{err}");
    // Refusals keep their code.
    let (code, _, err) = d.ctl(&["test", "nosuch"]);
    assert_eq!(code, 1, "{err}");
    let status = d.ok(&["status", "good"]);
    assert!(status.contains("exit status 0 at "), "{status}");
    assert!(!status.contains("(exit 0)"), "{status}");
}

#[test]
fn check_messages_name_the_service() {
    let port = free_port();
    let d = Daemon::start(&format!(
        "[lonely]\nport={port}\ncheck_script=/nonexistent/check\n"
    ));
    let i = d.log.wait("check finished");
    let line = &d.log.all()[i];
    assert!(
        line.contains("lonely: check finished: cannot start"),
        "{line}"
    );
}

/// `psentinel -t -f FILE` with `env`: (exit code, stdout, stderr).
fn t(cfg: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["-t", "-f"]).arg(cfg);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

#[test]
fn trailing_comments_are_comments_for_every_key() {
    let (p1, p2) = (free_port(), free_port());
    let d = Daemon::prepare("");
    d.rewrite(&format!(
        "[web]\nport={p1} # probe port\ncheck_script=/bin/sh -c 'exit 0 # not a comment' ; deep check\n\
         check_script_interval=3600\t# an hour\npausable=yes ;why not\n\
         [db]\nport={p2}\t; the other one\ncheck_script=/bin/echo a#b\n"
    ));
    let (code, out, err) = t(&d.cfg, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let d = d.started(&[]);
    let web = d.svc("web");
    assert_eq!(web["port"], p1);
    assert_eq!(web["pausable"], true);
    assert_eq!(web["check_command"], "/bin/sh -c 'exit 0 # not a comment'");
    let db = d.svc("db")["check_command"].as_str().unwrap().to_string();
    assert!(db.starts_with("/bin/echo ") && db.contains("a#b"), "{db}");
    wait_status(p1, 200);
}

#[test]
fn every_error_of_a_file_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.cfg");
    std::fs::write(
        &cfg,
        "[web]\nport=70000\ncheck_scrpt=/bin/true\n[db]\nport=1\nrise=0\n[general]\nlog_level=9\n",
    )
    .unwrap();
    for mode in ["-t", "-D"] {
        let (code, _, err) = run(Command::new(BIN).args([mode, "-f"]).arg(&cfg));
        assert_eq!(code, 1, "{mode}: {err}");
        for want in [
            "bad.cfg: [web] port = '70000': expected a TCP port",
            "bad.cfg: [web] check_scrpt = '/bin/true': unknown key (did you mean 'check_script'?)",
            "bad.cfg: [db] rise = '0': expected a whole number",
            "bad.cfg: [general] log_level = '9': expected 0..4",
        ] {
            assert!(err.contains(want), "{mode}: missing {want:?} in:\n{err}");
        }
        assert!(err.contains("4 errors"), "{mode}: {err}");
    }
}

/// An operator fixing a file wants every finding of `-t` in one run: the file's errors and
/// what it cannot say by itself (a check that cannot run, a group that does not exist, a
/// fragment not read) together, not the second kind only once the first is fixed.
#[test]
fn t_reports_file_errors_and_lint_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let cfg = dir.path().join("p.cfg");
    let grp = format!("no-such-grp-t-{}", std::process::id());
    std::fs::write(
        &cfg,
        format!(
            "[web]\nport=1\nrise=0\ncheck_script={d}/nope.sh\n\
             [db]\nport=x\ncheck_script={d}/gone.sh\n\
             [app]\nport=3\ncontrol_group={grp}\n{}",
            general(dir.path())
        ),
    )
    .unwrap();
    let dropins = dir.path().join("p.d");
    std::fs::create_dir(&dropins).unwrap();
    std::fs::write(dropins.join("20-db.conf"), "[x]\nport=4\n").unwrap();
    let (code, out, err) = t(&cfg, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!("psentinel: {d}/p.cfg: 5 errors:\n")),
        "{err}"
    );
    for want in [
        format!("  {d}/p.cfg: [web] rise = '0': expected a whole number"),
        format!("  {d}/p.cfg: [db] port = 'x': expected a TCP port"),
        format!("  {d}/p.cfg: [web] check_script = '{d}/nope.sh': {d}/nope.sh does not exist"),
        // A service whose port is wrong still has its check looked at.
        format!("  {d}/p.cfg: [db] check_script = '{d}/gone.sh': {d}/gone.sh does not exist"),
        format!("  {d}/p.cfg: [app] control_group = '{grp}': group '{grp}' does not exist"),
        format!("psentinel: warning: {d}/p.d/20-db.conf: not read"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    assert_eq!(out, "", "no OK line when there are errors");
}

#[test]
fn t_fails_for_a_check_that_cannot_run_and_warns_where_it_cannot_judge() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let cfg = dir.path().join("p.cfg");
    let not_exec = dir.path().join("check.sh");
    std::fs::write(&not_exec, "#!/bin/sh\nexit 0\n").unwrap();
    let general = general(dir.path());
    std::fs::write(
        &cfg,
        format!(
            "[missing]\nport=1\ncheck_script={d}/nope.sh --quick\n\
             [plain]\nport=2\ncheck_script={d}/check.sh\n\
             [folder]\nport=3\ncheck_script={d}\n{general}"
        ),
    )
    .unwrap();
    let (code, out, err) = t(&cfg, &[]);
    assert_eq!(code, 1, "{out}{err}");
    for want in [
        format!("[missing] check_script = '{d}/nope.sh --quick': {d}/nope.sh does not exist"),
        format!("[plain] check_script = '{d}/check.sh': {d}/check.sh is not executable"),
        format!("[folder] check_script = '{d}': {d} is not a regular file"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }

    // What depends on where and how the daemon starts: warnings, exit 0.
    std::fs::write(
        &cfg,
        format!(
            "[rel]\nport=1\ncheck_script=checks/x.sh\n\
             [path]\nport=2\ncheck_script=no-such-program-psentinel --x\n\
             [found]\nport=3\ncheck_script=true\n{general}"
        ),
    )
    .unwrap();
    let (code, out, err) = t(&cfg, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("warning:")
            && err.contains("[rel] check_script = 'checks/x.sh': a relative path"),
        "{err}"
    );
    assert!(
        err.contains("[path] check_script = 'no-such-program-psentinel --x': no-such-program-psentinel is not in PATH"),
        "{err}"
    );
    assert!(!err.contains("[found]"), "{err}");
    assert!(out.contains("OK, 3 services, 2 warnings"), "{out}");
}

#[test]
fn t_warns_when_sock_file_is_not_what_the_socket_unit_passes() {
    let dir = tempfile::tempdir().unwrap();
    let units = dir.path().join("units");
    std::fs::create_dir(&units).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/psentinel.socket"),
        units.join("psentinel.socket"),
    )
    .unwrap();
    // systemd's own variable for where units are found: here, only our directory.
    let env = [("SYSTEMD_UNIT_PATH", units.to_str().unwrap())];
    let cfg = dir.path().join("p.cfg");
    let write = |sock: &str| {
        std::fs::write(
            &cfg,
            format!("[web]\nport=1\n[general]\nsock_file={sock}\n"),
        )
        .unwrap()
    };
    // The same file by another name (Debian's /var/run -> /run): fine.
    write("/var/run/psentinel/psentinel.sock");
    let (code, out, err) = t(&cfg, &env);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    let other = dir.path().join("other.sock");
    write(other.to_str().unwrap());
    let (code, out, err) = t(&cfg, &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains(&format!("[general] sock_file = '{}'", other.display()))
            && err.contains("/run/psentinel/psentinel.sock")
            && err.contains(&units.join("psentinel.socket").display().to_string()),
        "{err}"
    );
    // No unit installed and not under systemd: nothing to compare with.
    let (code, _, err) = t(
        &cfg,
        &[(
            "SYSTEMD_UNIT_PATH",
            dir.path().join("none").to_str().unwrap(),
        )],
    );
    assert_eq!((code, err.as_str()), (0, ""));
}

/// The same on a real Debian with systemd: the unit where the package puts it, and Debian's
/// own `/var/run -> /run` link (Case 1's path).
#[test]
fn t_compares_sock_file_with_the_installed_socket_unit_in_sysbox() {
    let b = crate::sysbox::Sysbox::up("t-sock-file");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    b.cp(Path::new(BIN), "/usr/bin/psentinel");
    let t = |sock: &str| {
        b.write(
            "/tmp/p.cfg",
            &format!("[web]\nport=48080\n[general]\nsock_file={sock}\n"),
        );
        b.sh("psentinel -t -f /tmp/p.cfg")
    };
    // Not installed yet: nothing to compare with.
    assert_eq!(
        t("/tmp/other.sock"),
        (0, "/tmp/p.cfg: OK, 1 service\n".into(), String::new())
    );
    b.cp(
        &root.join("systemd/psentinel.socket"),
        "/usr/lib/systemd/system/psentinel.socket",
    );
    let (code, out, err) = t("/var/run/psentinel/psentinel.sock");
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    let (code, out, err) = t("/tmp/other.sock");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("warning: /tmp/p.cfg: [general] sock_file = '/tmp/other.sock': /usr/lib/systemd/system/psentinel.socket passes /run/psentinel/psentinel.sock"),
        "{err}"
    );
    assert!(out.contains("OK, 1 service, 1 warning"), "{out}");
}
