//! The subscriptions of one relay: the admin REQ if it is the admin relay,
//! and the held keys listening there in chunks of [`PUBKEYS_PER_FILTER`],
//! one NIP-46 REQ (`nip46-<n>`) per chunk.
//!
//! Each key keeps its chunk for as long as it listens on the relay, and a
//! change is applied as the keys that came and went, so adding or removing
//! one key touches one chunk: one REQ re-sent, whatever the number of keys
//! on the relay.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nostr::{Filter, Kind, PublicKey, SubscriptionId, Timestamp};
use verifier::event::{KIND_ADMIN, KIND_NIP46};

use crate::custody::RelayDelta;

/// Most pubkeys in one filter's `#p` (relays cap filter sizes).
pub const PUBKEYS_PER_FILTER: usize = 256;

const ADMIN_SUB: &str = "admin";
const NIP46_SUB: &str = "nip46-";

/// Whether `id` is one of the subscriptions made here.
pub(super) fn is_ours(id: &SubscriptionId) -> bool {
    let id = id.as_str();
    id == ADMIN_SUB || id.starts_with(NIP46_SUB)
}

/// One relay's subscriptions, as sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct RelaySubs {
    admin: bool,
    chunks: BTreeMap<usize, Vec<PublicKey>>,
    /// Which chunk each key is in.
    slot: HashMap<PublicKey, usize>,
}

/// What applying a change touched: the REQs to send and the
/// subscriptions to close.
pub(super) type Touched = (Vec<(SubscriptionId, Filter)>, Vec<SubscriptionId>);

impl RelaySubs {
    /// No subscription at all.
    pub(super) fn is_empty(&self) -> bool {
        !self.admin && self.chunks.is_empty()
    }

    /// Applies `delta` (and, for the admin relay, the admin REQ); returns
    /// the REQs that changed, with `service`'s admin filter and `since`.
    pub(super) fn apply(
        &mut self,
        admin: bool,
        delta: &RelayDelta,
        service: &PublicKey,
        since: Timestamp,
    ) -> Touched {
        let mut touched = BTreeSet::new();
        for key in &delta.removed {
            if let Some(i) = self.slot.remove(key) {
                if let Some(chunk) = self.chunks.get_mut(&i) {
                    chunk.retain(|k| k != key);
                    touched.insert(i);
                }
            }
        }
        for key in &delta.added {
            if self.slot.contains_key(key) {
                continue;
            }
            let room = self
                .chunks
                .iter()
                .find(|(_, chunk)| chunk.len() < PUBKEYS_PER_FILTER)
                .map(|(i, _)| *i);
            let i = room.unwrap_or_else(|| {
                (0..)
                    .find(|i| !self.chunks.contains_key(i))
                    .unwrap_or(usize::MAX)
            });
            self.chunks.entry(i).or_default().push(*key);
            self.slot.insert(*key, i);
            touched.insert(i);
        }
        self.chunks.retain(|_, chunk| !chunk.is_empty());
        let mut send = Vec::new();
        let mut close = Vec::new();
        match (self.admin, admin) {
            (false, true) => send.push(admin_request(service, since)),
            (true, false) => close.push(SubscriptionId::new(ADMIN_SUB)),
            _ => {}
        }
        self.admin = admin;
        for i in touched {
            match self.chunks.get(&i) {
                Some(chunk) => send.push(chunk_request(i, chunk, since)),
                None => close.push(nip46_sub(i)),
            }
        }
        (send, close)
    }

    /// Every REQ of this relay, to send again after a reconnect.
    pub(super) fn requests(
        &self,
        service: &PublicKey,
        since: Timestamp,
    ) -> Vec<(SubscriptionId, Filter)> {
        let admin = self.admin.then(|| admin_request(service, since));
        admin
            .into_iter()
            .chain(self.chunks.iter().map(|(i, c)| chunk_request(*i, c, since)))
            .collect()
    }
}

fn admin_request(service: &PublicKey, since: Timestamp) -> (SubscriptionId, Filter) {
    (
        SubscriptionId::new(ADMIN_SUB),
        Filter::new()
            .kind(Kind::from(KIND_ADMIN))
            .pubkey(*service)
            .since(since),
    )
}

fn chunk_request(i: usize, chunk: &[PublicKey], since: Timestamp) -> (SubscriptionId, Filter) {
    (
        nip46_sub(i),
        Filter::new()
            .kind(Kind::from(KIND_NIP46))
            .pubkeys(chunk.iter().copied())
            .since(since),
    )
}

fn nip46_sub(i: usize) -> SubscriptionId {
    SubscriptionId::new(format!("{NIP46_SUB}{i}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::Keys;

    fn delta(added: &[PublicKey], removed: &[PublicKey]) -> RelayDelta {
        RelayDelta {
            added: added.iter().copied().collect(),
            removed: removed.iter().copied().collect(),
        }
    }

    #[test]
    fn a_change_touches_one_chunk() {
        let service = Keys::generate().public_key();
        let t = Timestamp::from(0);
        let keys: Vec<PublicKey> = (0..600).map(|_| Keys::generate().public_key()).collect();
        let mut subs = RelaySubs::default();
        let (send, close) = subs.apply(true, &delta(&keys, &[]), &service, t);
        assert_eq!((send.len(), close.len()), (4, 0), "admin and three chunks");
        assert!(subs.chunks.values().all(|c| c.len() <= PUBKEYS_PER_FILTER));
        // One key leaves and another arrives: one chunk each, and the
        // newcomer takes the place the first one left.
        let freed = subs.slot.get(&keys[10]).copied();
        let (send, close) = subs.apply(true, &delta(&[], &keys[10..11]), &service, t);
        assert_eq!((send.len(), close.len()), (1, 0));
        let newcomer = Keys::generate().public_key();
        let (send, _) = subs.apply(true, &delta(&[newcomer], &[]), &service, t);
        assert_eq!(send.len(), 1);
        assert_eq!(subs.slot.get(&newcomer).copied(), freed);
        // Everyone leaves: the chunks are closed, the admin REQ stays.
        let mut all: Vec<PublicKey> = keys.clone();
        all.retain(|k| *k != keys[10]);
        all.push(newcomer);
        let (send, close) = subs.apply(true, &delta(&[], &all), &service, t);
        assert_eq!((send.len(), close.len()), (0, 3));
        assert!(!subs.is_empty());
        let (_, close) = subs.apply(false, &RelayDelta::default(), &service, t);
        assert_eq!(close.len(), 1);
        assert!(subs.is_empty());
    }
}
