//! Which files make up the configuration, and their text: the main file, then every `*.cfg`
//! of its drop-in directory in lexical order (the way systemd reads `*.conf.d/`).
//!
//! The directory of `/etc/psentinel/psentinel.cfg` is `/etc/psentinel/psentinel.d/`: the main
//! file's name without `.cfg`, plus `.d` (`-f /srv/x.cfg` reads `/srv/x.d/`, `-f x.conf` reads
//! `x.conf.d/`). A missing directory is no error: there are no fragments. Files whose name
//! does not end in `.cfg` (a README, `10-web.cfg.dpkg-old`, `10-web.cfg~`) and hidden files
//! (`.#10-web.cfg`, an editor's lock) are not read; `-t` names them, so that a fragment
//! misnamed `20-db.conf` does not go unnoticed. Lexical order is byte order of the names:
//! `10-web.cfg` before `20-db.cfg` before `README.cfg` before `a.cfg`.

use super::ConfigError;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One file of the configuration and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

/// The files of one configuration, as read: the main file first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub main: Source,
    pub fragments: Vec<Source>,
    /// Files of the drop-in directory that are not read (see the module doc).
    pub ignored: Vec<PathBuf>,
}

/// The drop-in directory of the configuration file `file`.
pub fn dropin_dir(file: &Path) -> PathBuf {
    let name = match (file.file_name(), file.extension()) {
        (Some(_), Some(ext)) if ext == "cfg" => file.file_stem().unwrap_or_default().to_owned(),
        (Some(name), _) => name.to_owned(),
        // "/" or "..": no name to derive one from; a sibling "FILE.d" still says what it is.
        (None, _) => {
            let mut s = file.as_os_str().to_owned();
            s.push(".d");
            return PathBuf::from(s);
        }
    };
    let mut dir = name;
    dir.push(".d");
    file.with_file_name(dir)
}

impl Sources {
    /// Reads the main file and every fragment. Every file that cannot be read is an error,
    /// all of them at once (a fragment one cannot read would otherwise silently drop its
    /// services); the main file's comes alone, as nothing can be checked without it.
    pub fn read(file: &Path) -> Result<Sources, ConfigError> {
        let (sources, errors) = Sources::read_readable(file)?;
        match ConfigError::gather(file, errors) {
            None => Ok(sources),
            Some(e) => Err(e),
        }
    }

    /// What `-t` reads: the main file and every fragment that can be read, and an error for
    /// each that cannot. Err: the main file or the directory cannot be read.
    pub fn read_readable(file: &Path) -> Result<(Sources, Vec<ConfigError>), ConfigError> {
        let main = Source {
            path: file.to_path_buf(),
            text: read(file)?,
        };
        let dir = dropin_dir(file);
        let (paths, ignored) = list(&dir).map_err(|source| ConfigError::Read {
            file: dir.clone(),
            source,
        })?;
        let mut fragments = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            match read(&path) {
                Ok(text) => fragments.push(Source { path, text }),
                Err(e) => errors.push(e),
            }
        }
        let sources = Sources {
            main,
            fragments,
            ignored,
        };
        Ok((sources, errors))
    }

    /// One file, no drop-in directory: what `Config::parse` and the fuzzer read.
    pub fn single(text: &str, file: &Path) -> Sources {
        Sources {
            main: Source {
                path: file.to_path_buf(),
                text: text.to_string(),
            },
            fragments: Vec::new(),
            ignored: Vec::new(),
        }
    }

    /// The main file, then the fragments in the order they apply.
    pub fn all(&self) -> impl Iterator<Item = &Source> {
        std::iter::once(&self.main).chain(&self.fragments)
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })
}

/// The fragments of `dir` in the order they apply, and the files not read; nothing when the
/// directory does not exist.
fn list(dir: &Path) -> std::io::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for e in entries {
        names.push(e?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let (read, ignored): (Vec<_>, Vec<_>) = names.into_iter().partition(|n| {
        let b = n.as_bytes();
        b.ends_with(b".cfg") && !b.starts_with(b".")
    });
    let paths = |names: Vec<OsString>| names.into_iter().map(|n| dir.join(n)).collect();
    Ok((paths(read), paths(ignored)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_is_named_after_the_file() {
        for (file, dir) in [
            ("/etc/psentinel/psentinel.cfg", "/etc/psentinel/psentinel.d"),
            ("/srv/x.cfg", "/srv/x.d"),
            ("x.conf", "x.conf.d"),
            ("/srv/cfg", "/srv/cfg.d"),
            ("/srv/.cfg", "/srv/.cfg.d"),
        ] {
            assert_eq!(dropin_dir(Path::new(file)), Path::new(dir), "{file}");
        }
    }

    #[test]
    fn fragments_in_byte_order_others_ignored() {
        let d = tempfile::tempdir().unwrap();
        let main = d.path().join("p.cfg");
        std::fs::write(&main, "").unwrap();
        let dir = d.path().join("p.d");
        std::fs::create_dir(&dir).unwrap();
        for n in [
            "b.cfg",
            "20-db.cfg",
            "10-web.cfg",
            "README",
            "B.cfg",
            ".#10-web.cfg",
            "10-web.cfg~",
        ] {
            std::fs::write(dir.join(n), format!("# {n}\n")).unwrap();
        }
        let s = Sources::read(&main).unwrap();
        let names: Vec<_> = s.fragments.iter().map(|f| f.path.clone()).collect();
        let want: Vec<_> = ["10-web.cfg", "20-db.cfg", "B.cfg", "b.cfg"]
            .iter()
            .map(|n| dir.join(n))
            .collect();
        assert_eq!(names, want);
        assert_eq!(s.fragments[1].text, "# 20-db.cfg\n");
        let ignored: Vec<_> = [".#10-web.cfg", "10-web.cfg~", "README"]
            .iter()
            .map(|n| dir.join(n))
            .collect();
        assert_eq!(s.ignored, ignored);
    }

    #[test]
    fn no_directory_no_fragments_unreadable_ones_named() {
        let d = tempfile::tempdir().unwrap();
        let main = d.path().join("p.cfg");
        std::fs::write(&main, "").unwrap();
        assert!(Sources::read(&main).unwrap().fragments.is_empty());
        // A file where the directory should be.
        std::fs::write(d.path().join("p.d"), "").unwrap();
        let e = Sources::read(&main).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}/p.d: cannot read", d.path().display())),
            "{e}"
        );
        std::fs::remove_file(d.path().join("p.d")).unwrap();
        // Two fragments that cannot be read (invalid UTF-8, a dangling link): both named.
        let dir = d.path().join("p.d");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("10-bin.cfg"), b"\xff\xfe").unwrap();
        std::os::unix::fs::symlink(dir.join("nowhere"), dir.join("20-link.cfg")).unwrap();
        let e = Sources::read(&main).unwrap_err().to_string();
        assert!(e.contains("2 errors"), "{e}");
        assert!(e.contains("10-bin.cfg: cannot read") && e.contains("20-link.cfg: cannot read"));
    }
}
