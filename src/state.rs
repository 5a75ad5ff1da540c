//! What survives a restart: operators' decisions and each service's last check result.
//!
//! One JSON file, `state_dir/state.json`, replaced atomically (write a temporary file, fsync,
//! rename, fsync the directory), so a crash or `kill -9` leaves either the old or the new file,
//! never half of one. Manual changes are written at once; check results are written at most
//! once a second (the engine batches them), so a thousand services checked every ten seconds
//! cost one small write a second, not a hundred.
//!
//! A file that cannot be parsed is renamed aside (`state.json.corrupt-<time>`) and reported;
//! the daemon then starts every service in its configured start state.

use crate::model::{Admin, CheckResult, HealthTracker};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedService {
    #[serde(default)]
    pub admin: Admin,
    #[serde(default)]
    pub health: HealthTracker,
    #[serde(default)]
    pub last: Option<CheckResult>,
    /// The check command line the result belongs to: a result of another script is not trusted.
    #[serde(default)]
    pub check: Option<Vec<String>>,
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub version: u32,
    pub services: BTreeMap<String, SavedService>,
}

pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: &Path) -> Store {
        Store { dir: dir.into() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Reads the saved state. Missing file: empty state. Unreadable or corrupt: reported, set
    /// aside, empty state.
    pub fn load(&self) -> Saved {
        let path = self.path();
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Saved::default(),
            Err(e) => {
                tracing::error!(path = %path.display(), "cannot read saved state, starting without it: {e}");
                return Saved::default();
            }
        };
        match serde_json::from_slice::<Saved>(&text) {
            Ok(s) => s,
            Err(e) => {
                let aside = path.with_extension(format!(
                    "json.corrupt-{}",
                    crate::model::micros(std::time::SystemTime::now()) / 1_000_000
                ));
                let moved = std::fs::rename(&path, &aside);
                tracing::error!(
                    path = %path.display(),
                    aside = %aside.display(),
                    moved = moved.is_ok(),
                    "saved state is corrupt ({e}); set aside, every service starts in its configured state"
                );
                Saved::default()
            }
        }
    }

    /// Writes `saved`: a [`Saved`], or anything that serializes like one.
    pub fn save(&self, saved: &impl Serialize) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path();
        let tmp = self.dir.join(".state.json.tmp");
        let data = serde_json::to_vec_pretty(saved).map_err(std::io::Error::other)?;
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corrupt_file_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert_eq!(store.load(), Saved::default());
        let mut saved = Saved::default();
        saved.services.insert("a".into(), SavedService::default());
        store.save(&saved).unwrap();
        assert_eq!(store.load(), saved);
        std::fs::write(store.path(), b"{ not json").unwrap();
        assert_eq!(store.load(), Saved::default());
        assert!(!store.path().exists());
        let aside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(aside.len(), 1);
        assert!(aside[0].file_name().to_string_lossy().contains("corrupt"));
    }
}
