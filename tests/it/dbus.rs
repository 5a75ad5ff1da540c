//! D-Bus end to end with real clients: a private dbus-daemon started per test (busctl, gdbus,
//! dbus-monitor against it), and the real system bus with the shipped policy inside a psbox.

use crate::support::*;
use crate::sysbox::Sysbox;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NAME: &str = "org.psentinel.PSentinel1";
const MANAGER: &str = "/org/psentinel/PSentinel1";
const MANAGER_IF: &str = "org.psentinel.PSentinel1.Manager";
const SERVICE_IF: &str = "org.psentinel.PSentinel1.Service";

fn svc_path(label: &str) -> String {
    format!("/org/psentinel/PSentinel1/service/{label}")
}

fn tool(name: &str, package: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} is missing: install the Debian package {package} (make deps)"
    );
    Command::new(name)
}

/// A private message bus on a unix:path socket in a temp dir, any local user may connect
/// (so tests can call as `nobody`); killable and restartable at the same address.
struct Bus {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Bus {
    fn start() -> Bus {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let conf = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
            dir.path().display()
        );
        std::fs::write(dir.path().join("bus.conf"), conf).unwrap();
        let mut b = Bus { dir, child: None };
        b.up();
        b
    }

    /// Starts dbus-daemon; returns once it printed its address (it is listening then).
    fn up(&mut self) {
        let mut child = tool("dbus-daemon", "dbus")
            .arg(format!(
                "--config-file={}",
                self.dir.path().join("bus.conf").display()
            ))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("unix:path="),
            "dbus-daemon did not start: {line:?}"
        );
        self.child = Some(child);
    }

    fn kill(&mut self) {
        let mut c = self.child.take().expect("bus running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    fn address(&self) -> String {
        format!("unix:path={}", self.dir.path().join("bus").display())
    }

    fn env(&self) -> [(&'static str, String); 1] {
        [("DBUS_SESSION_BUS_ADDRESS", self.address())]
    }

    /// busctl against this bus: (exit code, stdout, stderr).
    fn busctl(&self, args: &[&str]) -> (i32, String, String) {
        run(tool("busctl", "systemd")
            .arg(format!("--address={}", self.address()))
            .args(args))
    }

    fn busctl_ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.busctl(args);
        assert_eq!(code, 0, "busctl {args:?}: {out}{err}");
        out
    }

    /// One property as JSON data (busctl --json=short).
    fn prop(&self, path: &str, iface: &str, name: &str) -> serde_json::Value {
        let out = self.busctl_ok(&["--json=short", "get-property", NAME, path, iface, name]);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["data"].clone()
    }

    /// A method call via busctl --json=short: the reply's data array.
    fn call(&self, path: &str, iface: &str, method: &str, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json=short", "call", NAME, path, iface, method];
        a.extend_from_slice(args);
        let out = self.busctl_ok(&a);
        if out.trim().is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["data"].clone()
    }

    /// gdbus call (shows D-Bus error names), optionally as another user:
    /// (exit code, stdout, stderr).
    fn gdbus(
        &self,
        user: Option<&str>,
        path: &str,
        method: &str,
        args: &[&str],
    ) -> (i32, String, String) {
        let mut cmd = match user {
            Some(u) => {
                tool("gdbus", "libglib2.0-bin");
                let mut c = tool("runuser", "util-linux");
                c.args(["-u", u, "--", "gdbus"]);
                c
            }
            None => tool("gdbus", "libglib2.0-bin"),
        };
        cmd.args([
            "call",
            "--address",
            &self.address(),
            "-d",
            NAME,
            "-o",
            path,
            "-m",
            method,
        ]);
        cmd.args(args);
        run(&mut cmd)
    }

    /// dbus-monitor on this bus; returns once it is monitoring.
    fn monitor(&self, rules: &[&str]) -> Monitor {
        let mut child = tool("dbus-monitor", "dbus-bin")
            .args(["--address", &self.address()])
            .args(rules)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Lines::default();
        let l2 = lines.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                l2.push(l);
            }
        });
        // It announces itself: NameAcquired, then NameLost once it became a monitor.
        lines.wait("member=NameLost");
        Monitor { child, lines }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Monitor {
    child: Child,
    lines: Lines,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the config with `dbus=session` (the harness writes dbus=off).
fn configure(d: &Daemon, services: &str) {
    let services = services.replace("{dir}", &d.dir.path().display().to_string());
    let general = general(d.dir.path()).replace("dbus=off", "dbus=session");
    std::fs::write(&d.cfg, format!("{services}\n{general}")).unwrap();
}

/// A daemon on `bus` with `services`; returns once it holds the name.
fn start_on(bus: &Bus, services: &str) -> Daemon {
    let d = Daemon::prepare("");
    configure(&d, services);
    let env = bus.env();
    let d = d.started(&[(env[0].0, env[0].1.as_str())]);
    d.log.wait("on the session bus as org.psentinel.PSentinel1");
    d
}

fn two_services(web: u16, db: u16) -> String {
    format!(
        "[our-app]\nport={web}\npausable=yes\ncheck_script=echo fine\ncheck_script_interval=30\n\n\
         [db]\nport={db}\n"
    )
}

#[test]
fn objects_properties_methods_and_errors() {
    let bus = Bus::start();
    let (web, db) = (free_port(), free_port());
    let d = start_on(&bus, &two_services(web, db));
    let app = svc_path("our_2dapp");

    let tree = bus.busctl_ok(&["tree", NAME]);
    assert!(
        tree.contains(&app) && tree.contains(&svc_path("db")),
        "{tree}"
    );
    let list = bus.call(MANAGER, MANAGER_IF, "ListServices", &[]);
    assert_eq!(list, serde_json::json!([[svc_path("db"), app]]));
    let got = bus.call(MANAGER, MANAGER_IF, "GetService", &["s", "our-app"]);
    assert_eq!(got, serde_json::json!([app]));
    assert_eq!(
        bus.prop(MANAGER, MANAGER_IF, "Version"),
        env!("CARGO_PKG_VERSION")
    );

    wait_status(web, 200);
    assert_eq!(bus.prop(&app, SERVICE_IF, "Name"), "our-app");
    assert_eq!(bus.prop(&app, SERVICE_IF, "Port"), web);
    assert_eq!(bus.prop(&app, SERVICE_IF, "Pausable"), true);
    assert_eq!(bus.prop(&app, SERVICE_IF, "State"), "up");
    assert_eq!(bus.prop(&app, SERVICE_IF, "LastExitStatus"), 0);
    assert_eq!(bus.prop(&svc_path("db"), SERVICE_IF, "LastExitStatus"), -1);
    assert!(
        bus.prop(&app, SERVICE_IF, "LastCheckTime")
            .as_u64()
            .unwrap()
            > 0
    );

    // Status(): the --json record with D-Bus types.
    let st = bus.call(&app, SERVICE_IF, "Status", &[]);
    let st = &st[0];
    assert_eq!(st["name"]["data"], "our-app");
    assert_eq!(st["port"]["type"], "q");
    assert_eq!(st["state"]["data"], "up");
    assert_eq!(st["http_status"]["data"], 200);
    // Who is probing (issue 8) flows into Status() as aa{sv}.
    probe(web);
    eventually("a prober in Status()", DEADLINE, || {
        let st = bus.call(&app, SERVICE_IF, "Status", &[]);
        let p = st[0]["probers"]["data"][0].clone();
        (p["address"]["data"] == "127.0.0.1" && p["haproxy"]["data"] == serde_json::json!({}))
            .then_some(())
    });

    // RunCheck runs the script and returns its exit status and output.
    let r = bus.call(&app, SERVICE_IF, "RunCheck", &[]);
    assert_eq!(r[0], 0);
    assert!(r[1].as_str().unwrap().contains("fine"), "{r}");

    // Disable / Enable / Pause / Resume via D-Bus: the probe follows, the record names root.
    let r = bus.call(&app, SERVICE_IF, "Disable", &["st", "deploy v2", "0"]);
    assert_eq!(r[0], "", "nothing replaced");
    assert_eq!(probe(web).status, 503);
    assert_eq!(bus.prop(&app, SERVICE_IF, "DisabledBy"), current_user());
    assert_eq!(bus.prop(&app, SERVICE_IF, "Reason"), "deploy v2");
    assert_eq!(bus.prop(&app, SERVICE_IF, "DisabledUntil"), 0);
    assert_eq!(d.svc("our-app")["disabled_by"], current_user());
    // A second Disable answers what it replaced.
    let r = bus.call(&app, SERVICE_IF, "Disable", &["st", "deploy v3", "0"]);
    let replaced = r[0].as_str().unwrap();
    assert!(
        replaced.starts_with(&format!("by {} since ", current_user()))
            && replaced.ends_with(": deploy v2"),
        "{r}"
    );
    bus.call(&app, SERVICE_IF, "Enable", &[]);
    assert_eq!(probe(web).status, 200);
    bus.call(&app, SERVICE_IF, "Pause", &[]);
    assert_eq!(probe(web).status, 503);
    assert_eq!(bus.prop(&app, SERVICE_IF, "State"), "paused");
    bus.call(&app, SERVICE_IF, "Resume", &[]);
    assert_eq!(probe(web).status, 200);
    bus.call(MANAGER, MANAGER_IF, "PauseAll", &[]);
    assert_eq!(probe(web).status, 503);
    assert_eq!(probe(db).status, 200, "db is not pausable");
    bus.call(MANAGER, MANAGER_IF, "RunAll", &[]);
    assert_eq!(probe(web).status, 200);

    // Typed errors with readable messages.
    let (code, _, err) = bus.gdbus(
        None,
        &app,
        &format!("{SERVICE_IF}.Disable"),
        &["x", "18446744073709551615"],
    );
    assert!(
        code != 0 && err.contains("InvalidArgs") && err.contains("100 years"),
        "{err}"
    );
    let (code, _, err) = bus.gdbus(
        None,
        MANAGER,
        &format!("{MANAGER_IF}.GetService"),
        &["nope"],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("org.psentinel.PSentinel1.Error.UnknownService: unknown service 'nope'"),
        "{err}"
    );
    let (code, _, err) = bus.gdbus(None, &svc_path("db"), &format!("{SERVICE_IF}.Pause"), &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("org.psentinel.PSentinel1.Error.NotPausable: service 'db' is not pausable"),
        "{err}"
    );

    // The daemon's own check, behind the bus policy (this private bus lets anyone call):
    // nobody reads but may not change anything.
    let (code, out, err) = bus.gdbus(
        Some("nobody"),
        &app,
        "org.freedesktop.DBus.Properties.Get",
        &[SERVICE_IF, "State"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("'up'"), "{out}");
    let (code, _, err) = bus.gdbus(
        Some("nobody"),
        &app,
        &format!("{SERVICE_IF}.Disable"),
        &["sneaky", "0"],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("org.psentinel.PSentinel1.Error.AccessDenied: nobody may read state, but Disable needs root"),
        "{err}"
    );
    let (code, _, err) = bus.gdbus(
        Some("nobody"),
        MANAGER,
        &format!("{MANAGER_IF}.Reload"),
        &[],
    );
    assert!(code != 0 && err.contains("Error.AccessDenied"), "{err}");
    assert_eq!(probe(web).status, 200, "a refused call changes nothing");
    d.log.wait("refused D-Bus Disable");
}

/// Waits for a PropertiesChanged on `path` that sets `prop` to the rendered `value`
/// (dbus-monitor's text, e.g. `string "disabled"`), after line `from`; returns its index.
fn wait_change(m: &Monitor, from: usize, path: &str, prop: &str, value: &str) -> usize {
    let end = Instant::now() + DEADLINE;
    let mut from = from;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let i = m.lines.wait_from(from, "member=PropertiesChanged", left);
        // The body arrives line by line: it is complete with the end of its second array
        // (changed, then invalidated properties).
        let lines = eventually("the end of a PropertiesChanged body", DEADLINE, || {
            let lines = m.lines.all();
            let closed = lines[i + 1..].iter().filter(|l| *l == "   ]").count();
            (closed >= 2).then_some(lines)
        });
        let body: Vec<&String> = lines[i + 1..]
            .iter()
            .take_while(|l| !l.starts_with("signal ") && !l.starts_with("method "))
            .collect();
        let on_path = lines[i].contains(&format!("path={path};"));
        let hit = body.windows(2).any(|w| {
            w[0].contains(&format!("string \"{prop}\"")) && w[1].trim_end().ends_with(value)
        });
        if on_path && hit {
            return i;
        }
        from = i + 1;
    }
}

#[test]
fn properties_changed_for_every_cause() {
    let bus = Bus::start();
    let (web, db) = (free_port(), free_port());
    let d = Daemon::prepare("");
    let flag = d.path("healthy");
    std::fs::write(&flag, "").unwrap();
    configure(
        &d,
        &format!(
            "[our-app]\nport={web}\ncheck_script=test -e {}\ncheck_script_interval=0.2\n\n[db]\nport={db}\n",
            flag.display()
        ),
    );
    let env = bus.env();
    let d = d.started(&[(env[0].0, env[0].1.as_str())]);
    d.log.wait("on the session bus");
    let app = svc_path("our_2dapp");
    wait_status(web, 200);
    let m = bus.monitor(&["type='signal',interface='org.freedesktop.DBus.Properties'"]);

    // A `-c` command over the Unix socket.
    let t0 = Instant::now();
    d.ok(&["disable", "our-app", "maintenance"]);
    let i = wait_change(&m, 0, &app, "State", "string \"disabled\"");
    let latency = t0.elapsed();
    // And from the engine's change (its audit log line) to the signal on the bus.
    let logged = d.log.wait(&format!("{}: disable our-app", current_user()));
    let logged = d.log.all()[logged]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let logged = humantime::parse_rfc3339(&logged).unwrap();
    let on_bus: f64 = m.lines.all()[i]
        .split_whitespace()
        .find_map(|w| w.strip_prefix("time="))
        .unwrap()
        .parse()
        .unwrap();
    let on_bus = std::time::UNIX_EPOCH + Duration::from_secs_f64(on_bus);
    eprintln!(
        "PropertiesChanged on the bus {:?} after the engine's change; seen by dbus-monitor \
         {latency:?} after `psentinel -c disable` was started",
        on_bus.duration_since(logged).unwrap_or_default()
    );
    wait_change(
        &m,
        i,
        &app,
        "DisabledBy",
        &format!("string \"{}\"", current_user()),
    );
    wait_change(&m, i, &app, "Enabled", "boolean false");
    wait_change(&m, i, &app, "Reason", "string \"maintenance\"");
    d.ok(&["enable", "our-app"]);
    let i = wait_change(&m, i, &app, "State", "string \"up\"");

    // A check result.
    std::fs::remove_file(&flag).unwrap();
    let i = wait_change(&m, i, &app, "State", "string \"down\"");
    wait_change(&m, i, &app, "LastExitStatus", "int32 1");
    std::fs::write(&flag, "").unwrap();
    let i = wait_change(&m, i, &app, "State", "string \"up\"");

    // Another D-Bus client, with an expiry that lifts itself: 3 s, so that the two process
    // spawns below surely fall inside it on a loaded machine.
    let t = Instant::now();
    bus.call(&app, SERVICE_IF, "Disable", &["st", "short", "3"]);
    let until = bus
        .prop(&app, SERVICE_IF, "DisabledUntil")
        .as_u64()
        .unwrap();
    assert!(until > 0, "DisabledUntil set for a timed disable");
    assert_eq!(probe(web).status, 503);
    let i = wait_change(&m, i, &app, "State", "string \"disabled\"");
    wait_status(web, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(2900),
        "lifted too early"
    );
    let i = wait_change(&m, i, &app, "DisabledUntil", "uint64 0");
    wait_change(&m, i, &app, "State", "string \"up\"");
    assert_eq!(bus.prop(&app, SERVICE_IF, "Enabled"), true);
    d.log.wait("the timed disable of our-app ran out");
}

#[test]
fn objects_follow_reload_and_object_manager() {
    let bus = Bus::start();
    let (web, db, extra) = (free_port(), free_port(), free_port());
    let d = start_on(&bus, &two_services(web, db));
    let managed = bus.call(
        MANAGER,
        "org.freedesktop.DBus.ObjectManager",
        "GetManagedObjects",
        &[],
    );
    let objs = managed[0].as_object().unwrap();
    assert!(objs.contains_key(&svc_path("db")) && objs.contains_key(&svc_path("our_2dapp")));
    assert_eq!(
        objs[&svc_path("db")][SERVICE_IF]["Port"]["data"],
        db,
        "{managed}"
    );

    let m = bus.monitor(&["type='signal',interface='org.freedesktop.DBus.ObjectManager'"]);
    let pm = bus.monitor(&["type='signal',interface='org.freedesktop.DBus.Properties'"]);
    configure(
        &d,
        &format!("[our-app]\nport={web}\npausable=no\n\n[1st.new]\nport={extra}\n"),
    );
    d.ok(&["reload"]);
    // A service that stays but changed its configuration: its properties change.
    wait_change(&pm, 0, &svc_path("our_2dapp"), "Pausable", "boolean false");
    let new = svc_path("_31st_2enew");
    m.lines.wait(&format!("object path \"{new}\""));
    m.lines.wait("member=InterfacesRemoved");
    m.lines.wait(&format!("object path \"{}\"", svc_path("db")));
    let all = m.lines.all().join("\n");
    assert!(all.contains("member=InterfacesAdded"), "{all}");

    let managed = bus.call(
        MANAGER,
        "org.freedesktop.DBus.ObjectManager",
        "GetManagedObjects",
        &[],
    );
    // zbus also lists the bare ".../service" node, with no interfaces: skip it.
    let mut keys: Vec<&String> = managed[0]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, ifaces)| !ifaces.as_object().unwrap().is_empty())
        .map(|(k, _)| k)
        .collect();
    keys.sort();
    assert_eq!(keys, [&new, &svc_path("our_2dapp")]);
    assert_eq!(bus.prop(&new, SERVICE_IF, "Name"), "1st.new");
    let (code, _, err) = bus.busctl(&["get-property", NAME, &svc_path("db"), SERVICE_IF, "Name"]);
    assert_ne!(code, 0, "the removed service's object is gone: {err}");
    let list = bus.call(MANAGER, MANAGER_IF, "ListServices", &[]);
    assert_eq!(list, serde_json::json!([[new, svc_path("our_2dapp")]]));

    // Reload over D-Bus too; a broken file is a typed error and the old config stays.
    bus.call(MANAGER, MANAGER_IF, "Reload", &[]);
    std::fs::write(&d.cfg, "[broken\n").unwrap();
    let (code, _, err) = bus.gdbus(None, MANAGER, &format!("{MANAGER_IF}.Reload"), &[]);
    assert!(
        code != 0 && err.contains("org.psentinel.PSentinel1.Error.ReloadRefused: reload refused"),
        "{err}"
    );
    assert_eq!(bus.prop(&new, SERVICE_IF, "State"), "up");
}

