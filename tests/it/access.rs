//! Who may change what, with real users (useradd; these tests need root): a service's own
//! `control_group` on the control socket, `-t` on a group that does not exist, and operators
//! who always get a connection while unprivileged users hold hundreds.

use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Opens the test dir and the config to other users (the socket is 0666 already).
fn open_up(d: &Daemon) {
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&d.cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn a_service_control_group_may_change_that_service_only() {
    let member = TestUser::new("sv");
    let (app, db) = (free_port(), free_port());
    let d = Daemon::start(&format!(
        "[ourapp]\nport={app}\npausable=yes\ncontrol_group={}\n[db]\nport={db}\npausable=yes\n",
        member.group
    ));
    open_up(&d);
    let as_member = |words: &[&str]| ctl_as(&d.cfg, words, Some(&member.user));

    for words in [
        &["disable", "ourapp", "deploy"][..],
        &["enable", "ourapp"],
        &["pause", "ourapp"],
        &["run", "ourapp"],
        &["disable_test", "ourapp"],
        &["enable_test", "ourapp"],
        &["test", "ourapp"],
    ] {
        let (code, out, err) = as_member(words);
        assert_eq!(code, 0, "{words:?}: {out}{err}");
    }
    let (code, out, err) = as_member(&["disable", "ourapp", "deploy v2"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(probe(app).reason, "Disabled: deploy v2");
    assert_eq!(d.svc("ourapp")["disabled_by"], member.user.as_str());

    // Another service, and what concerns every service or the daemon: refused, nothing changed.
    for words in [
        &["disable", "db", "no"][..],
        &["pause", "db"],
        &["pause", "--all", "no"],
        &["run"],
        &["reload"],
        &["stop_server"],
    ] {
        let (code, out, err) = as_member(words);
        assert_eq!(code, 1, "{words:?} was allowed: {out}{err}");
        assert!(err.contains("not authorised"), "{words:?}: {err}");
    }
    let (_, _, err) = as_member(&["disable", "db", "no"]);
    assert!(
        err.contains("changing db needs root or membership of group 'psentinel'")
            && !err.contains(&member.group),
        "{err}"
    );
    assert_eq!(probe_status(db), 200);
    assert_eq!(d.svc("db")["paused"], false);
    assert!(
        d.ok(&["version"]).contains("psentinel"),
        "the daemon stopped"
    );

    // status shows who may change each service.
    assert_eq!(
        d.svc("ourapp")["control_group"],
        serde_json::json!([member.group])
    );
    assert_eq!(d.svc("db")["control_group"], serde_json::json!([]));
    let text = d.ok(&["status", "ourapp"]);
    assert!(
        text.contains(&format!("operators:   group {}", member.group)),
        "{text}"
    );

    // Positive control: nobody is in no group and may change nothing.
    let (code, _, err) = ctl_as(&d.cfg, &["enable", "ourapp"], Some("nobody"));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("'psentinel' or '{}'", member.group)),
        "{err}"
    );

    // A reload that drops the group takes the right away at once.
    d.rewrite(&format!(
        "[ourapp]\nport={app}\npausable=yes\n[db]\nport={db}\npausable=yes\n"
    ));
    d.ok(&["reload"]);
    let (code, _, err) = as_member(&["enable", "ourapp"]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn a_control_group_that_does_not_exist_is_a_t_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.cfg");
    std::fs::write(
        &cfg,
        format!(
            "[ourapp]\nport={}\ncontrol_group=root, no-such-grp-{}\n\n{}",
            free_port(),
            std::process::id(),
            general(dir.path())
        ),
    )
    .unwrap();
    let (code, out, err) = run(Command::new(BIN).args(["-t", "-f"]).arg(&cfg));
    assert_eq!(code, 1, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("[ourapp] control_group")
            && all.contains(&format!(
                "group 'no-such-grp-{}' does not exist",
                std::process::id()
            )),
        "{all}"
    );
    // Bad spelling is a plain configuration error.
    std::fs::write(
        &cfg,
        format!(
            "[ourapp]\nport={}\ncontrol_group=a b\n\n{}",
            free_port(),
            general(dir.path())
        ),
    )
    .unwrap();
    let (code, out, err) = run(Command::new(BIN).args(["-t", "-f"]).arg(&cfg));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("control_group = 'a b'"), "{err}");
}

/// A user that holds `want` silent connections to `sock`, opening a new one whenever the
/// daemon closes one (as an attacker would), until killed.
fn hog(sock: &std::path::Path, user: &str, want: usize) -> Child {
    const SCRIPT: &str = r#"
import select, socket, sys, time
path, want = sys.argv[1], int(sys.argv[2])
held = []
while True:
    while len(held) < want:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(1)
        try:
            s.connect(path)
        except OSError:
            s.close()
            time.sleep(0.01)
            break
        held.append(s)
    ready, _, _ = select.select(held, [], [], 0.05)
    for s in ready:
        held.remove(s)
        s.close()
    if ready:
        time.sleep(0.01)
"#;
    let gid = nix::unistd::User::from_name(user).unwrap().unwrap().gid;
    // setpriv execs (runuser would stay as the parent, and killing it would leave the hog).
    Command::new("setpriv")
        .args([
            &format!("--reuid={user}"),
            &format!("--regid={gid}"),
            "--init-groups",
            // Not a PATH lookup: the tests' PATH may hold shims other users cannot run.
            "/usr/bin/python3",
            "-c",
            SCRIPT,
        ])
        .arg(sock)
        .arg(want.to_string())
        .stdout(Stdio::null())
        .spawn()
        .expect("setpriv (util-linux) and python3 (python3-minimal)")
}

struct Hogs(Vec<Child>);

impl Hogs {
    fn stop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.0.clear();
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Unix sockets the daemon holds: its listeners plus every control connection.
fn unix_sockets(pid: u32) -> usize {
    let out = Command::new("ss")
        .args(["-xp"])
        .output()
        .expect("ss (iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .count()
}

#[test]
fn operators_get_in_while_unprivileged_users_hold_hundreds_of_connections() {
    let member = TestUser::new("op");
    let hogs: Vec<TestUser> = (0..10).map(|i| TestUser::new(&format!("h{i}"))).collect();
    let port = free_port();
    let d = Daemon::start(&format!(
        "[web]\nport={port}\ncontrol_group={}\n",
        member.group
    ));
    open_up(&d);
    // Killed on every way out (before the users are deleted: userdel refuses while they run).
    let mut hogs_running = Hogs(hogs.iter().map(|h| hog(&d.sock, &h.user, 100)).collect());
    // 10 users x 100 wanted: far more than the daemon keeps for all users together.
    eventually(
        "the hogs hold more than 120 control connections",
        Duration::from_secs(30),
        || (unix_sockets(d.pid()) > 120).then_some(()),
    );
    for round in 0..3 {
        let (code, out, err) = d.ctl(&["disable", "web", &format!("root {round}")]);
        assert_eq!(code, 0, "root, round {round}: {out}{err}");
        let (code, out, err) = ctl_as(&d.cfg, &["enable", "web"], Some(&member.user));
        assert_eq!(code, 0, "control_group member, round {round}: {out}{err}");
        assert_eq!(probe_status(port), 200);
    }
    // Readers are not locked out for good either: one of another user gets an answer.
    let (code, out, err) = ctl_as(&d.cfg, &["status", "web"], Some("nobody"));
    let held = unix_sockets(d.pid());
    hogs_running.stop();
    assert_eq!(code, 0, "nobody's status: {out}{err}");
    eprintln!("the daemon held {held} unix sockets while under the hogs");
    assert!(held < 200, "the daemon held {held} unix sockets");
}
