//! Harness for tests under a real systemd (PID 1): `tests/box/psbox` boots a Debian 12 box
//! with systemd, journald and the system bus (systemd-nspawn; about a second once its image
//! is cached, a few minutes to build the image the first time).
//!
//! Each box gets its own name (test name + our pid) and is always taken down, also when the
//! test fails (Drop); psbox also knows our pid as the box's owner, so a box whose test was
//! killed is taken down by the next `up`. A missing psbox, a missing tool or a box that
//! does not boot fails the test loudly, never a silent skip: `make deps` installs what
//! psbox needs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The harness script: `PSENTINEL_BOX` if set, else the repository's own.
pub fn psbox_path() -> PathBuf {
    match std::env::var_os("PSENTINEL_BOX") {
        Some(p) => p.into(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/box/psbox"),
    }
}

pub struct Sysbox {
    pub name: String,
}

impl Sysbox {
    /// Boots a box named after the test. Panics with psbox's output if it does not come up.
    pub fn up(test: &str) -> Sysbox {
        let path = psbox_path();
        assert!(
            path.exists(),
            "psbox not found at {} (set PSENTINEL_BOX)",
            path.display()
        );
        let name = format!(
            "ps-{}-{}",
            test.to_lowercase().replace('_', "-"),
            std::process::id()
        );
        let b = Sysbox { name };
        let out = b.raw(&["up"]);
        assert!(
            out.status.success(),
            "psbox up {} failed:\n{}{}",
            b.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        b
    }

    fn psbox(&self, args: &[&str]) -> std::io::Result<Output> {
        Command::new(psbox_path())
            .args(args)
            .env("PSBOX_NAME", &self.name)
            .env("PSBOX_OWNER", std::process::id().to_string())
            .output()
    }

    fn raw(&self, args: &[&str]) -> Output {
        self.psbox(args)
            .unwrap_or_else(|e| panic!("run {}: {e}", psbox_path().display()))
    }

    /// Runs a command inside the box: (exit code, stdout, stderr).
    pub fn exec(&self, args: &[&str]) -> (i32, String, String) {
        let mut a = vec!["exec"];
        a.extend_from_slice(args);
        let out = self.raw(&a);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    /// `sh -c SCRIPT` inside the box.
    pub fn sh(&self, script: &str) -> (i32, String, String) {
        self.exec(&["sh", "-c", script])
    }

    /// Like `sh`, asserting success; returns stdout.
    pub fn ok(&self, script: &str) -> String {
        let (code, out, err) = self.sh(script);
        assert_eq!(
            code, 0,
            "in box {}: {script}\nstdout: {out}\nstderr: {err}",
            self.name
        );
        out
    }

    /// Copies a host file or directory into the box.
    pub fn cp(&self, host: &Path, dest: &str) {
        let out = self.raw(&["cp", &host.display().to_string(), dest]);
        assert!(
            out.status.success(),
            "psbox cp {} {dest}: {}",
            host.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes `content` to `dest` inside the box, mode 0644 (readable by services that run
    /// as their own user; cp keeps the mode, and a temp file's is 0600).
    pub fn write(&self, dest: &str, content: &str) {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), content).unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        self.cp(tmp.path(), dest);
    }

    /// Installs Debian packages into the running box (`psbox install`: .debs fetched on the
    /// host, cached, `dpkg -i` inside), for those whose maintainer scripts need systemd.
    pub fn install(&self, debs: &[&str]) {
        let mut a = vec!["install"];
        a.extend_from_slice(debs);
        let out = self.raw(&a);
        assert!(
            out.status.success(),
            "psbox install {debs:?} in {}: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A unit property (`systemctl show -P`).
    pub fn prop(&self, unit: &str, prop: &str) -> String {
        self.exec(&["systemctl", "show", "-P", prop, unit])
            .1
            .trim()
            .to_string()
    }

    /// Polls a shell condition inside the box until it succeeds; panics after `secs`.
    pub fn wait_for(&self, what: &str, secs: u64, script: &str) -> String {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let (code, out, err) = self.sh(script);
            if code == 0 {
                return out;
            }
            assert!(
                std::time::Instant::now() < end,
                "box {}: {what}: not within {secs}s\nlast stdout: {out}\nlast stderr: {err}",
                self.name
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Sysbox {
    // Never panics: it may run while a failed test unwinds.
    fn drop(&mut self) {
        match self.psbox(&["down"]) {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "psbox down {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("psbox down {}: {e}", self.name),
        }
    }
}

/// The harness itself: a real systemd as PID 1, loopback only, exit codes and output passed
/// through, modes kept by `cp`, boxes apart from each other, each `up` pristine, and nothing
/// of a box left on the host after `down`.
#[test]
fn sysbox_harness_boxes_are_pristine_apart_and_leave_nothing() {
    let a = Sysbox::up("harness-a");
    let b = Sysbox::up("harness-b");
    assert_eq!(
        a.ok("readlink /proc/1/exe; systemctl is-system-running"),
        "/usr/lib/systemd/systemd\nrunning\n"
    );
    assert_eq!(a.ok("ip -o link | awk '{ print $2 }'"), "lo:\n");
    assert_eq!(
        a.sh("echo out; echo err >&2; exit 3"),
        (3, "out\n".into(), "err\n".into())
    );
    let run = a.raw(&[
        "run",
        "sh",
        "-c",
        "grep -o 'run-.*' /proc/self/cgroup; exit 4",
    ]);
    assert_eq!(run.status.code(), Some(4), "{run:?}");
    assert!(
        String::from_utf8_lossy(&run.stdout).contains(".service"),
        "psbox run is not a transient service: {run:?}"
    );
    a.write("/etc/marker", "a\n");
    assert_eq!(a.ok("stat -c %a /etc/marker; cat /etc/marker"), "644\na\n");
    let (code, _, _) = b.sh("test -e /etc/marker");
    assert_ne!(code, 0, "a file written in one box shows in another");

    let name = a.name.clone();
    drop(a);
    let leftovers: Vec<String> = [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/systemd",
        "/sys/fs/cgroup/unified",
    ]
    .iter()
    .map(|root| format!("{root}/psbox-{name}"))
    .chain([format!("/run/psentinel-box/{name}")])
    .filter(|p| Path::new(p).exists())
    .collect();
    assert!(leftovers.is_empty(), "left after down: {leftovers:?}");
    let again = Sysbox::up("harness-a");
    assert_eq!(again.name, name);
    let (code, _, _) = again.sh("test -e /etc/marker");
    assert_ne!(code, 0, "a file survived down and up");
}

/// `psbox install` resolves what dpkg would not: the package's dependencies the box lacks
/// (monitoring-plugins-basic needs monitoring-plugins-common, ucf, ...) are fetched too, and
/// a package the box already has is no error.
#[test]
fn sysbox_install_brings_the_dependencies_the_box_lacks() {
    let b = Sysbox::up("install-deps");
    b.install(&["monitoring-plugins-basic"]);
    assert_eq!(
        b.sh("/usr/lib/nagios/plugins/check_dummy 1 'from the box'"),
        (1, "WARNING: from the box\n".into(), String::new())
    );
    assert!(b
        .ok("dpkg-query -W -f '${Status}' monitoring-plugins-common")
        .contains("install ok installed"));
    // Everything there already: nothing to fetch, nothing to do.
    b.install(&["monitoring-plugins-basic", "systemd"]);
}