#[test]
fn survives_a_missing_or_dying_bus_and_reconnects() {
    // Start with no bus at the address: READY=1 and probes all the same.
    let mut bus = Bus::start();
    bus.kill();
    let port = free_port();
    let d = Daemon::prepare("");
    configure(&d, &format!("[web]\nport={port}\n"));
    let env = bus.env();
    let d = d.started(&[(env[0].0, env[0].1.as_str())]);
    d.log
        .wait("cannot serve org.psentinel.PSentinel1 on the session bus");
    assert_eq!(probe(port).status, 200);

    // The bus appears: the daemon connects.
    bus.up();
    let first = d.log.wait("on the session bus as org.psentinel.PSentinel1");
    assert_eq!(bus.prop(&svc_path("web"), SERVICE_IF, "State"), "up");

    // The bus dies: probes and the control socket go on; it comes back at the same address.
    bus.kill();
    d.log.wait("lost the session bus");
    assert_eq!(probe(port).status, 200);
    d.ok(&["disable", "web", "while the bus was away"]);
    assert_eq!(probe(port).status, 503);
    let t = Instant::now();
    bus.up();
    d.log.wait_from(
        first + 1,
        "on the session bus as org.psentinel.PSentinel1",
        DEADLINE,
    );
    eprintln!("back on the bus {:?} after it returned", t.elapsed());
    assert_eq!(bus.prop(&svc_path("web"), SERVICE_IF, "State"), "disabled");
    bus.call(&svc_path("web"), SERVICE_IF, "Enable", &[]);
    assert_eq!(probe(port).status, 200);
}

