//! Who may change what under a real systemd with a real polkitd (tests/box/psbox): the
//! shipped `.policy`, the documented rules example (examples/polkit-deploy.rules), users
//! created in the box, D-Bus (`busctl call`) and the control socket (`psentinel -c`) alike.
//!
//! polkitd's maintainer scripts want a running systemd, so it is not in the box image:
//! `psbox install` fetches its .debs on the host (cached) and `dpkg -i`s them in the booted
//! box (docs/development.md).

use crate::sysbox::Sysbox;
use crate::systemd::{box_probe, installed_box};

/// polkitd; `psbox install` brings what it needs that the box lacks (libpolkit-*, glib,
/// libpam-systemd, ...).
pub const POLKIT_DEBS: &[&str] = &["polkitd"];

const CFG: &str = "\
[ourapp]
port = 48180

[db]
port = 48181
control_group = dbops

[general]
dbus = system
";

const OURAPP: &str = "/org/psentinel/PSentinel1/service/ourapp";
const DB: &str = "/org/psentinel/PSentinel1/service/db";

/// `busctl call ... Disable` (or Enable) as `user` (None: root): (exit code, stderr).
fn bus(b: &Sysbox, user: Option<&str>, path: &str, method: &str) -> (i32, String) {
    let args = match method {
        "Disable" => " st 'by bus' 0",
        _ => "",
    };
    let run_as = user.map_or(String::new(), |u| format!("runuser -u {u} -- "));
    let (code, _, err) = b.sh(&format!(
        "{run_as}busctl call org.psentinel.PSentinel1 {path} \
         org.psentinel.PSentinel1.Service {method}{args}"
    ));
    (code, err)
}

/// `psentinel -c WORDS` as `user` (None: root): (exit code, stderr).
fn ctl(b: &Sysbox, user: Option<&str>, words: &str) -> (i32, String) {
    let run_as = user.map_or(String::new(), |u| format!("runuser -u {u} -- "));
    let (code, _, err) = b.sh(&format!("{run_as}psentinel -c {words}"));
    (code, err)
}

fn allowed(what: &str, (code, err): (i32, String)) {
    assert_eq!(code, 0, "{what}: refused: {err}");
}

fn refused(what: &str, (code, err): (i32, String)) {
    assert_ne!(code, 0, "{what}: allowed");
    assert!(
        err.contains("needs root or membership of group"),
        "{what}: {err}"
    );
}

/// Both doors for one user and service: (bus Disable, bus Enable, socket disable, enable).
fn may(b: &Sysbox, user: Option<&str>, service: &str, path: &str) {
    let who = user.unwrap_or("root");
    allowed(
        &format!("{who}: bus Disable {service}"),
        bus(b, user, path, "Disable"),
    );
    assert_eq!(box_probe(b, port(service)), "503");
    allowed(
        &format!("{who}: bus Enable {service}"),
        bus(b, user, path, "Enable"),
    );
    allowed(
        &format!("{who}: -c disable {service}"),
        ctl(b, user, &format!("disable {service} by-socket")),
    );
    assert_eq!(box_probe(b, port(service)), "503");
    allowed(
        &format!("{who}: -c enable {service}"),
        ctl(b, user, &format!("enable {service}")),
    );
    assert_eq!(box_probe(b, port(service)), "200");
}

fn may_not(b: &Sysbox, user: &str, service: &str, path: &str) {
    refused(
        &format!("{user}: bus Disable {service}"),
        bus(b, Some(user), path, "Disable"),
    );
    refused(
        &format!("{user}: -c disable {service}"),
        ctl(b, Some(user), &format!("disable {service} nope")),
    );
    assert_eq!(
        box_probe(b, port(service)),
        "200",
        "{user} changed {service}"
    );
}

fn port(service: &str) -> u16 {
    if service == "ourapp" {
        48180
    } else {
        48181
    }
}

