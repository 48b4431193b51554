//! The decision log: what each key's apps asked for and what their grants
//! said, in RAM only, for the key's owner (`get_log`). Never parameters,
//! plaintexts or ciphertexts: time, app, method, kind, decision, reason.
//!
//! Built so that no one can erase what an app tried:
//!
//! - each app has its own entries, allowed and refused apart; a repeat of
//!   the app's last decision (same method, kind and outcome) only counts up;
//! - past [`LogLimits::per_key`] entries on a key, the app with the most
//!   entries loses one: its oldest allowed decision, else its oldest
//!   refusal after its first [`FIRST_REFUSALS_KEPT`], so flooding only ever
//!   erases the flooder's own history, and an app's first attempts stay;
//! - every key keeps its first [`LogLimits::floor`] entries whatever other
//!   keys do: past [`LogLimits::total`] entries beyond the floors, over
//!   all keys, the key with the most entries loses one the same way, and
//!   never below its floor. So an app's operator who imports many keys of
//!   their own and logs on each cannot drain another key's log: keys that
//!   log little keep it all, and a key that logged much keeps at least its
//!   floor, its first refusals among it.
//!
//! At most `total + floor × keys` entries are held (keys that log are
//! owned keys, at most `Limits::max_keys`).
//!
//! Entries are numbered by one counter over all keys: a cursor never means
//! two entries, even after a key is deleted and imported again.

use std::collections::{BTreeSet, HashMap, VecDeque};

use nostr::PublicKey;
use verifier::grant::wire::LogEntry;
use verifier::grant::{Action, Method, Refusal};

/// How much the log keeps.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    /// Entries kept per key.
    pub per_key: usize,
    /// Entries kept over all keys beyond each key's floor.
    pub total: usize,
    /// Entries of each key that other keys' entries never push out (at
    /// most `per_key`).
    pub floor: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            per_key: 1000,
            total: 100_000,
            floor: 8,
        }
    }
}

/// Refusals of an app that are never dropped for its later ones.
pub const FIRST_REFUSALS_KEPT: usize = 32;

/// One decision (or a run of the same one).
#[derive(Debug, Clone)]
pub struct Entry {
    seq: u64,
    time: u64,
    count: u32,
    app: [u8; 32],
    method: Method,
    kind: Option<u16>,
    refusal: Option<Refusal>,
}

impl Entry {
    /// The entry for `app`'s `action` at `time`, refused for `refusal`.
    pub fn new(time: u64, app: &PublicKey, action: &Action, refusal: Option<Refusal>) -> Self {
        Self {
            seq: 0,
            time,
            count: 1,
            app: app.to_bytes(),
            method: action.method,
            kind: action.kind,
            refusal,
        }
    }

    /// Whether `other` is the same decision again.
    fn repeats(&self, other: &Self) -> bool {
        self.method == other.method
            && self.kind == other.kind
            && self.refusal.map(|r| r.code()) == other.refusal.map(|r| r.code())
    }

    /// As `get_log` reports it.
    pub fn view(&self) -> LogEntry {
        let action = Action {
            kind: self.kind,
            ..Action::method(self.method)
        };
        LogEntry {
            seq: self.seq,
            time: self.time,
            count: self.count,
            app: hex::encode(self.app),
            method: self.method.as_str().to_owned(),
            kind: self.kind,
            decision: if self.refusal.is_some() {
                "refused"
            } else {
                "allowed"
            }
            .to_owned(),
            reason: self.refusal.map(|r| r.message(&action)),
        }
    }
}

#[derive(Debug, Default)]
struct AppLog {
    allowed: VecDeque<Entry>,
    refused: VecDeque<Entry>,
}

impl AppLog {
    fn len(&self) -> usize {
        self.allowed.len() + self.refused.len()
    }

    /// Drops its oldest allowed entry, else its oldest refusal after the
    /// first ones; whether one was dropped.
    fn drop_one(&mut self) -> bool {
        if self.allowed.pop_front().is_some() {
            return true;
        }
        let at = FIRST_REFUSALS_KEPT.min(self.refused.len().saturating_sub(1));
        self.refused.remove(at).is_some()
    }
}

#[derive(Debug, Default)]
struct KeyLog {
    apps: HashMap<[u8; 32], AppLog>,
    len: usize,
}