/// The interfaces of an introspection document: interface -> member -> its args and
/// annotations, in order. Comments, layout and the standard interfaces are left out.
fn interfaces(xml: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let (mut iface, mut member) = (None::<String>, None::<String>);
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = &after[after.find("-->").expect("closed comment") + 3..];
            continue;
        }
        let end = rest.find('>').expect("closed tag");
        let tag = rest[1..end].trim_end_matches('/').trim().to_string();
        let self_closing = rest[..end].ends_with('/');
        rest = &rest[end + 1..];
        let (kind, attrs) = tag.split_once(char::is_whitespace).unwrap_or((&tag, ""));
        let mut a: BTreeMap<String, String> = BTreeMap::new();
        for part in attrs.split('"').collect::<Vec<_>>().chunks(2) {
            if let [k, v] = part {
                a.insert(k.trim().trim_end_matches('=').to_string(), v.to_string());
            }
        }
        let attrs = a
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        match kind {
            "interface" => iface = Some(a["name"].clone()),
            "/interface" => iface = None,
            "method" | "signal" | "property" => {
                let Some(i) = &iface else { continue };
                let key = format!("{kind} {}", a["name"]);
                out.entry(i.clone())
                    .or_default()
                    .insert(key.clone(), vec![attrs]);
                member = (!self_closing).then_some(key);
            }
            "/method" | "/signal" | "/property" => member = None,
            "arg" | "annotation" => {
                let Some(i) = &iface else { continue };
                let m = member.clone().unwrap_or_else(|| "(interface)".into());
                out.entry(i.clone())
                    .or_default()
                    .entry(m)
                    .or_default()
                    .push(format!("{kind} {attrs}"));
            }
            _ => {}
        }
    }
    out.retain(|k, _| k.starts_with("org.psentinel."));
    out
}

