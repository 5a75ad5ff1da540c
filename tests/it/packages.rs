//! The packages: the .deb's whole life on a real systemd (install, probes, upgrade, purge)
//! in a psbox with no network, its contents and lintian; the .rpm's contents and rpmlint.
//!
//! The packages are release builds, slow to make: `make test` builds them once (`make deb
//! rpm`) before running the tests and passes their exact paths in `PSENTINEL_TEST_DEB` and
//! `PSENTINEL_TEST_RPM`. A test run alone takes the one `make deb`/`make rpm` left in target/.
//! Either way a package older than any source it is made from fails the test ("stale: run
//! make deb"): a test never passes on yesterday's package.

use crate::sysbox::Sysbox;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What both packages ship (made by `make install`); `ZSH` is where the format's zsh looks
/// for completions, `GEN` where its systemd package has its generators.
const FILES: &[&str] = &[
    "/usr/bin/psentinel",
    "/usr/lib/systemd/system/psentinel.service",
    "/usr/lib/systemd/system/psentinel.socket",
    "/usr/lib/systemd/system/psentinel-drain@.service",
    "GEN/psentinel-generator",
    "/usr/lib/sysusers.d/psentinel.conf",
    "/usr/lib/tmpfiles.d/psentinel.conf",
    "/usr/share/dbus-1/system.d/org.psentinel.PSentinel1.conf",
    "/usr/share/polkit-1/actions/org.psentinel.PSentinel1.policy",
    "/etc/psentinel/psentinel.cfg",
    "/etc/psentinel/psentinel.d/README",
    "/usr/share/man/man8/psentinel.8.gz",
    "/usr/share/man/man5/psentinel.cfg.5.gz",
    "/usr/share/bash-completion/completions/psentinel",
    "ZSH/_psentinel",
    "/usr/share/fish/vendor_completions.d/psentinel.fish",
    "/usr/share/doc/psentinel/README.md",
    "/usr/share/doc/psentinel/examples/psentinel.cfg",
    "/usr/share/doc/psentinel/examples/case1-ourapp.cfg",
    "/usr/share/doc/psentinel/examples/case2-pgpool.cfg",
    "/usr/share/psentinel/prometheus/psentinel-alerts.yml",
    "/usr/share/doc/psentinel/examples/polkit-deploy.rules",
];

/// Where the example checks go: executable, outside /usr/share/doc (minimal images strip it).
const CHECKS: &str = "/usr/share/psentinel/checks/";

/// Plus every documentation page, example check script and HAProxy configuration in the
/// source tree.
fn expected(zsh: &str, generators: &str, extra: &[&str]) -> BTreeSet<String> {
    let mut want: BTreeSet<String> = FILES
        .iter()
        .chain(extra)
        .map(|f| f.replace("ZSH", zsh).replace("GEN", generators))
        .collect();
    for (dir, ext, dest) in [
        ("docs", "md", "/usr/share/doc/psentinel/docs/"),
        ("examples/checks", "sh", CHECKS),
        (
            "examples/haproxy",
            "cfg",
            "/usr/share/doc/psentinel/examples/haproxy/",
        ),
    ] {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for e in std::fs::read_dir(&src).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(&format!(".{ext}")) {
                want.insert(format!("{dest}{name}"));
            }
        }
    }
    want
}

/// Every example check is in `files` (path -> mode) with mode rwxr-xr-x.
fn assert_checks_executable(files: &BTreeMap<String, String>, what: &str) {
    let checks: Vec<_> = files
        .iter()
        .filter(|(p, _)| p.starts_with(CHECKS))
        .collect();
    assert!(!checks.is_empty(), "{what}: no example checks");
    for (p, mode) in checks {
        assert_eq!(mode, "-rwxr-xr-x", "{what}: {p}");
    }
}

