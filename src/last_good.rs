//! The last configuration that loaded, kept so that a typo never takes a node out of every
//! load balancer.
//!
//! After each start and reload that applied the configuration file, a copy of it goes to
//! `last-good.cfg` in the state directory. When the file is broken at start (a restart, an
//! upgrade, a reboot), the daemon runs on that copy instead of exiting, and says so loudly: an
//! error in the journal naming the file and what is wrong, and STATUS= beginning "running on
//! last good configuration: ...". The systemd generator falls back to the copy the same way,
//! so the socket unit keeps holding the probe ports. A reload or restart after the fix
//! returns to the file. Only a daemon that has never loaded a configuration exits.
//!
//! The state directory is systemd's `$STATE_DIRECTORY` when set (StateDirectory= of the unit),
//! else `state_dir` of the running configuration; a broken file cannot be trusted to name
//! it, so the fallback looks in `$STATE_DIRECTORY`, else the default `state_dir`. The copy's
//! first line names the file it is a copy of: it stands in for that file only, never for
//! another configuration (`-f`) that happens to be broken.

use crate::config::{Config, General};
use std::io::Write;
use std::path::{Path, PathBuf};

const FILE: &str = "last-good.cfg";
const HEADER: &str = "# psentinel: last good copy of ";

/// Where the copy of a daemon running `cfg` goes.
fn dir_for(cfg: &Config) -> PathBuf {
    systemd_state_dir().unwrap_or_else(|| cfg.general.state_dir.clone())
}

/// Where the copy is looked for when the configuration cannot be read.
pub fn fallback_path() -> PathBuf {
    systemd_state_dir()
        .unwrap_or_else(|| General::default().state_dir)
        .join(FILE)
}

/// The first directory of `$STATE_DIRECTORY` (colon-separated when the unit has several).
fn systemd_state_dir() -> Option<PathBuf> {
    let v = std::env::var_os("STATE_DIRECTORY")?;
    let first = v.to_str()?.split(':').next()?.trim().to_string();
    (!first.is_empty()).then(|| PathBuf::from(first))
}

/// Saves the configuration file of `cfg` as the last good one. The file is read again and
/// must still parse: an edit made since it was applied is not trusted blindly.
pub fn remember(cfg: &Config) {
    let dest = dir_for(cfg).join(FILE);
    let res = std::fs::read_to_string(&cfg.file)
        .map_err(|e| e.to_string())
        .and_then(|text| {
            Config::parse(&text, &cfg.file)
                .map_err(|e| format!("it changed since it was applied and no longer loads: {e}"))?;
            let copy = format!("{HEADER}{}\n{text}", identity(&cfg.file).display());
            save(&dest, &copy).map_err(|e| e.to_string())
        });
    match res {
        Ok(()) => tracing::debug!(path = %dest.display(), "saved the last good configuration"),
        Err(e) => tracing::warn!(
            path = %dest.display(),
            "cannot keep a copy of {} as the last good configuration: {e}",
            cfg.file.display()
        ),
    }
}

/// The last good configuration, parsed as if it were `file` (so a reload reads `file` again),
/// or None when there is none that loads.
pub fn load(file: &Path) -> Option<(Config, PathBuf)> {
    let path = fallback_path();
    let text = std::fs::read_to_string(&path).ok()?;
    let (first, _) = text.split_once('\n')?;
    if Path::new(first.strip_prefix(HEADER)?) != identity(file) {
        return None;
    }
    Config::parse(&text, file).ok().map(|c| (c, path))
}

/// The file's canonical path when it exists, else its path made absolute.
fn identity(file: &Path) -> PathBuf {
    file.canonicalize()
        .or_else(|_| std::path::absolute(file))
        .unwrap_or_else(|_| file.to_path_buf())
}

/// Atomic, like the state file: a crash leaves the old copy or the new one.
fn save(dest: &Path, text: &str) -> std::io::Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test: it sets `$STATE_DIRECTORY`, which every function here reads.
    #[test]
    fn the_copy_stands_in_for_its_own_file_only() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("STATE_DIRECTORY", dir.path());
        let file = dir.path().join("p.cfg");
        let good = "[a]\nport=1001\n";
        std::fs::write(&file, good).unwrap();
        let cfg = Config::load(&file).unwrap();
        remember(&cfg);
        let copy = dir.path().join(FILE);
        let saved = std::fs::read_to_string(&copy).unwrap();
        let real = file.canonicalize().unwrap();
        assert_eq!(saved, format!("{HEADER}{}\n{good}", real.display()));

        // An edit that no longer loads is not remembered.
        std::fs::write(&file, "[a]\nport=oops\n").unwrap();
        remember(&cfg);
        assert_eq!(std::fs::read_to_string(&copy).unwrap(), saved);

        // The broken file gets its last good copy, under its own name; another file not.
        let (c, from) = load(&file).unwrap();
        assert_eq!((c.file, c.services["a"].port, from), (file, 1001, copy));
        let other = dir.path().join("other.cfg");
        std::fs::write(&other, "[a]\nport=oops\n").unwrap();
        assert!(load(&other).is_none());
        std::env::remove_var("STATE_DIRECTORY");
    }
}