#[test]
fn introspection_matches_the_files() {
    let bus = Bus::start();
    let _d = start_on(&bus, &format!("[our-app]\nport={}\n", free_port()));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (path, iface) in [
        (MANAGER.to_string(), MANAGER_IF),
        (svc_path("our_2dapp"), SERVICE_IF),
    ] {
        let live = bus.busctl_ok(&["introspect", "--xml-interface", NAME, &path]);
        let file: PathBuf = root.join(format!("dbus/{iface}.xml"));
        let kept = std::fs::read_to_string(&file).unwrap();
        let live = interfaces(&live);
        let kept = interfaces(&kept);
        assert!(
            kept.contains_key(iface),
            "{} has no interface {iface}",
            file.display()
        );
        assert_eq!(
            live.get(iface),
            kept.get(iface),
            "{} differs from the live object {path}: update the file (busctl introspect --xml-interface)",
            file.display()
        );
        assert!(
            live[iface].len() >= 6,
            "parsed too little: {:?}",
            live[iface]
        );
    }
}

/// The shape of a busctl --json=short value: dicts and arrays of {type, data} unwrapped to
/// their keys, so that it compares with the JSON of `status --json`.
fn bus_shape(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let data = &v["data"];
    match v["type"].as_str().unwrap_or_default() {
        "a{sv}" => Value::Object(
            data.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), bus_shape(v)))
                .collect(),
        ),
        // An empty list is null on both sides (json_shape makes a list of no object null).
        "aa{sv}" if data.as_array().is_some_and(|a| a.is_empty()) => Value::Null,
        "aa{sv}" => Value::Array(
            data.as_array()
                .unwrap()
                .iter()
                .map(|d| bus_shape(&serde_json::json!({"type": "a{sv}", "data": d})))
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// The same with `status --json`'s record: keys kept, leaves made null (D-Bus has no null,
/// and an absent HAProxy view is an empty dict there).
fn json_shape(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let s = match (k.as_str(), v) {
                        ("haproxy", Value::Null) => Value::Object(Default::default()),
                        _ => json_shape(v),
                    };
                    (k.clone(), s)
                })
                .collect(),
        ),
        Value::Array(a) if a.iter().any(Value::is_object) => {
            Value::Array(a.iter().map(json_shape).collect())
        }
        _ => Value::Null,
    }
}

