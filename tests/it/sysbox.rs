//! Harness for tests under a real systemd (PID 1): `../shared/sysbox/sysbox` boots a Debian 12
//! box with systemd, journald and the system bus in about a second.
//!
//! Each box gets its own name (test name + our pid) and is always taken down, also when the
//! test fails (Drop). A missing sysbox or a box that does not boot fails the test loudly —
//! never a silent skip: `make test` installs what sysbox needs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn sysbox_path() -> PathBuf {
    if let Some(p) = std::env::var_os("PSENTINEL_SYSBOX") {
        return p.into();
    }
    // ../shared from /work/main, ../../shared from a worktree /work/wt/NAME.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    root.ancestors()
        .skip(1)
        .map(|d| d.join("shared/sysbox/sysbox"))
        .find(|p| p.exists())
        .unwrap_or_else(|| root.join("../shared/sysbox/sysbox"))
}

pub struct Sysbox {
    pub name: String,
}

impl Sysbox {
    /// Boots a box named after the test. Panics with sysbox's output if it does not come up.
    pub fn up(test: &str) -> Sysbox {
        let path = sysbox_path();
        assert!(
            path.exists(),
            "sysbox not found at {} (set PSENTINEL_SYSBOX)",
            path.display()
        );
        let name = format!("ps-{}-{}", test.replace('_', "-"), std::process::id());
        let b = Sysbox { name };
        let out = b.raw(&["up"]);
        assert!(
            out.status.success(),
            "sysbox up {} failed:\n{}{}",
            b.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        b
    }

    fn raw(&self, args: &[&str]) -> Output {
        Command::new(sysbox_path())
            .args(args)
            .env("SYSBOX_NAME", &self.name)
            .output()
            .expect("run sysbox")
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
            "sysbox cp {} {dest}: {}",
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
    fn drop(&mut self) {
        let _ = self.raw(&["down"]);
    }
}
