//! Which held keys listen on which relay, kept up to date as keys come and
//! go, with the relays changed since the subscriptions last looked. A
//! subscription update then only touches the relays a request changed,
//! instead of walking every key.

use std::collections::{BTreeSet, HashMap, HashSet};

use nostr::{PublicKey, RelayUrl};

/// Relay → the keys listening there.
#[derive(Debug, Default)]
pub(super) struct RelayIndex {
    keys: HashMap<RelayUrl, BTreeSet<PublicKey>>,
    dirty: HashSet<RelayUrl>,
}

impl RelayIndex {
    /// Distinct relays in use.
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether some key listens on `relay`.
    pub(super) fn contains(&self, relay: &RelayUrl) -> bool {
        self.keys.contains_key(relay)
    }

    /// How many keys listen on `relay`.
    pub(super) fn users(&self, relay: &RelayUrl) -> usize {
        self.keys.get(relay).map_or(0, BTreeSet::len)
    }

    /// `pubkey` now listens on `relays` too.
    pub(super) fn add(&mut self, pubkey: PublicKey, relays: &[RelayUrl]) {
        for relay in relays {
            self.keys.entry(relay.clone()).or_default().insert(pubkey);
            self.dirty.insert(relay.clone());
        }
    }

    /// `pubkey` no longer listens on `relays`.
    pub(super) fn remove(&mut self, pubkey: &PublicKey, relays: &[RelayUrl]) {
        for relay in relays {
            if let Some(set) = self.keys.get_mut(relay) {
                set.remove(pubkey);
                if set.is_empty() {
                    self.keys.remove(relay);
                }
            }
            self.dirty.insert(relay.clone());
        }
    }

    /// The relays changed since the last call, each with the keys now on
    /// it (an empty set: no key uses it any more).
    pub(super) fn take_changes(&mut self) -> HashMap<RelayUrl, BTreeSet<PublicKey>> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|relay| {
                let keys = self.keys.get(&relay).cloned().unwrap_or_default();
                (relay, keys)
            })
            .collect()
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
        assert_eq!(changes.len(), 2);
        assert!(index.take_changes().is_empty());
        index.remove(&a, &[r1.clone(), r2.clone()]);
        let changes = index.take_changes();
        assert_eq!(changes.get(&r1).map(BTreeSet::len), Some(1));
        assert_eq!(changes.get(&r2).map(BTreeSet::len), Some(0));
        assert!(!index.contains(&r2));
    }
}