impl KeyLog {
    /// Drops one entry of the app with the most.
    fn drop_one(&mut self) -> bool {
        let Some((app, log)) = self.apps.iter_mut().max_by_key(|(_, l)| l.len()) else {
            return false;
        };
        let app = *app;
        let dropped = log.drop_one();
        if log.len() == 0 {
            self.apps.remove(&app);
        }
        if dropped {
            self.len -= 1;
        }
        dropped
    }
}

/// Every key's log.
#[derive(Debug, Default)]
pub struct DecisionLog {
    limits: LogLimits,
    keys: HashMap<PublicKey, KeyLog>,
    /// (entries, key) of every key with entries: the largest is last.
    by_size: BTreeSet<(usize, [u8; 32])>,
    total: usize,
    /// Entries beyond each key's floor, over all keys.
    excess: usize,
    next_seq: u64,
}

impl DecisionLog {
    /// An empty log.
    pub fn new(limits: LogLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Appends `entry` to `user`'s log.
    pub fn push(&mut self, user: PublicKey, mut entry: Entry) {
        if self.limits.per_key == 0 || self.limits.total == 0 {
            return;
        }
        let log = self.keys.entry(user).or_default();
        let before = log.len;
        let app = log.apps.entry(entry.app).or_default();
        let side = if entry.refusal.is_some() {
            &mut app.refused
        } else {
            &mut app.allowed
        };
        if let Some(last) = side.back_mut().filter(|last| last.repeats(&entry)) {
            last.count = last.count.saturating_add(1);
            last.time = entry.time;
            last.refusal = entry.refusal;
            return;
        }
        entry.seq = self.next_seq;
        self.next_seq += 1;
        side.push_back(entry);
        self.added(user, before);
    }

    /// Counts the entry just added to `user`'s log (which had `before`
    /// entries) and drops what the limits no longer keep.
    fn added(&mut self, user: PublicKey, before: usize) {
        let Some(log) = self.keys.get_mut(&user) else {
            return;
        };
        log.len += 1;
        if log.len > self.limits.per_key {
            log.drop_one();
        }
        let after = log.len;
        self.resized(user.to_bytes(), before, after);
        while self.excess > self.limits.total {
            if !self.drop_from_largest() {
                break;
            }
        }
    }

    /// Floor of every key.
    fn floor(&self) -> usize {
        self.limits.floor.min(self.limits.per_key)
    }

    /// Records that the key `bytes` went from `before` to `after` entries.
    fn resized(&mut self, bytes: [u8; 32], before: usize, after: usize) {
        let floor = self.floor();
        self.total = (self.total + after).saturating_sub(before);
        self.excess = (self.excess + after.saturating_sub(floor))
            .saturating_sub(before.saturating_sub(floor));
        self.by_size.remove(&(before, bytes));
        if after > 0 {
            self.by_size.insert((after, bytes));
        }
    }

    /// Drops one entry of the key with the most, if it has more than its
    /// floor; whether one was dropped.
    fn drop_from_largest(&mut self) -> bool {
        let Some(&(size, bytes)) = self.by_size.iter().next_back() else {
            return false;
        };
        if size <= self.floor() {
            return false;
        }
        let Ok(user) = PublicKey::from_slice(&bytes) else {
            return false;
        };
        let Some(log) = self.keys.get_mut(&user) else {
            return false;
        };
        let dropped = log.drop_one();
        let after = log.len;
        if after == 0 {
            self.keys.remove(&user);
        }
        self.resized(bytes, size, after);
        dropped
    }

    /// Forgets `user`'s log (its key was deleted).
    pub fn forget(&mut self, user: &PublicKey) {
        if let Some(log) = self.keys.remove(user) {
            self.resized(user.to_bytes(), log.len, 0);
        }
    }

    /// `user`'s entries from `from` on (by seq), oldest first.
    pub fn entries(&self, user: &PublicKey, from: u64) -> Vec<&Entry> {
        let Some(log) = self.keys.get(user) else {
            return Vec::new();
        };
        let mut all: Vec<&Entry> = log
            .apps
            .values()
            .flat_map(|a| a.allowed.iter().chain(a.refused.iter()))
            .filter(|e| e.seq >= from)
            .collect();
        all.sort_by_key(|e| e.seq);
        all
    }

    /// Entries held over all keys.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether nothing is logged.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

mod record;

#[cfg(test)]
mod tests;