#[test]
fn sysbox_polkit_rules_and_groups_decide_on_both_doors() {
    let b = installed_box("polkit", CFG);
    b.install(POLKIT_DEBS);
    let rules = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/polkit-deploy.rules"),
    )
    .unwrap();
    b.write("/etc/polkit-1/rules.d/50-psentinel-deploy.rules", &rules);
    // alice deploys ourapp (polkit rule), bob runs db (db's control_group), carol nothing.
    b.ok(
        "groupadd deploy && groupadd dbops && useradd -m -G deploy alice && \
          useradd -m -G dbops bob && useradd -m carol",
    );
    // polkitd is installed but not started, as on a server after boot (its unit is static):
    // the first question starts it through the bus.
    b.ok("systemctl stop polkit.service && systemctl start psentinel.socket psentinel.service");
    b.wait_for(
        "psentinel on the system bus",
        30,
        "busctl status org.psentinel.PSentinel1 >/dev/null",
    );
    assert_eq!(box_probe(&b, 48180), "200");

    // polkitd runs: its rule lets alice change ourapp, not db.
    may(&b, Some("alice"), "ourapp", OURAPP);
    let by = b.ok("psentinel -c disable ourapp x >/dev/null && runuser -u alice -- busctl call org.psentinel.PSentinel1 /org/psentinel/PSentinel1/service/ourapp org.psentinel.PSentinel1.Service Disable st 'alice again' 0 && psentinel -c status --json");
    assert!(by.contains("\"disabled_by\": \"alice\""), "{by}");
    allowed("root: enable ourapp", ctl(&b, None, "enable ourapp"));
    b.wait_for(
        "the journal names what polkit allowed",
        10,
        "journalctl -u psentinel.service --no-pager -o cat PSENTINEL_ACTOR=alice | \
         grep -q 'polkit allows disable of ourapp'",
    );
    may_not(&b, "alice", "db", DB);
    // The group rule: bob may change db, and ourapp is not his.
    may(&b, Some("bob"), "db", DB);
    may_not(&b, "bob", "ourapp", OURAPP);
    // carol is refused everywhere; root always may.
    may_not(&b, "carol", "ourapp", OURAPP);
    may_not(&b, "carol", "db", DB);
    may(&b, None, "ourapp", OURAPP);
    may(&b, None, "db", DB);
    // polkit's default for others is auth_admin: a call that does not allow interaction is
    // told so with the standard error; one that does is asked of polkit with interaction
    // (no authentication agent runs here, so it is refused).
    let (_, out, err) = b.sh(&format!(
        "runuser -u carol -- dbus-send --system --print-reply --dest=org.psentinel.PSentinel1 \
         {OURAPP} org.psentinel.PSentinel1.Service.Disable string:x uint64:0"
    ));
    assert!(
        err.contains("org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"),
        "{out}{err}"
    );
    let (code, _, err) = b.sh(&format!(
        "runuser -u carol -- busctl --allow-interactive-authorization=yes call \
         org.psentinel.PSentinel1 {OURAPP} org.psentinel.PSentinel1.Service Disable st x 0"
    ));
    assert!(code != 0 && err.contains("needs root"), "{err}");
    // Not even alice may reload (service-less) through polkit's ourapp rule.
    refused("alice: -c reload", ctl(&b, Some("alice"), "reload"));

    // polkitd masked (how an operator turns it off: a stopped one is started again by the
    // bus on the next question): the group rules decide alone.
    b.ok("systemctl mask --runtime polkit.service && systemctl stop polkit.service");
    may_not(&b, "alice", "ourapp", OURAPP);
    may(&b, Some("bob"), "db", DB);
    may_not(&b, "carol", "db", DB);
    may(&b, None, "ourapp", OURAPP);
    assert_eq!(
        b.sh("systemctl is-active polkit.service").1.trim(),
        "inactive",
        "asking polkit started a masked polkitd"
    );
    let (_, _, err) = b.sh(&format!(
        "runuser -u alice -- busctl call org.psentinel.PSentinel1 {OURAPP} \
         org.psentinel.PSentinel1.Service Disable st x 0"
    ));
    assert!(
        err.contains("needs root or membership of group 'psentinel'") && !err.contains("polkit"),
        "{err}"
    );
}
