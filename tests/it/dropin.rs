//! Drop-in configuration: `*.cfg` fragments in the directory beside the main file
//! (`psentinel.cfg` -> `psentinel.d/`), merged after it in lexical order. Here on the host:
//! `-t`, reload (added, changed, refused naming the file, nothing lost), `status`, the
//! generator and the last good copy. Under a real systemd: tests/it/systemd.rs.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn dropins(d: &Daemon) -> PathBuf {
    let dir = d.path("psentinel.d");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn psentinel(args: &[&str], env: &[(&str, &Path)]) -> (i32, String, String) {
    let mut c = Command::new(BIN);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    run(&mut c)
}

#[test]
fn t_reads_the_fragments_names_them_and_their_errors() {
    let (web, app) = (free_port(), free_port());
    let d = Daemon::prepare(&format!("[web]\nport={web}\n"));
    let cfg = d.cfg.display().to_string();
    let dir = dropins(&d);
    let app_cfg = write(&dir, "10-app.cfg", &format!("[app]\nport={app}\n"));
    // Not read: a misnamed fragment is named by -t; the packages' README is not.
    let misnamed = write(&dir, "20-db.conf", "[db]\nport=1\n");
    write(&dir, "README", "fragments go here\n");
    let (code, out, err) = psentinel(&["-t", "-f", &cfg], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        format!(
            "{cfg} and 1 drop-in fragment ({}): OK, 2 services, 1 warning\n",
            app_cfg.display()
        )
    );
    assert!(
        err.contains(&format!(
            "warning: {}: not read: a file of the drop-in directory is read only when its name ends in .cfg",
            misnamed.display()
        )),
        "{err}"
    );

    // Errors of two fragments, all at once, each naming its file; a check that cannot run
    // names the fragment that set check_script.
    let db_cfg = write(
        &dir,
        "20-db.cfg",
        &format!("[db]\nport={web}\n[general]\nlog_level=4\n"),
    );
    let (code, _, err) = psentinel(&["-t", "-f", &cfg], &[]);
    assert_eq!(code, 1, "{err}");
    for want in [
        format!("{cfg}: 2 errors:"),
        format!(
            "  {}: [db] port = '{web}': port already used by [web] of {cfg}",
            db_cfg.display()
        ),
        format!(
            "  {}: [general]: [general] belongs in the main file {cfg}",
            db_cfg.display()
        ),
    ] {
        assert!(err.contains(&want), "{want:?} not in:\n{err}");
    }
    std::fs::remove_file(&db_cfg).unwrap();
    write(
        &dir,
        "20-app.cfg",
        "[app]\ncheck_script=/nonexistent/check-app\n",
    );
    let (code, _, err) = psentinel(&["-t", "-f", &cfg], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "{}/20-app.cfg: [app] check_script = '/nonexistent/check-app'",
            dir.display()
        )),
        "{err}"
    );
}

