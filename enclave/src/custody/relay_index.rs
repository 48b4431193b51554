//! How many held keys listen on each relay, kept up to date as keys come
//! and go, with which keys came and went on each relay since the
//! subscriptions last looked. A subscription update then costs what
//! changed, not every key on the relay, let alone every key held.
//!
//! Which relays a key listens on is the key's own list (the store's); the
//! index keeps only a count per relay, so a key costs nothing here once
//! its change is taken (memory per key bounds how many an enclave holds).
//! The store calls [`RelayIndex::add`] only with relays the key did not
//! listen on, and [`RelayIndex::remove`] only with relays it did.

use std::collections::{HashMap, HashSet};

use nostr::{PublicKey, RelayUrl};

/// The keys that started and stopped listening on one relay since the last
/// [`RelayIndex::take_changes`]. A key that came and went in between is in
/// neither.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RelayDelta {
    /// Keys now listening there.
    pub added: HashSet<PublicKey>,
    /// Keys no longer listening there.
    pub removed: HashSet<PublicKey>,
}

/// What changed for the subscriptions since they last looked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RelayChanges {
    /// Per relay, the keys that started and stopped listening there.
    pub keys: HashMap<RelayUrl, RelayDelta>,
    /// Per relay, the keys with an owner (not test keys) whose nsec.app
    /// permission events are to be read there: on their own relays and on
    /// the permission relays.
    pub owners: HashMap<RelayUrl, RelayDelta>,
}

/// Relay → how many keys listen there.
#[derive(Debug, Default)]
pub(super) struct RelayIndex {
    users: HashMap<RelayUrl, usize>,
    dirty: HashMap<RelayUrl, RelayDelta>,
}

impl RelayIndex {
    /// Distinct relays in use.
    pub(super) fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether some key listens on `relay`.
    pub(super) fn contains(&self, relay: &RelayUrl) -> bool {
        self.users.contains_key(relay)
    }

    /// How many keys listen on `relay`.
    pub(super) fn users(&self, relay: &RelayUrl) -> usize {
        self.users.get(relay).copied().unwrap_or(0)
    }

    /// `pubkey` now listens on `relays` too (none of which it listened on).
    pub(super) fn add(&mut self, pubkey: PublicKey, relays: &[RelayUrl]) {
        for (i, relay) in relays.iter().enumerate() {
            if relays.get(..i).is_some_and(|seen| seen.contains(relay)) {
                continue;
            }
            *self.users.entry(relay.clone()).or_default() += 1;
            let delta = self.dirty.entry(relay.clone()).or_default();
            if !delta.removed.remove(&pubkey) {
                delta.added.insert(pubkey);
            }
        }
    }

    /// `pubkey` no longer listens on `relays` (each of which it listened on).
    pub(super) fn remove(&mut self, pubkey: &PublicKey, relays: &[RelayUrl]) {
        for (i, relay) in relays.iter().enumerate() {
            if relays.get(..i).is_some_and(|seen| seen.contains(relay)) {
                continue;
            }
            let Some(users) = self.users.get_mut(relay) else {
                continue;
            };
            *users = users.saturating_sub(1);
            if *users == 0 {
                self.users.remove(relay);
            }
            let delta = self.dirty.entry(relay.clone()).or_default();
            if !delta.added.remove(pubkey) {
                delta.removed.insert(*pubkey);
            }
        }
    }

    /// What changed on each relay since the last call.
    pub(super) fn take_changes(&mut self) -> HashMap<RelayUrl, RelayDelta> {
        std::mem::take(&mut self.dirty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::Keys;

    #[test]
    fn tracks_keys_and_changes() {
        let (a, b) = (Keys::generate().public_key(), Keys::generate().public_key());
        let r1 = RelayUrl::parse("wss://one.example").unwrap();
        let r2 = RelayUrl::parse("wss://two.example").unwrap();
        let mut index = RelayIndex::default();
        index.add(a, &[r1.clone(), r2.clone()]);
        index.add(b, std::slice::from_ref(&r1));
        assert_eq!((index.len(), index.users(&r1)), (2, 2));
        let changes = index.take_changes();
        assert_eq!(changes.get(&r1).map(|d| d.added.len()), Some(2));
        assert!(index.take_changes().is_empty());
        index.remove(&a, &[r1.clone(), r2.clone()]);
        let changes = index.take_changes();
        assert_eq!(changes.get(&r1).map(|d| d.removed.len()), Some(1));
        assert_eq!(changes.get(&r2).map(|d| d.removed.len()), Some(1));
        assert!(!index.contains(&r2));
        // Came and went between two looks: no change at all.
        index.add(a, std::slice::from_ref(&r1));
        index.remove(&a, std::slice::from_ref(&r1));
        assert_eq!(index.take_changes().get(&r1), Some(&RelayDelta::default()));
    }
}
