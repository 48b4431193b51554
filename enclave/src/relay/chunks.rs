//! The subscriptions of one relay: the admin REQ if it is the admin relay,
//! and the held keys listening there in chunks of [`PUBKEYS_PER_FILTER`],
//! one NIP-46 REQ (`nip46-<n>`) per chunk, and beside it one REQ for the
//! chunk's nsec.app permission events (`perm-<n>`: kind 30078 by those
//! keys, tagged `nsec.app/perm`, from `since` on, live). A key that joins
//! the relay first gets a one-shot fetch of its stored permission events
//! (`fetch-<n>`, closed by the pool at EOSE, never waited for).
//!
//! Each key keeps its chunk for as long as it listens on the relay, and a
//! change is applied as the keys that came and went, so adding or removing
//! one key touches one chunk: one REQ re-sent, whatever the number of keys
//! on the relay.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nostr::{Alphabet, Filter, Kind, PublicKey, SingleLetterTag, SubscriptionId, Timestamp};
use verifier::event::{KIND_ADMIN, KIND_NIP46};
use verifier::grant::nsecapp::{KIND_APP_DATA, PERM_TAG};

use crate::custody::RelayDelta;

/// Most pubkeys in one filter's `#p` (relays cap filter sizes).
pub const PUBKEYS_PER_FILTER: usize = 256;

const ADMIN_SUB: &str = "admin";
const NIP46_SUB: &str = "nip46-";
const PERM_SUB: &str = "perm-";
const OWNERS_SUB: &str = "owners-";
const FETCH_SUB: &str = "fetch-";

/// Numbers the one-shot fetches, so their ids never repeat.
static FETCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether `id` is a one-shot fetch (closed at EOSE; not waited for).
pub(super) fn is_fetch(id: &SubscriptionId) -> bool {
    id.as_str().starts_with(FETCH_SUB)
}
/// Most stored permission events asked of a relay per fetch (the keys
/// added in one change, usually one).
const PERM_EVENTS_PER_FETCH: usize = 500;

/// Whether `id` is one of the subscriptions made here.
pub(super) fn is_ours(id: &SubscriptionId) -> bool {
    let id = id.as_str();
    [NIP46_SUB, PERM_SUB, OWNERS_SUB, FETCH_SUB]
        .iter()
        .any(|p| id.starts_with(p))
        || id == ADMIN_SUB
}

/// Keys in stable chunks of at most [`PUBKEYS_PER_FILTER`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Chunks {
    chunks: BTreeMap<usize, Vec<PublicKey>>,
    /// Which chunk each key is in.
    slot: HashMap<PublicKey, usize>,
}

impl Chunks {
    /// Applies `delta`; returns the chunks it touched.
    fn apply(&mut self, delta: &RelayDelta, added: &mut Vec<PublicKey>) -> BTreeSet<usize> {
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
            added.push(*key);
        }
        self.chunks.retain(|_, chunk| !chunk.is_empty());
        touched
    }
}

/// One relay's subscriptions, as sent: the admin REQ, the keys listening
/// there (NIP-46 and their permission events), and, on a permission relay,
/// the permission events of every key that has an owner.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct RelaySubs {
    admin: bool,
    keys: Chunks,
    owners: Chunks,
}

/// What applying a change touched: the REQs to send and the
/// subscriptions to close.
pub(super) type Touched = (Vec<(SubscriptionId, Filter)>, Vec<SubscriptionId>);

impl RelaySubs {
    /// No subscription at all.
    pub(super) fn is_empty(&self) -> bool {
        !self.admin && self.keys.chunks.is_empty() && self.owners.chunks.is_empty()
    }

