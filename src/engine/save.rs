//! Writing the state file: at once for operators' changes (so that the answer can say whether
//! the change is saved), off the engine's loop for check results (an fsync must not hold up
//! the next result, a probe's view or a `test`'s answer), retried with backoff while it fails.
//!
//! Every write carries a sequence number; the writer skips a write older than one it has
//! already tried, so a late background write never replaces newer content, and the engine
//! takes a write's verdict only when it is the newest it has heard of.

use super::Engine;
use crate::model::{Admin, CheckResult, HealthTracker, Micros};
use crate::state::Store;
use crate::view::{SaveFailure, ServiceView, Services};
use serde::ser::{Serialize, SerializeStruct, Serializer};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Retries of a state file that cannot be written: the first wait, doubled up to the last.
const SAVE_RETRY_MIN: Duration = Duration::from_millis(250);
const SAVE_RETRY_MAX: Duration = Duration::from_secs(5);
/// Background writes (check results) start at least this far apart.
pub(super) const SAVE_SPACING: Duration = Duration::from_millis(100);

/// The state file and the newest content tried on it.
struct Writer {
    store: Store,
    tried: u64,
}

/// A background write's verdict: its sequence number and how it went (None: skipped, newer
/// content was tried first).
pub(super) type Verdict = (u64, Option<std::io::Result<()>>);