/// Status() is documented as `status --json`'s record: same keys, prober entries included,
/// with and without HAProxy's send-state view.
#[test]
fn status_has_the_keys_and_shape_of_status_json() {
    let bus = Bus::start();
    let (web, db) = (free_port(), free_port());
    let d = start_on(&bus, &two_services(web, db));
    let app = svc_path("our_2dapp");
    wait_status(web, 200);
    probe(web);
    raw(
        web,
        b"OPTIONS / HTTP/1.0\r\nX-Haproxy-Server-State: UP; name=bck/srv1; node=lb1\r\n\r\n",
    );
    eventually("both probers in status --json", DEADLINE, || {
        (d.svc("our-app")["probers"].as_array().unwrap().len() == 2).then_some(())
    });
    let json = json_shape(&d.svc("our-app"));
    let st = bus.call(&app, SERVICE_IF, "Status", &[]);
    let dbus = bus_shape(&serde_json::json!({"type": "a{sv}", "data": st[0]}));
    let haproxy = &dbus["probers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["haproxy"].clone())
        .collect::<Vec<_>>();
    assert!(
        haproxy
            .iter()
            .any(|h| h.as_object().is_some_and(|o| o.len() == 6)),
        "a HAProxy view with its six keys: {dbus:#}"
    );
    // Sorted the same way (most recent first) in both, so compare as a whole.
    assert_eq!(dbus, json, "D-Bus Status() vs status --json");
}

/// A daemon with `log_level=4` (as in Case 1's file) on a private bus, called over D-Bus and the
/// socket, then stopped: every line it logged.
fn trace_run(extra_env: &[(&str, &str)]) -> Vec<String> {
    let bus = Bus::start();
    let (web, db) = (free_port(), free_port());
    let mut d = Daemon::prepare("");
    configure(&d, &two_services(web, db));
    let cfg = std::fs::read_to_string(&d.cfg).unwrap();
    std::fs::write(&d.cfg, cfg.replace("log_level=3", "log_level=4")).unwrap();
    let env = bus.env();
    // -d --foreground keeps log_level as written (-D would only make it at least debug).
    let mut cmd = Command::new(BIN);
    cmd.args(["-d", "--foreground", "-f"])
        .arg(&d.cfg)
        .env("NOTIFY_SOCKET", &d.notify.path)
        .env(env[0].0, &env[0].1)
        .env_remove("JOURNAL_STREAM")
        .env_remove("PSENTINEL_LOG")
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let log = d.log.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            log.push(line);
        }
    });
    d.child = Some(child);
    d.log.wait("on the session bus as org.psentinel.PSentinel1");
    let app = svc_path("our_2dapp");
    for _ in 0..5 {
        bus.prop(&app, SERVICE_IF, "State");
    }
    bus.call(&app, SERVICE_IF, "Disable", &["st", "deploy", "0"]);
    d.ok(&["stop_server"]);
    wait_exit(d.child.as_mut().unwrap(), DEADLINE);
    d.log.all()
}