    /// Applies `delta` of the keys listening here and `owners` of the keys
    /// whose permission events are read here (and, for the admin relay,
    /// the admin REQ); returns the REQs that changed, with `service`'s
    /// admin filter and `since`.
    pub(super) fn apply(
        &mut self,
        admin: bool,
        delta: &RelayDelta,
        owners: &RelayDelta,
        service: &PublicKey,
        since: Timestamp,
    ) -> Touched {
        let mut send = Vec::new();
        let mut close = Vec::new();
        match (self.admin, admin) {
            (false, true) => send.push(admin_request(service, since)),
            (true, false) => close.push(SubscriptionId::new(ADMIN_SUB)),
            _ => {}
        }
        self.admin = admin;
        let mut added = Vec::new();
        for i in self.keys.apply(delta, &mut added) {
            match self.keys.chunks.get(&i) {
                Some(chunk) => {
                    send.push(chunk_request(i, chunk, since));
                    send.push(perm_request(sub(PERM_SUB, i), chunk, since));
                }
                None => {
                    close.push(sub(NIP46_SUB, i));
                    close.push(sub(PERM_SUB, i));
                }
            }
        }
        for i in self.owners.apply(owners, &mut added) {
            match self.owners.chunks.get(&i) {
                Some(chunk) => send.push(perm_request(sub(OWNERS_SUB, i), chunk, since)),
                None => close.push(sub(OWNERS_SUB, i)),
            }
        }
        added.sort_unstable_by_key(|k| k.to_bytes());
        added.dedup();
        for batch in added.chunks(PUBKEYS_PER_FILTER) {
            send.push(fetch_request(batch));
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
            .chain(self.keys.chunks.iter().flat_map(|(i, c)| {
                [
                    chunk_request(*i, c, since),
                    perm_request(sub(PERM_SUB, *i), c, since),
                ]
            }))
            .chain(
                self.owners
                    .chunks
                    .iter()
                    .map(|(i, c)| perm_request(sub(OWNERS_SUB, *i), c, since)),
            )
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
        sub(NIP46_SUB, i),
        Filter::new()
            .kind(Kind::from(KIND_NIP46))
            .pubkeys(chunk.iter().copied())
            .since(since),
    )
}

/// The permission events of `chunk`'s keys from `since` on.
fn perm_request(
    id: SubscriptionId,
    chunk: &[PublicKey],
    since: Timestamp,
) -> (SubscriptionId, Filter) {
    (id, perm_filter(chunk).since(since))
}

/// Every stored permission event of `keys` (relays keep one per app).
fn fetch_request(keys: &[PublicKey]) -> (SubscriptionId, Filter) {
    let n = FETCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (
        SubscriptionId::new(format!("{FETCH_SUB}{n}")),
        perm_filter(keys).limit(PERM_EVENTS_PER_FETCH),
    )
}

fn perm_filter(keys: &[PublicKey]) -> Filter {
    Filter::new()
        .kind(Kind::from(KIND_APP_DATA))
        .authors(keys.iter().copied())
        .custom_tag(SingleLetterTag::lowercase(Alphabet::T), PERM_TAG)
}

fn sub(prefix: &str, i: usize) -> SubscriptionId {
    SubscriptionId::new(format!("{prefix}{i}"))
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
        let none = RelayDelta::default();
        let (send, close) = subs.apply(true, &delta(&keys, &[]), &none, &service, t);
        assert_eq!(
            (send.len(), close.len()),
            (10, 0),
            "admin, three chunks of two and three fetches"
        );
        assert_eq!(send.iter().filter(|(id, _)| is_fetch(id)).count(), 3);
        assert!(subs
            .keys
            .chunks
            .values()
            .all(|c| c.len() <= PUBKEYS_PER_FILTER));
        // One key leaves and another arrives: one chunk each, and the
        // newcomer takes the place the first one left.
        let freed = subs.keys.slot.get(&keys[10]).copied();
        let (send, close) = subs.apply(true, &delta(&[], &keys[10..11]), &none, &service, t);
        assert_eq!((send.len(), close.len()), (2, 0));
        let newcomer = Keys::generate().public_key();
        let (send, _) = subs.apply(true, &delta(&[newcomer], &[]), &none, &service, t);
        assert_eq!(send.len(), 3, "its chunk's two REQs and its fetch");
        assert_eq!(subs.keys.slot.get(&newcomer).copied(), freed);
        // Everyone leaves: the chunks are closed, the admin REQ stays.
        let mut all: Vec<PublicKey> = keys.clone();
        all.retain(|k| *k != keys[10]);
        all.push(newcomer);
        let (send, close) = subs.apply(true, &delta(&[], &all), &none, &service, t);
        assert_eq!((send.len(), close.len()), (0, 6));
        assert!(!subs.is_empty());
        let (_, close) = subs.apply(false, &none, &none, &service, t);
        assert_eq!(close.len(), 1);
        assert!(subs.is_empty());
    }

    #[test]
    fn a_permission_relay_follows_every_owner() {
        let service = Keys::generate().public_key();
        let t = Timestamp::from(0);
        let none = RelayDelta::default();
        let owners: Vec<PublicKey> = (0..300).map(|_| Keys::generate().public_key()).collect();
        let mut subs = RelaySubs::default();
        let (send, _) = subs.apply(false, &none, &delta(&owners, &[]), &service, t);
        assert_eq!(send.len(), 4, "two live chunks and two one-shot fetches");
        for (id, f) in &send {
            assert!(f
                .kinds
                .as_ref()
                .is_some_and(|k| k.contains(&Kind::from(KIND_APP_DATA))));
            // live REQs follow from `since`; fetches take what is stored
            assert_eq!(is_fetch(id), f.since.is_none(), "{id}");
            assert!(is_fetch(id) || id.as_str().starts_with(OWNERS_SUB));
        }
        assert_eq!(subs.requests(&service, t).len(), 2);
        let (send, close) = subs.apply(false, &none, &delta(&[], &owners), &service, t);
        assert_eq!((send.len(), close.len()), (0, 2));
        assert!(subs.is_empty());
    }
}
