//! What `psentinel -t` checks beyond the file itself: whether each check can run, and whether
//! the control socket is the one systemd's socket unit passes. It runs on the configuration
//! as far as it reads ([`crate::config::Config::load_checked`]), so its findings come in the
//! same run as the file's errors.
//!
//! Errors (`-t` exits 1) are what will fail for sure: a check program given by absolute path
//! that does not exist, is not a regular file, or has no execute bit. Warnings (`-t` still
//! exits 0) are what depends on how and where the daemon starts, which `-t` cannot know: a
//! relative program path (found from the directory the daemon starts in, `/` under systemd),
//! a program name that is not in this PATH (the daemon searches its own; a shell builtin such
//! as `exit` is no program at all), and a `sock_file` other than the socket unit's
//! `ListenStream=` (compared as files: `/var/run/...` is `/run/...` where `/var/run` links there),
//! and a file in the drop-in directory that is not read (`20-db.conf`: a fragment misnamed is
//! otherwise silently absent). A check's error names the file that set `check_script`.
//!
//! A service's `control_group` naming a group that does not exist is an error: the daemon
//! would admit nobody through it (never everybody), but the operators it was written for
//! would find themselves refused; a typo is caught here instead.

use crate::config::{Config, ConfigError, ServiceConfig};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

#[derive(Debug)]
pub struct Findings {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

/// Where systemd looks for units when `$SYSTEMD_UNIT_PATH` does not say otherwise.
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];
const SOCKET_UNIT: &str = "psentinel.socket";

pub fn check(cfg: &Config) -> Findings {
    let mut f = Findings {
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    for svc in cfg.services.values() {
        let Some((why, fatal)) = judge_check(svc, &path) else {
            continue;
        };
        let e = ConfigError::Value {
            file: svc.origin.file_of("check_script").to_path_buf(),
            section: svc.name.clone(),
            key: "check_script".into(),
            value: command(svc),
            why,
        };
        if fatal {
            f.errors.push(e);
        } else {
            f.warnings.push(e);
        }
    }
    // The packages' README says what the directory is for: not worth a warning.
    for path in cfg.ignored.iter().filter(|p| !p.ends_with("README")) {
        f.warnings.push(ConfigError::File {
            file: path.clone(),
            why: "not read: a file of the drop-in directory is read only when its name ends \
                  in .cfg and does not start with '.'"
                .into(),
        });
    }
    for svc in cfg.services.values() {
        for g in &svc.control_groups {
            if !matches!(nix::unistd::Group::from_name(g), Ok(Some(_))) {
                f.errors.push(ConfigError::Value {
                    file: svc.origin.file_of("control_group").to_path_buf(),
                    section: svc.name.clone(),
                    key: "control_group".into(),
                    value: svc.control_groups.join(", "),
                    why: format!(
                        "group '{g}' does not exist (create it: groupadd {g}); until it does, \
                         it admits nobody"
                    ),
                });
            }
        }
    }
    if let Some((unit, passed)) = socket_unit() {
        let mine = canonical(&cfg.general.sock_file);
        if !passed.is_empty() && !passed.iter().any(|p| canonical(p) == mine) {
            let list: Vec<String> = passed.iter().map(|p| p.display().to_string()).collect();
            f.warnings.push(value(
                cfg,
                "general",
                "sock_file",
                &cfg.general.sock_file.display().to_string(),
                format!(
                    "{} passes {}, a different file: clients of that socket would not reach \
                     this daemon; set sock_file to it (or ListenStream= in a drop-in)",
                    unit.display(),
                    list.join(", ")
                ),
            ));
        }
    }
    f
}

fn value(cfg: &Config, section: &str, key: &str, value: &str, why: String) -> ConfigError {
    ConfigError::Value {
        file: cfg.file.clone(),
        section: section.into(),
        key: key.into(),
        value: value.into(),
        why,
    }
}

/// check_script as written (words joined again, quoted where needed).
fn command(svc: &ServiceConfig) -> String {
    let argv = svc.check.as_deref().unwrap_or_default();
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
}

/// What is wrong with the program of `svc`'s check: (why, whether it is an error).
fn judge_check(svc: &ServiceConfig, path: &std::ffi::OsStr) -> Option<(String, bool)> {
    let program = svc.check.as_ref()?.first()?.clone();
    let p = Path::new(&program);
    if !program.contains('/') {
        let found = std::env::split_paths(path).any(|d| is_executable_file(&d.join(p)));
        return (!found).then(|| {
            let why = format!(
                "{program} is not in PATH here; the daemon looks it up in its own PATH when it \
                 runs the check (no shell: a builtin needs /bin/sh -c '...'); an absolute path \
                 says what runs"
            );
            (why, false)
        });
    }
    if p.is_relative() {
        let why = "a relative path, found from the directory the daemon starts in \
                   (/ under systemd); use an absolute path"
            .to_string();
        return Some((why, false));
    }
    let why = match std::fs::metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!("{program} does not exist")
        }
        Err(e) => return Some((format!("cannot check {program}: {e}"), false)),
        Ok(m) if !m.is_file() => format!("{program} is not a regular file"),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => format!(
            "{program} is not executable (mode {:04o}; chmod +x it)",
            m.permissions().mode() & 0o7777
        ),
        Ok(_) => return None,
    };
    Some((why, true))
}

fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The installed psentinel.socket, found as systemd finds units, and the paths of its
/// `ListenStream=` lines that are Unix sockets.
fn socket_unit() -> Option<(PathBuf, Vec<PathBuf>)> {
    let dirs: Vec<PathBuf> = match std::env::var("SYSTEMD_UNIT_PATH") {
        // systemd's rule: a trailing ':' appends the usual directories.
        Ok(v) => {
            let mut d: Vec<PathBuf> = v
                .split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect();
            if v.ends_with(':') {
                d.extend(UNIT_DIRS.iter().map(PathBuf::from));
            }
            d
        }
        Err(_) => UNIT_DIRS.iter().map(PathBuf::from).collect(),
    };
    let unit = dirs
        .iter()
        .map(|d| d.join(SOCKET_UNIT))
        .find(|p| p.is_file())?;
    let text = std::fs::read_to_string(&unit).ok()?;
    let passed = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ListenStream="))
        .map(str::trim)
        .filter(|v| v.starts_with('/'))
        .map(PathBuf::from)
        .collect();
    Some((unit, passed))
}

/// `p` with every symbolic link of its longest existing ancestor resolved: a socket file need
/// not exist yet for `/var/run/x/s.sock` and `/run/x/s.sock` to be found the same.
fn canonical(p: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut cur = p.to_path_buf();
    loop {
        if let Ok(c) = cur.canonicalize() {
            return rest
                .iter()
                .rev()
                .fold(c, |acc, part: &std::ffi::OsString| acc.join(part));
        }
        match (cur.file_name(), cur.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                cur = parent.to_path_buf();
            }
            _ => return normalize(p),
        }
    }
}

/// `.` and `..` taken out without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_resolves_links_of_what_exists() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("run");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("varrun")).unwrap();
        assert_eq!(
            canonical(&dir.path().join("varrun/psentinel/p.sock")),
            canonical(&dir.path().join("run/psentinel/p.sock"))
        );
        assert_ne!(
            canonical(&dir.path().join("run/psentinel/p.sock")),
            canonical(&dir.path().join("run/other/p.sock"))
        );
    }
}
