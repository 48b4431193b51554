//! The decision log: what each key's apps asked for and what the grant
//! said, in RAM only, for the key's owner (`get_log`). Never parameters,
//! plaintexts or ciphertexts: time, app, method, kind, decision, reason.
//!
//! Bounded twice. Per key, the last [`LogLimits::per_key`] allowed and,
//! separately, the last `per_key` refused decisions, so an app flooding
//! allowed requests cannot push its refusals out of sight. Overall, at most
//! [`LogLimits::total`] entries: past it the oldest entry of all goes,
//! whichever key it belongs to.

use std::collections::{HashMap, VecDeque};

use nostr::PublicKey;
use verifier::grant::wire::LogEntry;
use verifier::grant::{Action, Method, Refusal};

/// How much the log keeps.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    /// Allowed decisions kept per key, and refused ones.
    pub per_key: usize,
    /// Entries kept over all keys.
    pub total: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            per_key: 500,
            total: 100_000,
        }
    }
}

/// One decision.
#[derive(Debug, Clone)]
pub struct Entry {
    seq: u64,
    time: u64,
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
            app: app.to_bytes(),
            method: action.method,
            kind: action.kind,
            refusal,
        }
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
struct KeyLog {
    next_seq: u64,
    allowed: VecDeque<Entry>,
    refused: VecDeque<Entry>,
}

/// Every key's log.
#[derive(Debug, Default)]
pub struct DecisionLog {
    limits: LogLimits,
    keys: HashMap<PublicKey, KeyLog>,
    /// (key, seq, refused) of every entry in the order logged, and of
    /// some already gone (dropped per key, or the key deleted): skipped
    /// when met.
    order: VecDeque<(PublicKey, u64, bool)>,
    total: usize,
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
        entry.seq = log.next_seq;
        log.next_seq += 1;
        let seq = entry.seq;
        let refused = entry.refusal.is_some();
        let side = if refused {
            &mut log.refused
        } else {
            &mut log.allowed
        };
        side.push_back(entry);
        if side.len() > self.limits.per_key {
            side.pop_front();
        } else {
            self.total += 1;
        }
        self.order.push_back((user, seq, refused));
        while self.total > self.limits.total {
            let Some((key, seq, refused)) = self.order.pop_front() else {
                break;
            };
            if self.drop_if_front(&key, seq, refused) {
                self.total -= 1;
            }
        }
        // Markers of entries already gone pile up only so far.
        if self.order.len() > 2 * self.limits.total.max(self.total) + 1024 {
            self.compact();
        }
    }

    /// Removes `key`'s entry `seq` if it is still the oldest of its side.
    fn drop_if_front(&mut self, key: &PublicKey, seq: u64, refused: bool) -> bool {
        let Some(log) = self.keys.get_mut(key) else {
            return false;
        };
        let side = if refused {
            &mut log.refused
        } else {
            &mut log.allowed
        };
        if side.front().is_some_and(|e| e.seq == seq) {
            side.pop_front().is_some()
        } else {
            false
        }
    }

    /// Drops the markers of entries already gone: an entry is still there
    /// if its seq is not older than the oldest of its side.
    fn compact(&mut self) {
        let keys = &self.keys;
        self.order.retain(|(key, seq, refused)| {
            keys.get(key).is_some_and(|log| {
                let side = if *refused { &log.refused } else { &log.allowed };
                side.front().is_some_and(|e| e.seq <= *seq)
            })
        });
    }

    /// Forgets `user`'s log (its key was deleted).
    pub fn forget(&mut self, user: &PublicKey) {
        if let Some(log) = self.keys.remove(user) {
            self.total -= log.allowed.len() + log.refused.len();
        }
    }

    /// `user`'s entries from `from` on (by seq), oldest first.
    pub fn entries(&self, user: &PublicKey, from: u64) -> Vec<&Entry> {
        let Some(log) = self.keys.get(user) else {
            return Vec::new();
        };
        let mut all: Vec<&Entry> = log
            .allowed
            .iter()
            .chain(log.refused.iter())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use nostr::Keys;

    use super::*;

    fn entry(t: u64, refused: bool) -> Entry {
        let app = Keys::generate().public_key();
        let refusal = refused.then_some(Refusal::NotGranted);
        Entry::new(t, &app, &Action::sign(0, None), refusal)
    }

    #[test]
    fn refusals_survive_a_flood_of_allowed_requests() {
        let mut log = DecisionLog::new(LogLimits {
            per_key: 3,
            total: 100,
        });
        let user = Keys::generate().public_key();
        log.push(user, entry(1, true));
        for t in 2..50 {
            log.push(user, entry(t, false));
        }
        let kept = log.entries(&user, 0);
        assert_eq!(kept.len(), 4);
        assert_eq!(kept[0].view().decision, "refused");
        assert_eq!(kept[0].view().seq, 0);
        assert_eq!(kept[3].view().seq, 48);
        assert_eq!(log.len(), 4);
        assert!(log.order.len() < 2 * 100 + 1024 + 1);
        assert_eq!(
            kept[0].view().reason.as_deref(),
            Some("forbidden: sign_event of kind 0 is not granted to this app")
        );
    }

    #[test]
    fn the_total_is_a_bound_over_all_keys() {
        let mut log = DecisionLog::new(LogLimits {
            per_key: 10,
            total: 25,
        });
        let users: Vec<PublicKey> = (0..5).map(|_| Keys::generate().public_key()).collect();
        for round in 0..20 {
            for u in &users {
                log.push(*u, entry(round, round % 3 == 0));
            }
            assert!(log.len() <= 25);
        }
        // the oldest went first: every key keeps its newest
        for u in &users {
            let kept = log.entries(u, 0);
            assert_eq!(kept.last().unwrap().view().seq, 19);
            assert_eq!(kept.len(), 5);
        }
        log.forget(&users[0]);
        assert_eq!(log.len(), 20);
        for _ in 0..10_000 {
            log.push(users[1], entry(99, false));
        }
        assert!(log.len() <= 25);
        assert!(log.order.len() <= 2 * 25 + 1024 + 1);
    }
}