/// log_level=4 is psentinel's trace, not the bus library's message dumps; PSENTINEL_LOG asks
/// for those.
#[test]
fn dependency_crates_log_at_warn_unless_asked() {
    let lines = trace_run(&[]);
    assert!(
        lines.iter().any(|l| l.contains("DEBUG")) && lines.iter().any(|l| l.contains("disable")),
        "psentinel's own lines are there: {lines:#?}"
    );
    // zbus's trace of the connection (its SASL handshake) and of each message.
    let foreign: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("EXTERNAL mechanism") || l.contains("zbus"))
        .collect();
    assert!(foreign.is_empty(), "lines of the bus library: {foreign:#?}");

    let lines = trace_run(&[("PSENTINEL_LOG", "zbus=trace")]);
    assert!(
        lines.iter().any(|l| l.contains("TRACE zbus")),
        "PSENTINEL_LOG=zbus=trace shows zbus's trace, named: {lines:#?}"
    );
}

/// The shipped policy on a real system bus, the daemon as user psentinel under systemd.
#[test]
fn system_bus_policy_and_authorisation_in_sysbox() {
    let b = Sysbox::up("dbus-system");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    b.cp(Path::new(BIN), "/usr/bin/psentinel");
    b.cp(
        &root.join("dbus/org.psentinel.PSentinel1.conf"),
        "/usr/share/dbus-1/system.d/org.psentinel.PSentinel1.conf",
    );
    b.cp(
        &root.join("systemd/sysusers.d/psentinel.conf"),
        "/usr/lib/sysusers.d/psentinel.conf",
    );
    b.ok("systemd-sysusers psentinel.conf");
    b.ok("useradd -M -G psentinel alice && useradd -M bob");
    b.ok(
        "busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig",
    );
    b.ok("mkdir -p /etc/psentinel");
    b.write(
        "/etc/psentinel/psentinel.cfg",
        "[our-app]\nport=48080\npausable=yes\n\n[general]\ndbus=system\n\
         sock_file=/run/psentinel/psentinel.sock\nstate_dir=/var/lib/psentinel\n",
    );
    b.ok("chmod 644 /etc/psentinel/psentinel.cfg");
    // The shipped, hardened units (User=psentinel), as `make install` puts them.
    for unit in ["psentinel.service", "psentinel.socket"] {
        b.cp(
            &root.join("systemd").join(unit),
            &format!("/etc/systemd/system/{unit}"),
        );
    }
    b.cp(
        &root.join("systemd/tmpfiles.d/psentinel.conf"),
        "/usr/lib/tmpfiles.d/psentinel.conf",
    );
    b.ok("systemd-tmpfiles --create psentinel.conf && systemctl daemon-reload");
    let (code, out, err) = b.sh("systemctl start psentinel.service");
    assert_eq!(
        code,
        0,
        "psentinel.service did not start: {out}{err}\n{}",
        b.sh("journalctl -u psentinel --no-pager").1
    );
    b.wait_for(
        "name on the system bus",
        20,
        "busctl --system status org.psentinel.PSentinel1 >/dev/null",
    );
    let path = "/org/psentinel/PSentinel1/service/our_2dapp";
    let probe = |want: &str| {
        b.wait_for(
            &format!("probe answering {want}"),
            10,
            &format!(
                "test \"$(curl -s -o /dev/null -w '%{{http_code}}' -X OPTIONS http://127.0.0.1:48080/)\" = {want}"
            ),
        );
    };
    let get = |user: &str, prop: &str| {
        b.ok(&format!(
            "runuser -u {user} -- busctl --system get-property {NAME} {path} {SERVICE_IF} {prop}"
        ))
        .trim()
        .to_string()
    };
    probe("200");
    assert_eq!(get("nobody", "State"), "s \"up\"");

    // Everybody reads; nobody changes. The policy lets the call through to psentinel, which
    // refuses it with its own typed error and a sentence that says why (not the bus's bare
    // "Access denied").
    let (code, out, err) = b.sh(&format!(
        "runuser -u nobody -- dbus-send --system --print-reply --dest={NAME} {path} \
         {SERVICE_IF}.Disable string:sneaky uint64:0"
    ));
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("org.psentinel.PSentinel1.Error.AccessDenied")
            && err.contains(
                "nobody may read state, but Disable needs root or membership of group 'psentinel'"
            ),
        "{err}"
    );
    let (code, _, err) = b.sh(&format!(
        "runuser -u bob -- busctl --system call {NAME} /org/psentinel/PSentinel1 {MANAGER_IF} PauseAll"
    ));
    assert!(
        code != 0 && err.contains("bob may read state, but PauseAll needs root"),
        "{err}"
    );
    // Properties.Set stays closed at the bus (there is nothing writable anyway).
    let (code, _, err) = b.sh(&format!(
        "runuser -u nobody -- busctl --system set-property {NAME} {path} {SERVICE_IF} Reason s x"
    ));
    assert!(code != 0 && err.contains("Access denied"), "{err}");
    let status = b.ok(&format!(
        "runuser -u nobody -- busctl --system call {NAME} {path} {SERVICE_IF} Status"
    ));
    assert!(status.contains("our-app"), "{status}");
    probe("200");

    // Root disables and enables; the probe follows every change.
    b.ok(&format!(
        "busctl --system call {NAME} {path} {SERVICE_IF} Disable st deploy 0"
    ));
    probe("503");
    assert_eq!(get("nobody", "DisabledBy"), "s \"root\"");
    b.ok(&format!(
        "busctl --system call {NAME} {path} {SERVICE_IF} Enable"
    ));
    probe("200");

    // A member of group psentinel may change state too, and is named in the record.
    b.ok(&format!(
        "runuser -u alice -- busctl --system call {NAME} {path} {SERVICE_IF} Pause"
    ));
    probe("503");
    assert_eq!(get("nobody", "State"), "s \"paused\"");
    b.ok(&format!(
        "runuser -u alice -- busctl --system call {NAME} {path} {SERVICE_IF} Resume"
    ));
    probe("200");
    b.ok(&format!(
        "runuser -u alice -- busctl --system call {NAME} {path} {SERVICE_IF} Disable st alice-did-it 0"
    ));
    probe("503");
    assert_eq!(get("nobody", "DisabledBy"), "s \"alice\"");
    b.ok(&format!(
        "busctl --system call {NAME} /org/psentinel/PSentinel1 {MANAGER_IF} PauseAll"
    ));
    b.ok(&format!(
        "busctl --system call {NAME} {path} {SERVICE_IF} Enable"
    ));
    probe("503"); // still paused
    b.ok(&format!(
        "busctl --system call {NAME} /org/psentinel/PSentinel1 {MANAGER_IF} RunAll"
    ));
    probe("200");

    // The journal names who did it, with the field operators filter on.
    b.wait_for(
        "alice's disable in the journal",
        10,
        "journalctl -u psentinel PSENTINEL_ACTOR=alice -o cat --no-pager | grep -q 'disable our-app'",
    );

    // Only psentinel (or root) may own the name.
    let (code, _, err) = b.sh(&format!(
        "runuser -u nobody -- busctl --system call org.freedesktop.DBus /org/freedesktop/DBus \
         org.freedesktop.DBus RequestName su {NAME} 4"
    ));
    assert!(code != 0 && err.contains("Access denied"), "{err}");
}