#[test]
fn reload_applies_fragments_and_refuses_a_bad_one_by_name_losing_nothing() {
    let (web, app, extra) = (free_port(), free_port(), free_port());
    let d = Daemon::start(&format!("[web]\nport={web}\npausable=yes\n"));
    d.ok(&["disable", "web", "deploy v2"]);
    wait_status(web, 503);
    let dir = dropins(&d);

    // A fragment adds a service; another sets a key of the main file's service.
    let app_cfg = write(&dir, "10-app.cfg", &format!("[app]\nport={app}\n"));
    let web_cfg = write(&dir, "20-web.cfg", "[web]\ndisabled_status=404\n");
    let out = d.ok(&["reload"]);
    assert!(out.contains("added: [app]"), "{out}");
    wait_status(app, 200);
    assert_eq!(
        probe_status(web),
        404,
        "the fragment's key applies, the disable stays"
    );

    // status says where each service comes from.
    let text = d.ok(&["status"]);
    assert!(
        text.contains(&format!(
            "config {} and 2 drop-in fragments\n",
            d.cfg.display()
        )),
        "{text}"
    );
    let from_web = format!(
        "\n[web] port {web}, pausable yes\n  from:        {}, {}\n",
        d.cfg.display(),
        web_cfg.display()
    );
    assert!(text.contains(&from_web), "{from_web:?} not in\n{text}");
    let json = d.status_json();
    let s = |p: &Path| serde_json::json!(p.display().to_string());
    assert_eq!(
        json["config_fragments"],
        serde_json::json!([s(&app_cfg), s(&web_cfg)])
    );
    assert_eq!(
        d.svc("app")["config_files"],
        serde_json::json!([s(&app_cfg)])
    );
    assert_eq!(
        d.svc("web")["config_files"],
        serde_json::json!([s(&d.cfg), s(&web_cfg)])
    );

    // Each bad fragment: the reload is refused naming the file; everything keeps serving.
    let bad = dir.join("30-bad.cfg");
    let cases = [
        (
            format!("[bad]\nport={extra}\nrise=0\n"),
            format!("{}: [bad] rise = '0'", bad.display()),
        ),
        (
            format!("[dup]\nport={app}\n"),
            format!(
                "{}: [dup] port = '{app}': port already used by [app] of {}",
                bad.display(),
                app_cfg.display()
            ),
        ),
        (
            "[web]\nport=notaport\n".to_string(),
            format!("{}: [web] port = 'notaport'", bad.display()),
        ),
        (
            "[general]\nlog_level=4\n".to_string(),
            format!(
                "{}: [general]: [general] belongs in the main file",
                bad.display()
            ),
        ),
    ];
    for (text, want) in &cases {
        std::fs::write(&bad, text).unwrap();
        let (code, out, err) = d.ctl(&["reload"]);
        assert_eq!(code, 1, "{text:?}: {out}{err}");
        assert!(err.contains(want), "{text:?}: {want:?} not in {err}");
    }
    // A fragment that cannot be read (here a link to nowhere) is refused too, not skipped.
    std::fs::remove_file(&bad).unwrap();
    std::os::unix::fs::symlink(dir.join("nowhere.cfg"), &bad).unwrap();
    let (code, _, err) = d.ctl(&["reload"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("{}: cannot read", bad.display())),
        "{err}"
    );
    assert_eq!(probe_status(app), 200);
    assert_eq!(probe_status(web), 404);
    assert_eq!(d.svc("web")["reason"], "deploy v2");
    assert_eq!(d.status_json()["services"].as_array().unwrap().len(), 2);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", extra)).is_err(),
        "a refused fragment's port was bound"
    );

    // Fixed (the file removed): the reload goes through; removing a fragment removes its
    // service and its keys.
    std::fs::remove_file(&bad).unwrap();
    std::fs::remove_file(&app_cfg).unwrap();
    let out = d.ok(&["reload"]);
    assert!(out.contains("removed: [app]"), "{out}");
    assert_eq!(
        d.svc("web")["config_files"],
        serde_json::json!([s(&d.cfg), s(&web_cfg)])
    );
}

/// The generator holds the fragments' ports; on a broken fragment both the daemon and the
/// generator use the last good copy, fragments included.
#[test]
fn generator_and_last_good_copy_include_the_fragments() {
    let (web, app) = (free_port(), free_port());
    let mut d = Daemon::prepare(&format!("[web]\nport={web}\n"));
    let dir = dropins(&d);
    let app_cfg = write(&dir, "10-app.cfg", &format!("[app]\nport={app}\n"));
    let state = d.path("state");
    let state_env = state.to_str().unwrap().to_string();
    let cfg = d.cfg.display().to_string();
    let out_dir = d.path("gen");
    let gen = || {
        let (code, out, err) = psentinel(
            &["-f", &cfg, "--generate-sockets", out_dir.to_str().unwrap()],
            &[("STATE_DIRECTORY", &state)],
        );
        assert_eq!(code, 0, "{out}{err}");
        let conf =
            std::fs::read_to_string(out_dir.join("psentinel.socket.d/50-ports.conf")).unwrap();
        (conf, err)
    };
    let (conf, _) = gen();
    assert!(
        conf.contains(&format!("ListenStream={web}\nListenStream={app}\n"))
            || conf.contains(&format!("ListenStream={app}\nListenStream={web}\n")),
        "{conf}"
    );
    assert!(
        conf.contains(&format!("# and {}", app_cfg.display())),
        "{conf}"
    );

    // A run that loads saves the copy; then the fragment breaks.
    d.spawn(&[("STATE_DIRECTORY", &state_env)]);
    d.notify.lines.wait("READY=1");
    wait_status(app, 200);
    d.stop();
    std::fs::remove_dir_all(&out_dir).unwrap();
    std::fs::write(&app_cfg, format!("[app]\nport={app}\nfall=zero\n")).unwrap();

    let (conf, err) = gen();
    assert!(
        conf.contains(&format!("ListenStream={app}\n")),
        "{conf}\n{err}"
    );
    assert!(
        err.contains("using the ports of the last good configuration"),
        "{err}"
    );

    let before = d.notify.lines.len();
    d.spawn(&[("STATE_DIRECTORY", &state_env)]);
    d.notify.lines.wait_from(before, "READY=1", DEADLINE);
    d.notify.lines.wait(&format!(
        "STATUS=running on last good configuration: {}: [app] fall = 'zero'",
        app_cfg.display()
    ));
    wait_status(app, 200);
    assert_eq!(probe_status(web), 200);
}
