//! The last configuration that loaded, kept so that a typo never takes a node out of every
//! load balancer.
//!
//! After each start and reload that applied the configuration, a copy of it goes to
//! `last-good.cfg` in the state directory: the main file and its drop-in fragments, in one
//! file so that it is replaced as a whole. When the file is broken at start (a restart, an
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
//! another configuration (`-f`) that happens to be broken. A broken fragment is a broken
//! configuration: the copy stands in for the main file and all its fragments, as they were.

use crate::config::sources::{Source, Sources};
use crate::config::{Config, General};
use std::io::Write;
use std::path::{Path, PathBuf};

const FILE: &str = "last-good.cfg";
const HEADER: &str = "# psentinel: last good copy of ";
const FRAGMENT: &str = "# psentinel: fragment ";
const MAIN: &str = "# psentinel: main file ";

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

/// Saves the configuration of `cfg` (its file and drop-in fragments) as the last good one.
/// The files are read again and must still load: an edit made since they were applied is
/// not trusted blindly.
pub fn remember(cfg: &Config) {
    let dest = dir_for(cfg).join(FILE);
    let res = Sources::read(&cfg.file)
        .and_then(|src| Config::from_sources(&src).map(|_| src))
        .map_err(|e| format!("it changed since it was applied and no longer loads: {e}"))
        .and_then(|src| {
            let copy = encode(&src)?;
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

/// One file for the whole configuration, so that it is replaced at once: the header, one
/// line per fragment (its length in bytes and its path), one with the main file's length,
/// the fragments' texts, then the main file's. A copy made before there were fragments (header, then the file) is
/// still read.
fn encode(src: &Sources) -> Result<String, String> {
    let mut out = format!("{HEADER}{}\n", identity(&src.main.path).display());
    for f in &src.fragments {
        let path = f.path.display().to_string();
        if path.contains('\n') {
            return Err(format!("{path:?}: a line break in a fragment's name"));
        }
        out += &format!("{FRAGMENT}{} {path}\n", f.text.len());
    }
    out += &format!("{MAIN}{}\n", src.main.text.len());
    for f in &src.fragments {
        out += &f.text;
    }
    out += &src.main.text;
    Ok(out)
}

/// The configuration `encode` wrote, the main file's text read as `file`; None when the copy
/// is not of `file` or is damaged.
fn decode(copy: &str, file: &Path) -> Option<Sources> {
    let (first, mut rest) = copy.split_once('\n')?;
    if Path::new(first.strip_prefix(HEADER)?) != identity(file) {
        return None;
    }
    let mut heads = Vec::new();
    while let Some(line) = rest.strip_prefix(FRAGMENT) {
        let (line, after) = line.split_once('\n')?;
        let (len, path) = line.split_once(' ')?;
        heads.push((len.parse::<usize>().ok()?, PathBuf::from(path)));
        rest = after;
    }
    // The main file's length, when given, must be what is left: a damaged copy is none.
    if let Some(line) = rest.strip_prefix(MAIN) {
        let (len, after) = line.split_once('\n')?;
        rest = after;
        let total = heads.iter().map(|(l, _)| l).sum::<usize>();
        if Some(rest.len()) != len.parse::<usize>().ok()?.checked_add(total) {
            return None;
        }
    }
    let mut src = Sources::single("", file);
    for (len, path) in heads {
        let text = rest.get(..len)?;
        rest = &rest[len..];
        src.fragments.push(Source {
            path,
            text: text.to_string(),
        });
    }
    src.main.text = rest.to_string();
    Some(src)
}

/// The last good configuration, parsed as if it were `file` and its fragments (so a reload
/// reads them again), or None when there is none that loads.
pub fn load(file: &Path) -> Option<(Config, PathBuf)> {
    let path = fallback_path();
    let text = std::fs::read_to_string(&path).ok()?;
    let src = decode(&text, file)?;
    Config::from_sources(&src).ok().map(|c| (c, path))
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
        assert_eq!(
            saved,
            format!("{HEADER}{}\n{MAIN}{}\n{good}", real.display(), good.len())
        );

        // An edit that no longer loads is not remembered.
        std::fs::write(&file, "[a]\nport=oops\n").unwrap();
        remember(&cfg);
        assert_eq!(std::fs::read_to_string(&copy).unwrap(), saved);

        // The broken file gets its last good copy, under its own name; another file not.
        let (c, from) = load(&file).unwrap();
        assert_eq!((&c.file, c.services["a"].port, &from), (&file, 1001, &copy));
        let other = dir.path().join("other.cfg");
        std::fs::write(&other, "[a]\nport=oops\n").unwrap();
        assert!(load(&other).is_none());

        // With fragments: the copy keeps them, and stands in when one of them breaks.
        std::fs::write(&file, good).unwrap();
        let frags = dir.path().join("p.d");
        std::fs::create_dir(&frags).unwrap();
        std::fs::write(frags.join("10-b.cfg"), "[b]\nport=1002\n").unwrap();
        std::fs::write(frags.join("20-a.cfg"), "[a]\nrise=2\n").unwrap();
        let cfg = Config::load(&file).unwrap();
        remember(&cfg);
        std::fs::write(frags.join("10-b.cfg"), "[b]\nport=oops\n").unwrap();
        assert!(Config::load(&file).is_err());
        let (c, _) = load(&file).unwrap();
        assert_eq!(c, cfg, "the copy is the configuration that loaded");
        assert_eq!(c.services["b"].origin.files, [frags.join("10-b.cfg")]);
        // ... and a broken fragment is not remembered either.
        let before = std::fs::read_to_string(&copy).unwrap();
        remember(&cfg);
        assert_eq!(std::fs::read_to_string(&copy).unwrap(), before);
        std::env::remove_var("STATE_DIRECTORY");
    }

    /// What a copy holds reads back as it was, whatever the texts hold; a copy of the earlier
    /// form (header, then the file) still reads; a damaged one does not.
    #[test]
    fn copies_read_back_exactly() {
        let file = Path::new("/nonexistent/p.cfg");
        let mut src = Sources::single("[a]\nport=1\n# psentinel: fragment 3 x\n", file);
        for (name, text) in [("10-é.cfg", "[b]\nport=2 # ünïcode\n"), ("20-c.cfg", "")] {
            src.fragments.push(Source {
                path: Path::new("/nonexistent/p.d").join(name),
                text: text.into(),
            });
        }
        let copy = encode(&src).unwrap();
        assert_eq!(decode(&copy, file), Some(src.clone()));
        let old = format!("{HEADER}{}\n[a]\nport=1\n", file.display());
        assert_eq!(decode(&old, file).unwrap().main.text, "[a]\nport=1\n");
        // A length that runs past the end, or into a character, is a damaged copy.
        let cut = &copy[..copy.len() - 20];
        assert_eq!(decode(cut, file), None);
        let inside = copy.replacen("fragment 23 ", "fragment 14 ", 1);
        assert_ne!(inside, copy);
        assert_eq!(decode(&inside, file), None);
    }
}