/// The package under test: the exact path in `env` (set by `make test`), else the one
/// `make deb` / `make rpm` built for this version in `dir`; either way it must be newer than
/// every source it is made from.
fn built(env: &str, dir: &str, prefix: &str, suffix: &str, make: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = match std::env::var_os(env) {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(p.exists(), "{env}={} does not exist", p.display());
            Some(p)
        }
        None => std::fs::read_dir(root.join(dir)).ok().and_then(|entries| {
            entries.flatten().map(|e| e.path()).find(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with(prefix) && name.ends_with(suffix)
            })
        }),
    };
    let pkg = found.unwrap_or_else(|| {
        panic!(
            "no {prefix}*{suffix} in {dir} (and {env} unset): run `{make}` first \
             (`make test` does)"
        )
    });
    let made = mtime(&pkg);
    let (newest, source) = SOURCES
        .iter()
        .flat_map(|s| newest_under(&root.join(s)))
        .max()
        .expect("sources");
    assert!(
        made >= newest,
        "{} is stale: {} changed after it was made; run `{make}`",
        pkg.display(),
        source.display()
    );
    pkg
}

/// What the packages are made from: a change to any of these needs a new package.
const SOURCES: &[&str] = &[
    "src",
    "Cargo.toml",
    "Cargo.lock",
    "systemd",
    "dbus",
    "polkit",
    "packaging",
    "examples",
    "Makefile",
];

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

/// The newest file at or under `p`, with its time.
fn newest_under(p: &Path) -> Option<(std::time::SystemTime, PathBuf)> {
    if p.is_dir() {
        std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .filter_map(|e| newest_under(&e.path()))
            .max()
    } else {
        p.exists().then(|| (mtime(p), p.to_path_buf()))
    }
}

fn deb() -> PathBuf {
    built(
        "PSENTINEL_TEST_DEB",
        "target/debian",
        &format!("psentinel_{VERSION}-1_"),
        ".deb",
        "make deb",
    )
}

fn rpm() -> PathBuf {
    built(
        "PSENTINEL_TEST_RPM",
        "target/rpm",
        &format!("psentinel-{VERSION}-1."),
        ".rpm",
        "make rpm",
    )
}

/// One line per file of the package: its path and its rpm flags (`c` %config, `n` noreplace,
/// `d` %doc).
fn rpm_file_flags(rpm: &str) -> String {
    host(
        "rpm",
        &["-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", rpm],
        "rpm",
    )
}

/// Runs a host tool; panics with its output (and what to install) unless it succeeds.
fn host(program: &str, args: &[&str], package: &str) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (apt-get install {package}, or make deps)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn deb_ships_the_files_as_conffile_with_only_base_dependencies() {
    let deb = deb();
    let d = deb.to_str().unwrap();
    // `dpkg-deb -c`: tar listing, mode first, ./path last; directories end in /.
    let modes: BTreeMap<String, String> = host("dpkg-deb", &["-c", d], "dpkg")
        .lines()
        .filter_map(|l| Some((l.split_whitespace().nth(5)?, l.split_whitespace().next()?)))
        .filter(|(p, _)| !p.ends_with('/'))
        .map(|(p, m)| (p.trim_start_matches('.').to_string(), m.to_string()))
        .collect();
    let files: BTreeSet<String> = modes.keys().cloned().collect();
    assert_checks_executable(&modes, d);
    let listing = host("dpkg-deb", &["-c", d], "dpkg");
    assert!(
        listing
            .lines()
            .any(|l| l.ends_with(" ./etc/psentinel/psentinel.d/")),
        "{d}: no drop-in directory:\n{listing}"
    );
    // Debian 12's systemd has its generators in /lib (the same directory through the /usr
    // merge); under /usr/lib dpkg would think the directory psentinel's alone.
    let want = expected(
        "/usr/share/zsh/vendor-completions",
        "/lib/systemd/system-generators",
        &[
            "/usr/share/doc/psentinel/copyright",
            "/usr/share/doc/psentinel/changelog.Debian.gz",
            "/usr/share/lintian/overrides/psentinel",
        ],
    );
    assert_eq!(files, want, "{d}: files");

    let conffiles = host("dpkg-deb", &["-I", d, "conffiles"], "dpkg");
    assert_eq!(
        conffiles.trim(),
        "/etc/psentinel/psentinel.cfg\n/etc/psentinel/psentinel.d/README"
    );

    let depends = host("dpkg-deb", &["-f", d, "Depends"], "dpkg");
    let names: BTreeSet<&str> = depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .collect();
    // libgcc-s1 (Rust's unwinder) is what libc6 itself depends on: on every system too.
    let base = BTreeSet::from(["libc6", "libgcc-s1", "systemd", "dbus"]);
    assert!(
        names.is_subset(&base)
            && ["libc6", "systemd", "dbus"]
                .iter()
                .all(|n| names.contains(n)),
        "Depends: {depends}"
    );
}

