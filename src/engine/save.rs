//! Writing the state file: at once for operators' changes (so that the answer can say whether
//! the change is saved), off the engine's loop for check results (an fsync must not hold up
//! the next result, a probe's view or a `test`'s answer), retried with backoff while it fails.
//!
//! Every write carries a sequence number; the writer skips a write older than one it has
//! already tried, so a late background write never replaces newer content, and the engine
//! takes a write's verdict only when it is the newest it has heard of.

use super::Engine;
use crate::model::{Admin, CheckResult, HealthTracker};
use crate::state::Store;
use crate::view::{SaveFailure, ServiceView, Services};
use serde::ser::{Serialize, SerializeStruct, Serializer};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Retries of a state file that cannot be written: the first wait, doubled up to the last.
pub(super) const SAVE_RETRY_MIN: Duration = Duration::from_millis(250);
pub(super) const SAVE_RETRY_MAX: Duration = Duration::from_secs(5);
/// Background writes (check results) start at least this far apart.
pub(super) const SAVE_SPACING: Duration = Duration::from_millis(100);

/// The state file and the newest content tried on it.
pub(super) struct Writer {
    store: Store,
    tried: u64,
}

/// A background write's verdict: its sequence number and how it went (None: skipped, newer
/// content was tried first).
pub(super) type Verdict = (u64, Option<std::io::Result<()>>);

impl Writer {
    pub(super) fn new(store: Store) -> Arc<Mutex<Writer>> {
        Arc::new(Mutex::new(Writer { store, tried: 0 }))
    }

    fn write(&mut self, seq: u64, saved: &SavedViews) -> Option<std::io::Result<()>> {
        if seq <= self.tried {
            return None;
        }
        self.tried = seq;
        Some(self.store.save(saved))
    }
}

/// The state file's content ([`crate::state::Saved`], the same JSON), read from the services'
/// views: taking it copies a pointer per service, where building a `Saved` copied every
/// service's operator state and last result (its output too) for each write.
pub(super) struct SavedViews(pub(super) Services);

/// What the state file keeps of one service ([`crate::state::SavedService`]'s fields).
#[derive(serde::Serialize)]
struct SavedView<'a> {
    admin: &'a Admin,
    health: &'a HealthTracker,
    last: &'a Option<CheckResult>,
    check: &'a Option<Vec<String>>,
}

impl<'a> SavedView<'a> {
    fn of(v: &'a ServiceView) -> SavedView<'a> {
        SavedView {
            admin: &v.admin,
            health: &v.health,
            last: &v.last,
            check: &v.cfg.check,
        }
    }
}

impl Serialize for SavedViews {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct ByName<'a>(&'a Services);
        impl Serialize for ByName<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().map(|(n, v)| (n, SavedView::of(v))))
            }
        }
        let mut st = s.serialize_struct("Saved", 2)?;
        st.serialize_field("version", &1u32)?;
        st.serialize_field("services", &ByName(&self.0))?;
        st.end()
    }
}

impl Engine {
    pub(super) fn saved(&self) -> SavedViews {
        SavedViews(self.views())
    }

    /// Writes the state file now. A failure is kept in the snapshot (status, metrics, the
    /// answer to whoever made the change) and retried by the loop until a write succeeds.
    /// Returns whether the file is current.
    pub(super) fn persist(&mut self) -> bool {
        self.health_dirty = false;
        self.save_seq += 1;
        let seq = self.save_seq;
        let saved = self.saved();
        let res = lock(&self.writer).write(seq, &saved);
        match res {
            Some(r) => self.note_save(seq, r),
            None => self.unsaved.is_none(),
        }
    }

    /// Writes the state file in the background (check results); the verdict comes back to
    /// the loop ([`Engine::on_saved`]).
    ///
    /// One write at a time: results that come while one is under way are written together
    /// by the next, started as soon as its verdict is back. A thousand first results each
    /// writing every service's state was a million services' worth of copying and JSON.
    ///
    /// And at most one every [`SAVE_SPACING`]: a thousand first results arriving one by one
    /// (one process started at a time) still meant three hundred writes of every service
    /// in the first second, most of the daemon's CPU at start-up. A write that comes sooner
    /// waits for its turn ([`Engine::write_due`]); an isolated change is written at once.
    pub(super) fn persist_soon(&mut self) {
        self.health_dirty = false;
        if let Some(again) = &mut self.writing {
            *again = true;
            return;
        }
        let now = tokio::time::Instant::now();
        if let Some(last) = self.write_started {
            if now < last + SAVE_SPACING {
                self.write_due = Some(last + SAVE_SPACING);
                return;
            }
        }
        self.write_due = None;
        self.write_started = Some(now);
        self.writing = Some(false);
        self.save_seq += 1;
        let (seq, saved) = (self.save_seq, self.saved());
        let (writer, tx) = (self.writer.clone(), self.saved_tx.clone());
        tokio::task::spawn_blocking(move || {
            let r = lock(&writer).write(seq, &saved);
            let _ = tx.send((seq, r));
        });
    }

    pub(super) fn on_saved(&mut self, (seq, r): Verdict) {
        if let Some(r) = r {
            self.note_save(seq, r);
        }
        if self.writing.take() == Some(true) {
            self.persist_soon();
        }
    }

    /// Takes a write's verdict unless a newer one was taken already; logs and publishes
    /// when saving starts or stops failing.
    fn note_save(&mut self, seq: u64, r: std::io::Result<()>) -> bool {
        if seq < self.save_verdict_seq {
            return self.unsaved.is_none();
        }
        self.save_verdict_seq = seq;
        let path = self.store_path.clone();
        match r {
            Ok(()) => {
                if let Some(f) = self.unsaved.take() {
                    tracing::info!(path = %path.display(), "state saved again (failing since {})", crate::status::time(f.since));
                    self.save_retry = SAVE_RETRY_MIN;
                    self.publish();
                }
                true
            }
            Err(e) => {
                let error = e.to_string();
                let first = self.unsaved.is_none();
                if first || self.unsaved.as_ref().is_some_and(|f| f.error != error) {
                    tracing::error!(path = %path.display(), "cannot save state: {error}; retrying until it works (a restart now would lose the latest changes)");
                }
                let since = self.unsaved.as_ref().map_or(self.clock.now(), |f| f.since);
                self.unsaved = Some(SaveFailure { path, error, since });
                if first {
                    self.publish();
                }
                false
            }
        }
    }
}

/// A writer whose holder panicked mid-write still writes: the file is replaced atomically.
fn lock(w: &Mutex<Writer>) -> std::sync::MutexGuard<'_, Writer> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}