/// The D-Bus form of `--wait`: Disable, then WaitForHAProxy returns once HAProxy has taken the
/// server out (read right after: never UP), and after Enable once it is back.
#[test]
fn wait_for_haproxy_after_disable_and_enable() {
    use crate::haproxy_support::Haproxy;
    let bus = Bus::start();
    let port = free_port();
    let d = start_on(&bus, &format!("[web]\nport={port}\nhaproxy_fall=3\n"));
    let hap = Haproxy::start(&format!(
        "backend bck\n    option httpchk\n    server srv1 127.0.0.1:{port} check inter 200ms fall 3 rise 2\n"
    ));
    hap.wait_status("bck", "srv1", "UP");
    eventually("HAProxy seen probing", DEADLINE, || {
        (d.svc("web")["probes_count"].as_u64().unwrap_or(0) >= 2).then_some(())
    });
    let path = svc_path("web");
    bus.call(&path, SERVICE_IF, "Disable", &["st", "deploy", "0"]);
    let r = bus.call(&path, SERVICE_IF, "WaitForHAProxy", &["t", "30"]);
    let after = hap.server("bck", "srv1").status().to_string();
    assert_eq!(r[0], true, "{r}");
    assert!(
        !after.starts_with("UP"),
        "returned while HAProxy says {after}: {r}"
    );
    bus.call(&path, SERVICE_IF, "Enable", &[]);
    let r = bus.call(&path, SERVICE_IF, "WaitForHAProxy", &["t", "30"]);
    let after = hap.server("bck", "srv1").status().to_string();
    assert_eq!(r[0], true, "{r}");
    assert!(
        after.starts_with("UP"),
        "returned while HAProxy says {after}: {r}"
    );
    hap.assert_clean_log();
}

