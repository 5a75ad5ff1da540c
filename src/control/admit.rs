//! Who gets a control connection when many are open: nobody can lock the operators out.
//!
//! The socket is open to every local user for reading, so a user can open connections and
//! say nothing. Three rules keep a connection free for whoever may change state:
//! - root and the daemon's own user are never counted, capped or evicted;
//! - every other uid may hold at most [`PER_UID`] connections at once (one user cannot take
//!   all of them; past its cap a new one is told so and closed);
//! - all of those together hold at most [`SHARED`]; a new one past that evicts a connection
//!   that is not carrying out an authorised change (a silent one, or one still reading or
//!   being answered): the oldest of the user who holds the most. So an operator (a
//!   control_group member) connecting among a flood of readers gets in, and the flood can
//!   only evict itself: the operator's one connection is never the heaviest user's.
//!
//! The uid comes from SO_PEERCRED at accept, which needs no NSS lookup: admission never
//! waits, and group membership is decided later, per request ([`crate::auth`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Connections one uid (other than root and the daemon's) may hold at once.
pub const PER_UID: usize = 16;
/// Connections of all those uids together.
pub const SHARED: usize = 128;

impl Table {
    /// The connection to evict: among the users with an evictable connection, the one who
    /// holds the most connections (ties: the lower uid), and of that user the oldest.
    fn victim(&self) -> Option<u64> {
        let (_, uid) = self
            .evictable
            .values()
            .map(|(uid, _)| {
                (
                    self.by_uid.get(uid).copied().unwrap_or(0),
                    std::cmp::Reverse(*uid),
                )
            })
            .max()
            .map(|(n, std::cmp::Reverse(uid))| (n, uid))?;
        self.evictable
            .iter()
            .find(|(_, (u, _))| *u == uid)
            .map(|(seq, _)| *seq)
    }
}

#[derive(Default)]
struct Table {
    by_uid: HashMap<u32, usize>,
    /// Evictable connections by admission order (oldest first): uid and cancel token.
    evictable: BTreeMap<u64, (u32, CancellationToken)>,
    total: usize,
    next: u64,
}

/// The admission table, shared by the accept loop and the connections' slots.
#[derive(Clone, Default)]
pub struct Admission {
    table: Arc<Mutex<Table>>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// This uid holds [`PER_UID`] connections already.
    User,
    /// [`SHARED`] connections are open and each carries out a change.
    Everyone,
}

/// One admitted connection: cancelled when evicted; frees its place when dropped.
pub struct Slot {
    /// None for root and the daemon's user (not counted).
    entry: Option<(u32, u64)>,
    table: Arc<Mutex<Table>>,
    pub evicted: CancellationToken,
}

impl Admission {
    /// Admits a connection of `uid`, evicting an older one if needed.
    pub fn admit(&self, uid: u32) -> Result<Slot, Full> {
        let evicted = CancellationToken::new();
        if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
            return Ok(Slot {
                entry: None,
                table: self.table.clone(),
                evicted,
            });
        }
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if t.by_uid.get(&uid).copied().unwrap_or(0) >= PER_UID {
            return Err(Full::User);
        }
        if t.total >= SHARED {
            let Some(victim) = t.victim() else {
                return Err(Full::Everyone);
            };
            if let Some((_, token)) = t.evictable.remove(&victim) {
                token.cancel();
            }
        }
        let seq = t.next;
        t.next += 1;
        *t.by_uid.entry(uid).or_default() += 1;
        t.total += 1;
        t.evictable.insert(seq, (uid, evicted.clone()));
        Ok(Slot {
            entry: Some((uid, seq)),
            table: self.table.clone(),
            evicted,
        })
    }
}

impl Slot {
    /// From now on this connection carries out an authorised change: never evicted.
    pub fn protect(&self) {
        if let Some((_, seq)) = self.entry {
            let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
            t.evictable.remove(&seq);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some((uid, seq)) = self.entry else { return };
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.evictable.remove(&seq);
        t.total -= 1;
        if let Some(n) = t.by_uid.get_mut(&uid) {
            *n -= 1;
            if *n == 0 {
                t.by_uid.remove(&uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not root and not us: an ordinary user's uid.
    fn other(n: u32) -> u32 {
        let me = nix::unistd::geteuid().as_raw();
        40_000
            + n
            + if (40_000..50_000).contains(&me) {
                10_000
            } else {
                0
            }
    }

    #[test]
    fn one_user_cannot_take_every_connection() {
        let a = Admission::default();
        let held: Vec<Slot> = (0..PER_UID).map(|_| a.admit(other(1)).unwrap()).collect();
        assert_eq!(a.admit(other(1)).err(), Some(Full::User));
        assert!(a.admit(other(2)).is_ok());
        drop(held);
        assert!(a.admit(other(1)).is_ok());
    }

    #[test]
    fn past_the_shared_cap_the_heaviest_users_oldest_reader_is_evicted() {
        let a = Admission::default();
        // One operator's connection first; user 1 holds the most (16, the first protected);
        // others fill every place left with 15 each at most.
        let operator = a.admit(other(500)).unwrap();
        let heavy: Vec<Slot> = (0..PER_UID).map(|_| a.admit(other(1)).unwrap()).collect();
        heavy[0].protect();
        let rest: Vec<Slot> = (0..SHARED - 1 - PER_UID)
            .map(|i| a.admit(other(2 + i as u32 / 15)).unwrap())
            .collect();
        let late = a.admit(other(999)).unwrap();
        assert!(
            !operator.evicted.is_cancelled(),
            "the lone operator was evicted"
        );
        assert!(
            !heavy[0].evicted.is_cancelled(),
            "a protected change was evicted"
        );
        assert!(
            heavy[1].evicted.is_cancelled(),
            "the heaviest user's oldest reader stays"
        );
        assert!(heavy[2..].iter().all(|s| !s.evicted.is_cancelled()));
        assert!(rest.iter().all(|s| !s.evicted.is_cancelled()));
        assert!(!late.evicted.is_cancelled());
        // Root is never counted nor refused.
        for _ in 0..3 * SHARED {
            assert!(a.admit(0).is_ok());
        }
    }

    #[test]
    fn when_all_carry_changes_a_newcomer_is_refused() {
        let a = Admission::default();
        let held: Vec<Slot> = (0..SHARED)
            .map(|i| a.admit(other(i as u32 / PER_UID as u32)).unwrap())
            .collect();
        held.iter().for_each(Slot::protect);
        assert_eq!(a.admit(other(999)).err(), Some(Full::Everyone));
    }
}