#[test]
fn deb_has_no_lintian_errors() {
    let deb = deb();
    let out = Command::new("lintian")
        .args(["--fail-on", "error", "--no-tag-display-limit"])
        .arg(&deb)
        .output()
        .expect("lintian: apt-get install lintian (or make deps)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !report.lines().any(|l| l.starts_with("E:")),
        "lintian {}: {}\n{report}{}",
        deb.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rpm_ships_the_same_files_config_noreplace() {
    let rpm = rpm();
    let r = rpm.to_str().unwrap();
    // Directories too (the package owns its own), mode first.
    let modes: BTreeMap<String, String> = host(
        "rpm",
        &["-qp", "--qf", "[%{FILEMODES:perms} %{FILENAMES}\n]", r],
        "rpm",
    )
    .lines()
    .filter(|l| !l.starts_with('d'))
    .filter_map(|l| l.split_once(' '))
    .map(|(m, p)| (p.to_string(), m.to_string()))
    .collect();
    let files: BTreeSet<String> = modes.keys().cloned().collect();
    let dirs = host(
        "rpm",
        &["-qp", "--qf", "[%{FILEMODES:perms} %{FILENAMES}\n]", r],
        "rpm",
    );
    assert!(
        dirs.lines()
            .any(|l| l.starts_with('d') && l.ends_with(" /etc/psentinel/psentinel.d")),
        "{r}: does not own the drop-in directory:\n{dirs}"
    );
    let want = expected(
        "/usr/share/zsh/site-functions",
        "/usr/lib/systemd/system-generators",
        &[],
    );
    assert_eq!(files, want, "{r}");
    assert_checks_executable(&modes, r);

    // c = %config, n = noreplace: an edited configuration survives an upgrade.
    let flags = rpm_file_flags(r);
    assert!(
        flags
            .lines()
            .any(|l| l == "/etc/psentinel/psentinel.cfg cn"),
        "{r}: psentinel.cfg is not %config(noreplace):\n{flags}"
    );
    let requires = host("rpm", &["-qp", "--requires", r], "rpm");
    for dep in ["systemd", "dbus"] {
        assert!(
            requires
                .lines()
                .any(|l| l.split_whitespace().next() == Some(dep)),
            "{r}: no Requires: {dep}:\n{requires}"
        );
    }
}

/// rpmlint as an RPM packager runs it: no error but the missing signature (signing is the
/// distributor's step); the man page is documentation, and the header has a changelog, a
/// packager, a group and a build host.
#[test]
fn rpm_has_no_rpmlint_errors_but_the_signature() {
    let rpm = rpm();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/rpm/rpmlint.toml");
    let out = Command::new("rpmlint")
        .arg("-c")
        .arg(&config)
        .arg(&rpm)
        .output()
        .expect("rpmlint: apt-get install rpmlint (or make deps)");
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}");
    let errors: Vec<&str> = report
        .lines()
        .filter(|l| l.contains(": E: ") && !l.ends_with(": E: no-signature"))
        .collect();
    assert!(
        errors.is_empty() && report.contains("packages: 1"),
        "rpmlint {}: {errors:?}\n{report}{}",
        rpm.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let r = rpm.to_str().unwrap();
    let flags = rpm_file_flags(r);
    assert!(
        flags
            .lines()
            .any(|l| l == "/usr/share/man/man8/psentinel.8.gz d"),
        "{r}: the man page is not %doc:\n{flags}"
    );
    let header = host(
        "rpm",
        &[
            "-qp",
            "--qf",
            "%{PACKAGER}|%{GROUP}|%{BUILDHOST}|%{CHANGELOGNAME}",
            r,
        ],
        "rpm",
    );
    assert!(
        !header.split('|').any(|f| f.is_empty() || f == "(none)"),
        "{r}: {header}"
    );
}

/// A copy of the .deb with a higher version, for a real upgrade (same files).
fn bumped(deb: &Path, dir: &Path, version: &str) -> PathBuf {
    let tree = dir.join("tree");
    let out = dir.join(format!("psentinel_{version}.deb"));
    let (d, t) = (deb.to_str().unwrap(), tree.to_str().unwrap());
    host("dpkg-deb", &["-R", d, t], "dpkg");
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("Version:") {
                format!("Version: {version}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&control, text).unwrap();
    host(
        "dpkg-deb",
        &[
            "--root-owner-group",
            "-Znone",
            "-b",
            t,
            out.to_str().unwrap(),
        ],
        "dpkg",
    );
    out
}

fn wait_code(b: &Sysbox, port: u16, code: u16) {
    b.wait_for(
        &format!("probe on port {port} answering {code}"),
        30,
        &format!(
            "test \"$(curl -s -o /dev/null -w '%{{http_code}}' -X OPTIONS http://127.0.0.1:{port}/)\" = {code}"
        ),
    );
}

fn main_pid(b: &Sysbox) -> String {
    b.prop("psentinel.service", "MainPID")
}

const TEST_CFG: &str = "\
# edited by the operator (packages test)
[web]
port = 48090
check_script = /usr/local/lib/psentinel/check-web.sh
check_script_interval = 60

# A shipped example check, used as it is.
[demo]
port = 48091
check_script = /usr/share/psentinel/checks/always-ok.sh
";

/// The .rpm's %preun as rpm runs it (`$1`: 0 erase, 1 upgrade), in the Debian box on the
/// units the .deb installs (the same files): an erase stops and disables the drain instances
/// an operator enabled, so the application's unit wants nothing that is gone; an upgrade
/// leaves them.
#[test]
fn rpm_preun_disables_drain_instances_on_erase_only() {
    let rpm = rpm();
    let preun = host(
        "rpm",
        &["-qp", "--qf", "%{PREUN}", rpm.to_str().unwrap()],
        "rpm",
    );
    let b = Sysbox::up("rpm-preun");
    b.cp(&deb(), "/tmp/psentinel.deb");
    b.ok("dpkg -i /tmp/psentinel.deb");
    b.write("/tmp/preun.sh", &preun);
    b.write(
        "/etc/systemd/system/ourapp.service",
        "[Service]\nExecStart=/bin/sleep infinity\n",
    );
    b.ok("systemctl daemon-reload && systemctl enable --now psentinel-drain@ourapp.service && systemctl start ourapp.service");
    b.ok("sh -e /tmp/preun.sh 1");
    b.ok(&format!("test -L {DRAIN_LINK}"));
    assert_eq!(b.prop("psentinel.service", "UnitFileState"), "enabled");
    b.ok("sh -e /tmp/preun.sh 0");
    b.ok(&format!("! test -L {DRAIN_LINK}"));
    assert_eq!(
        b.sh("systemctl is-active psentinel-drain@ourapp.service psentinel.service ourapp.service")
            .1,
        "inactive\ninactive\nactive\n"
    );
}

/// Where `systemctl enable psentinel-drain@ourapp.service` links the instance.
const DRAIN_LINK: &str = "/etc/systemd/system/ourapp.service.wants/psentinel-drain@ourapp.service";

#[test]
fn deb_installs_upgrades_and_purges_on_systemd() {
    let deb = deb();
    let tmp = tempfile::tempdir().unwrap();
    // The upgrade: the same files under a higher version.
    let upgrade_version = format!("{VERSION}-1+up1");
    let deb2 = bumped(&deb, tmp.path(), &upgrade_version);
    let b = Sysbox::up("packages");
    b.cp(&deb, "/tmp/psentinel.deb");
    b.cp(&deb2, "/tmp/psentinel-up.deb");

    // Fresh install, no network: the socket and the service enabled and running, as
    // psentinel, answering on the packaged example configuration.
    b.ok("dpkg -i /tmp/psentinel.deb");
    b.ok("getent passwd psentinel && test -d /var/lib/psentinel");
    assert_eq!(
        b.ok("dpkg-query -S /etc/psentinel/psentinel.d").trim(),
        "psentinel: /etc/psentinel/psentinel.d"
    );
    for unit in ["psentinel.socket", "psentinel.service"] {
        assert_eq!(b.prop(unit, "UnitFileState"), "enabled", "{unit}");
    }
    b.wait_for(
        "psentinel.service active",
        30,
        "systemctl is-active psentinel.service",
    );
    let pid = main_pid(&b);
    assert_eq!(
        b.ok(&format!("ps -o user= -p {pid}")).trim(),
        "psentinel",
        "MainPID {pid}"
    );
    wait_code(&b, 48080, 200);
    assert!(b.ok("psentinel -c status").contains("example"));
    // The bus took the new policy: the daemon (user psentinel) owns its name.
    b.wait_for(
        "org.psentinel.PSentinel1 on the system bus",
        30,
        "busctl --system status org.psentinel.PSentinel1 >/dev/null",
    );

    // The operator's own configuration and check script: a new port, so daemon-reload
    // (the generator) and a restart of the socket, as psentinel.cfg's header says.
    b.ok("mkdir -p /usr/local/lib/psentinel && printf '#!/bin/sh\\nid -un\\n' > /usr/local/lib/psentinel/check-web.sh && chmod 755 /usr/local/lib/psentinel/check-web.sh");
    b.write("/etc/psentinel/psentinel.cfg", TEST_CFG);
    b.ok("systemctl daemon-reload && systemctl restart psentinel.socket psentinel.service");
    assert!(
        b.ok("systemctl cat psentinel.socket").contains("48090"),
        "generator did not add port 48090"
    );
    wait_code(&b, 48090, 200);
    let status = b.ok("psentinel -c status web --json");
    let json: serde_json::Value = serde_json::from_str(&status).expect(&status);
    let web = json["services"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "web"))
        .unwrap_or_else(|| panic!("no service web in {status}"));
    assert_eq!(web["last_exit_status"], 0, "{status}");
    assert_eq!(
        web["output"].as_str().unwrap_or("").trim(),
        "psentinel",
        "the check runs as psentinel: {status}"
    );
    // The shipped example check runs (executable, and where a minimal image keeps it).
    wait_code(&b, 48091, 200);
    let demo = b.ok("psentinel -c test demo");
    assert!(
        demo.contains("exit status 0") && demo.contains("all good"),
        "{demo}"
    );
    b.ok("psentinel -c disable web upgrading");
    wait_code(&b, 48090, 503);

    // An application with its drain instance enabled, as docs/deploys.md shows.
    b.write(
        "/etc/systemd/system/ourapp.service",
        "[Service]\nExecStart=/bin/sleep infinity\n",
    );
    b.ok("systemctl daemon-reload && systemctl enable --now psentinel-drain@ourapp.service && systemctl start ourapp.service");
    b.ok(&format!("test -L {DRAIN_LINK}"));

    // Upgrade: the service restarts, the edited configuration and the manual disable stay.
    let before = main_pid(&b);
    let socket_since = b.prop("psentinel.socket", "ActiveEnterTimestampMonotonic");
    b.ok("dpkg -i /tmp/psentinel-up.deb");
    assert_eq!(
        b.ok("dpkg-query -W -f='${Version}' psentinel"),
        upgrade_version
    );
    assert_eq!(
        b.ok("cat /etc/psentinel/psentinel.cfg"),
        TEST_CFG,
        "edited configuration replaced on upgrade"
    );
    b.wait_for(
        "psentinel.service restarted",
        30,
        &format!(
            "p=$(systemctl show -P MainPID psentinel.service); [ \"$p\" != 0 ] && [ \"$p\" != {before} ] && systemctl is-active psentinel.service"
        ),
    );
    wait_code(&b, 48090, 503);
    assert!(b.ok("psentinel -c status web").contains("upgrading"));
    // Only the service restarted: the socket held the ports all along.
    assert_eq!(
        b.prop("psentinel.socket", "ActiveEnterTimestampMonotonic"),
        socket_since,
        "psentinel.socket was restarted by the upgrade"
    );

    assert_eq!(
        b.prop("psentinel-drain@ourapp.service", "UnitFileState"),
        "enabled",
        "an upgrade disabled the drain instance"
    );

    // A unit the operator disabled stays disabled across a reinstall.
    b.ok("systemctl disable psentinel.service psentinel.socket");
    b.ok("dpkg -i /tmp/psentinel-up.deb");
    for unit in ["psentinel.socket", "psentinel.service"] {
        assert_eq!(b.prop(unit, "UnitFileState"), "disabled", "{unit}");
    }

    // Remove (not purge): the program goes, the operator's configuration and the saved state
    // (the disable above) stay for a later install.
    let listed = b.ok("dpkg -L psentinel");
    b.ok("dpkg -r psentinel");
    b.ok("! test -e /usr/bin/psentinel");
    // The drain instance went with the package (no link left dangling in ourapp's wants),
    // stopped; the application still runs.
    b.ok(&format!("! test -L {DRAIN_LINK}"));
    assert_eq!(
        b.sh("systemctl is-active psentinel-drain@ourapp.service ourapp.service")
            .1,
        "inactive\nactive\n"
    );
    assert_eq!(
        b.ok("cat /etc/psentinel/psentinel.cfg"),
        TEST_CFG,
        "configuration lost on dpkg -r"
    );
    let state = b.ok("cat /var/lib/psentinel/state.json");
    assert!(
        state.contains("upgrading"),
        "state lost on dpkg -r: {state}"
    );
    assert_eq!(
        b.ok("dpkg-query -W -f='${Status}' psentinel"),
        "deinstall ok config-files"
    );

    // Purge: nothing of the package's left, no unit, no process.
    let (code, out, err) = b.sh("dpkg --purge psentinel");
    assert_eq!(code, 0, "dpkg --purge: {out}{err}");
    assert!(
        !err.contains("warning") && !out.contains("warning"),
        "dpkg --purge warned: {out}{err}"
    );
    let left: Vec<&str> = listed
        .lines()
        .filter(|p| p.contains("psentinel"))
        .filter(|p| b.sh(&format!("test -e '{p}'")).0 == 0)
        .collect();
    assert!(left.is_empty(), "left behind after purge: {left:?}");
    b.ok("! test -e /etc/psentinel && ! test -e /var/lib/psentinel && ! test -e /run/psentinel");
    b.ok("! dpkg -s psentinel 2>/dev/null");
    let links = b.sh("find /etc/systemd /run/systemd/generator /var/lib/systemd/deb-systemd-helper-enabled -name '*psentinel*'").1;
    assert_eq!(links.trim(), "", "unit links left behind");
    assert_eq!(
        b.sh("systemctl list-unit-files 'psentinel*' --no-legend")
            .1
            .trim(),
        "",
        "units still known to systemd"
    );
    b.wait_for(
        "no psentinel process",
        30,
        "! pgrep -u psentinel >/dev/null",
    );
}