/// The capacity guard on D-Bus: Disable of the last usable server is refused with a typed
/// error naming the load balancer; DisableWithOptions with `force` takes it out; an unknown
/// option is refused, never ignored. WaitUntilDrained answers from HAProxy's session count.
#[test]
fn capacity_guard_error_force_option_and_wait_until_drained() {
    let bus = Bus::start();
    let (web, db) = (free_port(), free_port());
    let d = start_on(&bus, &two_services(web, db));
    let app = svc_path("our_2dapp");
    wait_status(web, 200);
    let hap = |state: &str, scur: u32| {
        raw(
            web,
            format!("OPTIONS / HTTP/1.0\r\nX-Haproxy-Server-State: {state}; name=be/a; node=lb1; weight=1/1; scur={scur}/{scur}\r\n\r\n").as_bytes(),
        );
    };
    hap("UP", 0);
    eventually("the send-state prober in status", DEADLINE, || {
        d.ok(&["status", "our-app"])
            .contains("backend be: this server 1 of 1")
            .then_some(())
    });
    // PauseAll (our-app is the one pausable service) is guarded the same way.
    let (code, _, err) = bus.gdbus(None, MANAGER, &format!("{MANAGER_IF}.PauseAll"), &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("org.psentinel.PSentinel1.Error.CapacityGuard"),
        "{err}"
    );
    let force = "{'force': <true>}";
    let all = format!("{MANAGER_IF}.PauseAllWithOptions");
    let (code, out, err) = bus.gdbus(None, MANAGER, &all, &[force]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(bus.prop(&app, SERVICE_IF, "State"), "paused");
    bus.call(MANAGER, MANAGER_IF, "RunAll", &[]);

    let disable = format!("{SERVICE_IF}.Disable");
    let (code, _, err) = bus.gdbus(None, &app, &disable, &["deploy", "0"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("org.psentinel.PSentinel1.Error.CapacityGuard: refused by the capacity guard: taking out our-app: HAProxy lb1 (127.0.0.1) backend be would keep 0 of 1 weight"),
        "{err}"
    );
    let with = format!("{SERVICE_IF}.DisableWithOptions");
    let (code, _, err) = bus.gdbus(None, &app, &with, &["deploy", "0", "{'forse': <true>}"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("unknown option 'forse' (did you mean 'force'?); known: force (b)"),
        "{err}"
    );
    assert_eq!(bus.prop(&app, SERVICE_IF, "State"), "up");
    let (code, out, err) = bus.gdbus(None, &app, &with, &["deploy", "0", "{'force': <true>}"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(bus.prop(&app, SERVICE_IF, "State"), "disabled");

    // Out, two sessions left: not drained at the timeout, then drained once they end.
    hap("DOWN", 2);
    let r = bus.call(&app, SERVICE_IF, "WaitUntilDrained", &["t", "1"]);
    assert_eq!(r[0], false, "{r}");
    assert!(
        r[1].as_str()
            .unwrap()
            .contains("HAProxy lb1 still holds 2 session(s)"),
        "{r}"
    );
    hap("DOWN", 0);
    let r = bus.call(&app, SERVICE_IF, "WaitUntilDrained", &["t", "5"]);
    assert_eq!(r[0], true, "{r}");
}

/// A monitoring plugin's states on the bus: `State` warning, the plugin's words in `Summary`,
/// and `Flapping` once the check alternates; each change signalled.
#[test]
fn plugin_warning_summary_and_flapping_on_the_bus() {
    let bus = Bus::start();
    let port = free_port();
    let d = Daemon::prepare("");
    std::fs::write(d.path("code"), "1").unwrap();
    d.script(
        "plugin.sh",
        &format!(
            "#!/bin/sh\nc=$(cat {0}/code)\n\
             if [ \"$c\" = flip ]; then\n\
               if [ -e {0}/t ]; then rm {0}/t; echo 'CRITICAL - flip'; exit 2; fi\n\
               touch {0}/t; echo 'OK - flop'; exit 0\n\
             fi\n\
             echo \"LOAD WARNING - load average: 9.1 | load1=9.1;5;10;0\"; exit $c\n",
            d.dir.path().display()
        ),
    );
    configure(
        &d,
        &format!(
            "[plug]\nport={port}\ncheck_script={{dir}}/plugin.sh\ncheck_style=nagios\n\
             check_script_interval=0.2\nflap_max_changes=2\nflap_window=600\nflap_hold=600\n"
        ),
    );
    let env = bus.env();
    let d = d.started(&[(env[0].0, env[0].1.as_str())]);
    d.log.wait("on the session bus");
    let path = svc_path("plug");
    let m = bus.monitor(&["type='signal',interface='org.freedesktop.DBus.Properties'"]);
    eventually("State warning", DEADLINE, || {
        (bus.prop(&path, SERVICE_IF, "State") == "warning").then_some(())
    });
    assert_eq!(
        bus.prop(&path, SERVICE_IF, "Summary"),
        "LOAD WARNING - load average: 9.1"
    );
    assert_eq!(bus.prop(&path, SERVICE_IF, "Flapping"), false);
    let st = bus.call(&path, SERVICE_IF, "Status", &[]);
    assert_eq!(st[0]["check_style"]["data"], "nagios");
    assert_eq!(st[0]["flapping_since"]["data"], 0);

    std::fs::write(d.path("code"), "flip").unwrap();
    let i = wait_change(&m, 0, &path, "Flapping", "boolean true");
    wait_change(&m, i, &path, "State", "string \"down\"");
    assert_eq!(
        bus.prop(&path, SERVICE_IF, "Reason"),
        "",
        "the operator's: none"
    );
    let st = bus.call(&path, SERVICE_IF, "Status", &[]);
    assert!(
        st[0]["state_reason"]["data"]
            .as_str()
            .unwrap()
            .starts_with("Flapping: "),
        "{st}"
    );
}

/// A Disable whose state file cannot be written is in effect and answers the typed error
/// NotSaved; the bus shows the unit properties too (empty without `unit=`).
#[test]
fn disable_that_cannot_be_saved_answers_not_saved() {
    let bus = Bus::start();
    let web = free_port();
    let d = Daemon::prepare("");
    // state_dir cannot be created: a file holds its name.
    std::fs::write(d.path("state"), "").unwrap();
    configure(&d, &format!("[web]\nport={web}\n"));
    let env = bus.env();
    let d = d.started(&[(env[0].0, env[0].1.as_str())]);
    d.log.wait("on the session bus as org.psentinel.PSentinel1");
    let app = svc_path("web");
    assert_eq!(bus.prop(&app, SERVICE_IF, "Unit"), "");
    assert_eq!(bus.prop(&app, SERVICE_IF, "UnitState"), "");
    let (code, _, err) = bus.gdbus(
        None,
        &app,
        &format!("{SERVICE_IF}.Disable"),
        &["deploy", "0"],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains(
            "org.psentinel.PSentinel1.Error.NotSaved: the change is in effect, but NOT SAVED"
        ),
        "{err}"
    );
    assert_eq!(probe(web).status, 503, "in effect");
}