impl Writer {
    fn new(store: Store) -> Arc<Mutex<Writer>> {
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

/// The state file and the bookkeeping of its writes; the engine supplies the content (its
/// views), publishes when saving starts or stops failing, and tells the time.
pub(super) struct Saver {
    writer: Arc<Mutex<Writer>>,
    path: PathBuf,
    /// The sequence number of the newest write asked for, and of the newest verdict taken.
    seq: u64,
    verdict_seq: u64,
    /// A background write is under way; `Some(true)`: more changed since it began, and
    /// another write follows when its verdict comes back.
    writing: Option<bool>,
    /// When the last background write started, and when the next one is due (one waits
    /// while the last started less than [`SAVE_SPACING`] ago).
    write_started: Option<Instant>,
    write_due: Option<Instant>,
    tx: mpsc::UnboundedSender<Verdict>,
    /// Check results were recorded that no write begun or waiting for its turn carries: the
    /// loop writes them within `HEALTH_FLUSH_DELAY`.
    health_dirty: bool,
    /// Set while the state file cannot be written; the loop retries with backoff.
    unsaved: Option<SaveFailure>,
    retry: Duration,
}

impl Saver {
    /// The saver of `store`, and where background writes' verdicts arrive (for
    /// [`Engine::on_saved`]).
    pub(super) fn new(store: Store) -> (Saver, mpsc::UnboundedReceiver<Verdict>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let saver = Saver {
            path: store.path(),
            writer: Writer::new(store),
            seq: 0,
            verdict_seq: 0,
            writing: None,
            write_started: None,
            write_due: None,
            tx,
            health_dirty: false,
            unsaved: None,
            retry: SAVE_RETRY_MIN,
        };
        (saver, rx)
    }

    /// Why the state file is not current (None: it is).
    pub(super) fn failure(&self) -> Option<&SaveFailure> {
        self.unsaved.as_ref()
    }

    /// Check results were recorded that no write has carried yet.
    pub(super) fn health_dirty(&self) -> bool {
        self.health_dirty
    }

    pub(super) fn set_health_dirty(&mut self) {
        self.health_dirty = true;
    }

    /// When a background write waiting for its turn is due.
    pub(super) fn write_due(&self) -> Option<Instant> {
        self.write_due
    }

    /// When to try again a state file that cannot be written.
    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.unsaved.as_ref().map(|_| Instant::now() + self.retry)
    }

    /// A retry failed again: the next waits twice as long, up to [`SAVE_RETRY_MAX`].
    pub(super) fn back_off(&mut self) {
        self.retry = (self.retry * 2).min(SAVE_RETRY_MAX);
    }

    /// Writes `saved` now; true when saving started or stopped failing (the snapshot must
    /// show it).
    fn write_now(&mut self, saved: &SavedViews, now: Micros) -> bool {
        self.health_dirty = false;
        self.seq += 1;
        let seq = self.seq;
        let res = lock(&self.writer).write(seq, saved);
        match res {
            Some(r) => self.take(seq, r, now),
            None => false,
        }
    }

    /// Whether a background write starts now ([`Engine::persist_soon`]): its sequence
    /// number, or None when it waits (for the write under way, or for its turn).
    fn turn(&mut self) -> Option<u64> {
        self.health_dirty = false;
        if let Some(again) = &mut self.writing {
            *again = true;
            return None;
        }
        let now = Instant::now();
        if let Some(last) = self.write_started {
            if now < last + SAVE_SPACING {
                self.write_due = Some(last + SAVE_SPACING);
                return None;
            }
        }
        self.write_due = None;
        self.write_started = Some(now);
        self.writing = Some(false);
        self.seq += 1;
        Some(self.seq)
    }

    /// Writes `saved` off the engine's loop; the verdict comes back on the channel.
    fn start(&self, seq: u64, saved: SavedViews) {
        let (writer, tx) = (self.writer.clone(), self.tx.clone());
        tokio::task::spawn_blocking(move || {
            let r = lock(&writer).write(seq, &saved);
            let _ = tx.send((seq, r));
        });
    }

    /// The background write is over; true when more changed meanwhile (another follows).
    fn write_over(&mut self) -> bool {
        self.writing.take() == Some(true)
    }

    /// Takes a write's verdict unless a newer one was taken already; logs when saving
    /// starts or stops failing, and returns true then (the engine publishes).
    fn take(&mut self, seq: u64, r: std::io::Result<()>, now: Micros) -> bool {
        if seq < self.verdict_seq {
            return false;
        }
        self.verdict_seq = seq;
        let path = self.path.clone();
        match r {
            Ok(()) => {
                let Some(f) = self.unsaved.take() else {
                    return false;
                };
                tracing::info!(path = %path.display(), "state saved again (failing since {})", crate::status::time(f.since));
                self.retry = SAVE_RETRY_MIN;
                true
            }
            Err(e) => {
                let error = e.to_string();
                let first = self.unsaved.is_none();
                if first || self.unsaved.as_ref().is_some_and(|f| f.error != error) {
                    tracing::error!(path = %path.display(), "cannot save state: {error}; retrying until it works (a restart now would lose the latest changes)");
                }
                let since = self.unsaved.as_ref().map_or(now, |f| f.since);
                self.unsaved = Some(SaveFailure { path, error, since });
                first
            }
        }
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
        let saved = self.saved();
        if self.saver.write_now(&saved, self.clock.now()) {
            self.publish();
        }
        self.saver.failure().is_none()
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
    /// waits for its turn ([`Saver::write_due`]); an isolated change is written at once.
    pub(super) fn persist_soon(&mut self) {
        if let Some(seq) = self.saver.turn() {
            self.saver.start(seq, self.saved());
        }
    }

    pub(super) fn on_saved(&mut self, (seq, r): Verdict) {
        if let Some(r) = r {
            if self.saver.take(seq, r, self.clock.now()) {
                self.publish();
            }
        }
        if self.saver.write_over() {
            self.persist_soon();
        }
    }
}

/// A writer whose holder panicked mid-write still writes: the file is replaced atomically.
fn lock(w: &Mutex<Writer>) -> std::sync::MutexGuard<'_, Writer> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A background write that comes late never replaces newer content.
    #[test]
    fn the_writer_skips_a_write_older_than_one_it_tried() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let file = store.path();
        let w = Writer::new(store);
        let saved = SavedViews(Services::default());
        assert!(matches!(lock(&w).write(2, &saved), Some(Ok(()))));
        std::fs::remove_file(&file).unwrap();
        assert!(lock(&w).write(1, &saved).is_none());
        assert!(lock(&w).write(2, &saved).is_none());
        assert!(!file.exists(), "not written");
        assert!(matches!(lock(&w).write(3, &saved), Some(Ok(()))));
        assert!(file.exists());
    }
}
