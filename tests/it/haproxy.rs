//! psentinel against a real HAProxy (Debian's): every state psentinel can be in, seen the way an
//! operator sees it in `show stat`, through the configurations docs/haproxy.md shows
//! (`examples/haproxy/`) and its two use cases.
//!
//! Several nodes run on one host by giving each its own loopback address (127.0.0.1, .2, .3):
//! the HAProxy snippets keep their real shape (`server db2 db2:6432 ... check port 64321`) and
//! only addresses and ports are substituted.

use crate::haproxy_support::*;
use crate::support::*;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Loopback address of node `n` (1-based).
fn node_ip(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// The service sections of a psentinel configuration (everything before `[general]`), made
/// fast for tests: check scripts live in the node's dir, checks run every 0.2 s, and every
/// service binds the node's own loopback address.
fn node_services(cfg: &str, ip: IpAddr, ports: &[(&str, String)]) -> String {
    let services = cfg.split("[general]").next().unwrap();
    let services = substitute(services, ports);
    services
        .lines()
        .map(|l| {
            let t = l.trim();
            if t.starts_with("check_script_interval=") {
                "check_script_interval=0.2".to_string()
            } else if let Some(path) = t.strip_prefix("check_script=/usr/local/psentinel/") {
                format!("check_script={{dir}}/{path}")
            } else if t.starts_with('[') && t.ends_with(']') {
                format!("{t}\nbind={ip}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A psentinel node on its loopback address. `scripts`: (file name, body) of its checks, written
/// into its dir before it starts (`{dir}` in a body is that dir).
fn start_node(cfg: &str, ip: IpAddr, ports: &[(&str, String)], scripts: &[(&str, &str)]) -> Daemon {
    let d = Daemon::prepare("");
    let dir = d.dir.path().display().to_string();
    for (name, body) in scripts {
        d.script(name, &body.replace("{dir}", &dir));
    }
    d.rewrite(&node_services(cfg, ip, ports));
    d.started(&[])
}

fn flag(d: &Daemon, name: &str, on: bool) {
    let p = d.path(name);
    if on {
        std::fs::write(&p, "").unwrap();
    } else {
        std::fs::remove_file(&p).unwrap();
    }
}

/// Deep check of Case 1 (docs/haproxy.md): passes while the node's `healthy` flag file exists.
const TEST_OURAPP: &str = "echo deep check; test -e {dir}/healthy";

/// Case 1 with HAProxy's HTTP check: two nodes behind `option httpchk OPTIONS * HTTP/1.0` and
/// `check port 48080`, each with Case 1's `[ourapp]` configuration unchanged but for paths,
/// ports and interval. A failing check and an operator's disable both take a node out, with
/// the reason in `show stat`; traffic keeps flowing to the other node.
#[test]
fn httpchk_case1_check_and_deploy_cycle() {
    let (check_port, app_port, fe_port) = (free_port(), free_port(), free_port());
    let apps: Vec<Dummy> = (1..=2)
        .map(|n| Dummy::start(node_ip(n), app_port, &format!("node{n}")))
        .collect();
    let case_cfg = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/case1-ourapp.cfg"
    ))
    .unwrap();
    let nodes: Vec<Daemon> = (1..=2)
        .map(|n| {
            let d = start_node(
                &case_cfg,
                node_ip(n),
                &[("port=48080", format!("port={check_port}"))],
                &[("test_ourapp.py", TEST_OURAPP)],
            );
            flag(&d, "healthy", true);
            d
        })
        .collect();
    let h = Haproxy::start(&substitute(
        &example("httpchk.cfg"),
        &[
            ("bind :80", format!("bind 127.0.0.1:{fe_port}")),
            ("10.0.0.11:8080", format!("127.0.0.1:{app_port}")),
            ("10.0.0.12:8080", format!("127.0.0.2:{app_port}")),
            ("port 48080", format!("port {check_port}")),
        ],
    ));
    h.wait_status("ourapp", "webapp1", "UP");
    h.wait_status("ourapp", "webapp2", "UP");
    let mut seen = BTreeSet::new();
    eventually("requests reaching both nodes", DEADLINE, || {
        seen.extend(fetch(fe_port));
        (seen.len() == 2).then_some(())
    });
    let only_node2 = || {
        for _ in 0..4 {
            assert_eq!(fetch(fe_port).as_deref(), Some("node2"));
        }
    };

    // The deep check fails on node 1: DOWN, with psentinel's reason as the check's text.
    flag(&nodes[0], "healthy", false);
    let s = h.wait("ourapp", "webapp1", "DOWN for a failed check", |s| {
        s.status() == "DOWN" && s.last_chk() == "Check failed: exit 1"
    });
    assert_eq!((s.check_status(), s.get("check_code")), ("L7STS", "500"));
    only_node2();
    flag(&nodes[0], "healthy", true);
    h.wait_status("ourapp", "webapp1", "UP");

    // The deploy: disable, upgrade (the check fails meanwhile), watch status, enable.
    nodes[0].ok(&["disable", "ourapp", "upgrade", "to", "v2"]);
    let s = h.wait("ourapp", "webapp1", "DOWN for the disable", |s| {
        s.status() == "DOWN" && s.last_chk() == "Disabled: upgrade to v2"
    });
    assert_eq!(s.get("check_code"), "503");
    only_node2();
    flag(&nodes[0], "healthy", false);
    eventually("the check failing during the upgrade", DEADLINE, || {
        (nodes[0].svc("ourapp")["last_exit_status"] == 1).then_some(())
    });
    flag(&nodes[0], "healthy", true);
    eventually("the check passing after the upgrade", DEADLINE, || {
        (nodes[0].svc("ourapp")["last_exit_status"] == 0).then_some(())
    });
    assert_eq!(
        h.server("ourapp", "webapp1").status(),
        "DOWN",
        "still out until enabled"
    );
    nodes[0].ok(&["enable", "ourapp"]);
    h.wait_status("ourapp", "webapp1", "UP");
    assert_eq!(h.server("ourapp", "webapp2").status(), "UP");

    // HAProxy's own log carries the reasons too.
    h.log.wait("info: \"Check failed: exit 1\"");
    h.log.wait("info: \"Disabled: upgrade to v2\"");
    h.assert_clean_log();
    drop(apps);
}

/// The agent-check snippet: HAProxy's own check only connects to the application; psentinel's
/// agent answer decides UP, DOWN, MAINT (disabled) and DRAIN (paused), `ready` brings the
/// server back from each, and a check's `weight=NN%` line sets the server's weight.
#[test]
fn agent_check_maint_drain_down_and_weight() {
    let (check_port, agent_port, app_port) = (free_port(), free_port(), free_port());
    let _app = Dummy::start(node_ip(1), app_port, "node1");
    let node = start_node(
        &example("agent-check.psentinel.cfg"),
        node_ip(1),
        &[
            ("port=48080", format!("port={check_port}")),
            ("agent_port=48081", format!("agent_port={agent_port}")),
        ],
        &[(
            "test_ourapp.sh",
            "test -e {dir}/healthy || exit 1; cat {dir}/weight 2>/dev/null; exit 0",
        )],
    );
    flag(&node, "healthy", true);
    let h = Haproxy::start(&substitute(
        &example("agent-check.cfg"),
        &[
            ("10.0.0.11:8080", format!("127.0.0.1:{app_port}")),
            ("agent-port 48081", format!("agent-port {agent_port}")),
        ],
    ));
    let up = |h: &Haproxy| {
        h.wait("ourapp", "app1", "UP by the agent", |s| {
            s.status() == "UP" && s.last_agt() == "via agent : up (OK: check passed)"
        })
    };
    assert_eq!(up(&h).weight(), 100);

    // Weight from the check's output, and back.
    std::fs::write(node.path("weight"), "weight=75%\n").unwrap();
    h.wait("ourapp", "app1", "at weight 75", |s| s.weight() == 75);
    std::fs::write(node.path("weight"), "weight=100%\n").unwrap();
    h.wait("ourapp", "app1", "at weight 100", |s| s.weight() == 100);

    // Disabled: MAINT, with the reason; enable: ready, UP.
    node.ok(&["disable", "ourapp", "deploy", "v2"]);
    h.wait("ourapp", "app1", "MAINT with the reason", |s| {
        s.status() == "MAINT" && s.last_agt() == "via agent : up (Disabled: deploy v2)"
    });
    node.ok(&["enable", "ourapp"]);
    up(&h);

    // Paused: DRAIN; run: UP.
    node.ok(&["pause", "ourapp"]);
    h.wait("ourapp", "app1", "DRAIN", |s| {
        s.status().starts_with("DRAIN")
    });
    node.ok(&["run", "ourapp"]);
    up(&h);

    // The check fails: DOWN by the agent, with the reason; passes: UP.
    flag(&node, "healthy", false);
    h.wait("ourapp", "app1", "DOWN by the agent", |s| {
        s.status() == "DOWN (agent)" && s.last_agt() == "via agent : down (Check failed: exit 1)"
    });
    flag(&node, "healthy", true);
    up(&h);

    // Disabled while failing: still MAINT, and the reason still shows.
    flag(&node, "healthy", false);
    node.ok(&["disable", "ourapp", "broken"]);
    h.wait("ourapp", "app1", "MAINT while failing", |s| {
        s.status() == "MAINT" && s.last_agt() == "via agent : down (Disabled: broken)"
    });
    flag(&node, "healthy", true);
    node.ok(&["enable", "ourapp"]);
    up(&h);

    h.log.wait("leaving forced maintenance");
    h.log.wait("enters drain state");
    h.assert_clean_log();
}

/// Drain over HTTP: with `disabled_status=404` / `paused_status=404` and HAProxy's
/// `http-check disable-on-404`, disable and pause put the server in NOLB (sessions finish,
/// nothing new) instead of DOWN; a failing check is still DOWN.
#[test]
fn disable_on_404_drains_to_nolb() {
    let (check_port, app_port) = (free_port(), free_port());
    let node = start_node(
        &example("disable-on-404.psentinel.cfg"),
        node_ip(1),
        &[("port=48080", format!("port={check_port}"))],
        &[("test_ourapp.sh", TEST_OURAPP)],
    );
    flag(&node, "healthy", true);
    let h = Haproxy::start(&substitute(
        &example("disable-on-404.cfg"),
        &[
            ("10.0.0.11:8080", format!("127.0.0.1:{app_port}")),
            ("port 48080", format!("port {check_port}")),
        ],
    ));
    h.wait_status("ourapp", "app1", "UP");

    node.ok(&["disable", "ourapp", "deploy", "v3"]);
    let s = h.wait_status("ourapp", "app1", "NOLB");
    assert_eq!((s.check_status(), s.get("check_code")), ("L7OKC", "404"));
    node.ok(&["enable", "ourapp"]);
    h.wait_status("ourapp", "app1", "UP");

    node.ok(&["pause", "ourapp"]);
    h.wait_status("ourapp", "app1", "NOLB");
    node.ok(&["run", "ourapp"]);
    h.wait_status("ourapp", "app1", "UP");

    flag(&node, "healthy", false);
    h.wait("ourapp", "app1", "DOWN for a failed check", |s| {
        s.status() == "DOWN" && s.last_chk() == "Check failed: exit 1"
    });
    flag(&node, "healthy", true);
    h.wait_status("ourapp", "app1", "UP");

    h.log.wait("is stopping");
    h.assert_clean_log();
}

/// `agent-check` together with `option httpchk` on one server: both checks must agree. A pause
/// answered with 503 makes the HTTP check fail, so HAProxy shows DOWN, not DRAIN; with
/// `paused_status=404` and `disable-on-404` it shows NOLB. A disable is MAINT either way (HAProxy
/// stops the HTTP check in maintenance) and `ready` brings both back.
#[test]
fn agent_with_httpchk_drains_only_with_404() {
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let node = Daemon::start(&format!(
        "[plain]\nport={}\nagent_port={}\npausable=yes\n\n\
         [soft]\nport={}\nagent_port={}\npausable=yes\npaused_status=404\n",
        ports[0], ports[1], ports[2], ports[3]
    ));
    let app = ports[4];
    let h = Haproxy::start(&format!(
        "backend plain\n    option httpchk OPTIONS * HTTP/1.0\n    \
         server s1 127.0.0.1:{app} check port {} agent-check agent-port {}\n\n\
         backend soft\n    option httpchk OPTIONS * HTTP/1.0\n    http-check disable-on-404\n    \
         server s1 127.0.0.1:{app} check port {} agent-check agent-port {}\n",
        ports[0], ports[1], ports[2], ports[3]
    ));
    for be in ["plain", "soft"] {
        h.wait_status(be, "s1", "UP");
    }
    node.ok(&["pause"]);
    h.wait_status("plain", "s1", "DOWN");
    h.wait_status("soft", "s1", "NOLB");
    node.ok(&["run"]);
    for be in ["plain", "soft"] {
        h.wait_status(be, "s1", "UP");
    }
    node.ok(&["disable", "plain", "x"]);
    node.ok(&["disable", "soft", "x"]);
    for be in ["plain", "soft"] {
        h.wait_status(be, "s1", "MAINT");
    }
    node.ok(&["enable", "plain"]);
    node.ok(&["enable", "soft"]);
    for be in ["plain", "soft"] {
        h.wait_status(be, "s1", "UP");
    }
    h.assert_clean_log();
}

/// Case 2: three database nodes, each a psentinel with Case 2's `[pgpool]` and `[pgwrite]`
/// sections; `test_pgwrite.sh` passes only on the node holding the `primary` flag. HAProxy's
/// write backend follows the primary when it moves; the read backend keeps all three; `pause`
/// on a node takes both of its servers out, `run` brings them back.
#[test]
fn case2_write_backend_follows_the_primary() {
    let (pgpool, pgwrite, pool_port, pg_port, read_fe, write_fe) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let mut dummies = Vec::new();
    for n in 1..=3 {
        dummies.push(Dummy::start(
            node_ip(n),
            pool_port,
            &format!("db{n}-pgpool"),
        ));
        dummies.push(Dummy::start(
            node_ip(n),
            pg_port,
            &format!("db{n}-postgres"),
        ));
    }
    let case_cfg = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/case2-pgpool.cfg"
    ))
    .unwrap();
    let nodes: Vec<Daemon> = (1..=3)
        .map(|n| {
            start_node(
                &case_cfg,
                node_ip(n),
                &[
                    ("port=64321", format!("port={pgpool}")),
                    ("port=64323", format!("port={pgwrite}")),
                ],
                &[
                    ("test_pgpool.sh", "exit 0"),
                    (
                        "test_pgwrite.sh",
                        "echo checking role; test -e {dir}/primary",
                    ),
                ],
            )
        })
        .collect();
    flag(&nodes[0], "primary", true);
    // Addresses first, one node at a time, then the listening and check ports.
    let mut pairs = Vec::new();
    for n in 1..=3u8 {
        let ip = node_ip(n);
        pairs.push((format!("db{n}:6432"), format!("{ip}:{pool_port}")));
        pairs.push((format!("db{n}:5432"), format!("{ip}:{pg_port}")));
    }
    pairs.extend([
        ("bind :54321".into(), format!("bind 127.0.0.1:{read_fe}")),
        ("bind :54323".into(), format!("bind 127.0.0.1:{write_fe}")),
        ("port 64321".into(), format!("port {pgpool}")),
        ("port 64323".into(), format!("port {pgwrite}")),
    ]);
    let pairs: Vec<(&str, String)> = pairs.iter().map(|(f, t)| (f.as_str(), t.clone())).collect();
    let h = Haproxy::start(&substitute(&example("case2-pgpool.cfg"), &pairs));

    let read_all_up = |h: &Haproxy| {
        for db in ["db1", "db2", "db3"] {
            h.wait_status("db_read", db, "UP");
        }
    };
    let writes_go_to = |h: &Haproxy, primary: &str| {
        for db in ["db1", "db2", "db3"] {
            let want = if db == primary { "UP" } else { "DOWN" };
            h.wait_status("db_write", db, want);
        }
        let want = format!("{primary}-postgres");
        eventually(&format!("writes reaching {primary}"), DEADLINE, || {
            (fetch(write_fe).as_deref() == Some(want.as_str())).then_some(())
        });
    };
    read_all_up(&h);
    writes_go_to(&h, "db1");

    // The DBA promotes node 2.
    flag(&nodes[0], "primary", false);
    flag(&nodes[1], "primary", true);
    writes_go_to(&h, "db2");
    read_all_up(&h);
    let mut seen = BTreeSet::new();
    eventually("reads balanced over all three", DEADLINE, || {
        seen.extend(fetch(read_fe));
        (seen.len() == 3).then_some(())
    });

    // Maintenance on node 2: one `pause` takes both of its servers out.
    nodes[1].ok(&["pause"]);
    h.wait("db_read", "db2", "DOWN with the pause's reason", |s| {
        s.status() == "DOWN" && s.last_chk().starts_with("Paused by ")
    });
    h.wait_status("db_write", "db2", "DOWN");
    for db in ["db1", "db3"] {
        assert_eq!(h.server("db_read", db).status(), "UP");
    }
    nodes[1].ok(&["run"]);
    read_all_up(&h);
    writes_go_to(&h, "db2");

    h.assert_clean_log();
}

/// docs/haproxy.md shows exactly the snippets these tests run.
#[test]
fn haproxy_page_shows_the_tested_haproxy_examples() {
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/haproxy.md")).unwrap();
    for name in [
        "httpchk.cfg",
        "agent-check.cfg",
        "agent-check.psentinel.cfg",
        "disable-on-404.cfg",
        "disable-on-404.psentinel.cfg",
    ] {
        let body = example(name);
        assert!(
            page.contains(body.trim_end()),
            "docs/haproxy.md does not show examples/haproxy/{name} as it is:\n{body}"
        );
    }
    // Case 2's backends are in the page's section on the two cases; the file adds the
    // frontends.
    let case2 = example("case2-pgpool.cfg");
    let backends = &case2[case2.find("\nbackend db_read").unwrap() + 1..];
    assert!(
        page.contains(backends.trim_end()),
        "docs/haproxy.md's Case 2 does not show the backends of examples/haproxy/case2-pgpool.cfg:\n{backends}"
    );
}
