//! The subscriptions of one relay: the admin REQ if it is the admin relay,
//! the held keys listening there in chunks of [`PUBKEYS_PER_FILTER`], one
//! NIP-46 REQ (`nip46-<n>`) per chunk, and one REQ for nsec.app permission
//! events (`perm`: kind 30078 tagged `nsec.app/perm`, from `since` on,
//! live) while a key with an owner (not a test key: those have no
//! permission events) listens there or, on a permission relay, exists at
//! all. Such a key, as its events start to be read on a relay, first gets a
//! one-shot fetch of its stored permission events there (`fetch-<n>`, by
//! author, closed by the pool at EOSE, never waited for).
//!
//! The live permission REQ names no authors: a key costs nothing in it,
//! so memory per key does not grow with the permission relays (with five
//! of them, naming every key in an `authors` filter on each doubled it),
//! and relays are not told which keys have owners. What it costs: the
//! relay sends every such event it gets. nostr-sdk checks each against the
//! filter and its signature as for any event; then the handler drops those
//! whose author we do not hold after one map lookup, before decrypting,
//! under the same per-relay inbox budget as every other event a stranger
//! can send.
//!
//! Each key keeps its chunk for as long as it listens on the relay, and a
//! change is applied as the keys that came and went, so adding or removing
//! one key touches one chunk: one REQ re-sent, whatever the number of keys
//! on the relay.

use std::collections::{BTreeMap, BTreeSet};

use nostr::{Alphabet, Filter, Kind, PublicKey, SingleLetterTag, SubscriptionId, Timestamp};
use verifier::event::{KIND_ADMIN, KIND_CUSTODY, KIND_NIP46};
use verifier::grant::nsecapp::{KIND_APP_DATA, PERM_TAG};

use crate::custody::RelayDelta;

/// Most pubkeys in one filter's `#p` (relays cap filter sizes).
pub const PUBKEYS_PER_FILTER: usize = 256;

const ADMIN_SUB: &str = "admin";
const NIP46_SUB: &str = "nip46-";
const PERM_SUB: &str = "perm";
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
    id.starts_with(NIP46_SUB) || id.starts_with(FETCH_SUB) || id == ADMIN_SUB || id == PERM_SUB
}

/// Keys in stable chunks of at most [`PUBKEYS_PER_FILTER`]. A key's
/// chunk is found by looking (removals are rare and come in batches), not
/// kept per key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Chunks {
    chunks: BTreeMap<usize, Vec<PublicKey>>,
}

impl Chunks {
    /// Applies `delta` (whose added keys are not here yet: the store
    /// reports a key's arrival once); returns the chunks it touched.
    fn apply(&mut self, delta: &RelayDelta) -> BTreeSet<usize> {
        let mut touched = BTreeSet::new();
        if !delta.removed.is_empty() {
            for (i, chunk) in &mut self.chunks {
                let before = chunk.len();
                chunk.retain(|k| !delta.removed.contains(k));
                if chunk.len() != before {
                    touched.insert(*i);
                }
            }
        }
        let mut added: Vec<&PublicKey> = delta.added.iter().collect();
        // The same chunks whatever the set's order.
        added.sort_unstable_by_key(|k| k.to_bytes());
        let mut free = 0;
        for key in added {
            let i = (free..)
                .find(|i| {
                    self.chunks
                        .get(i)
                        .is_none_or(|chunk| chunk.len() < PUBKEYS_PER_FILTER)
                })
                .unwrap_or(usize::MAX);
            free = i;
            self.chunks.entry(i).or_default().push(*key);
            touched.insert(i);
        }
        self.chunks.retain(|_, chunk| !chunk.is_empty());
        touched
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

/// One relay's subscriptions, as sent: the admin REQ, the keys listening
/// there, and the permission REQ while owned keys are read there.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct RelaySubs {
    admin: bool,
    keys: Chunks,
    /// How many keys with an owner have their permission events read here.
    owners: usize,
}

/// What applying a change touched: the REQs to send and the
/// subscriptions to close.
pub(super) type Touched = (Vec<(SubscriptionId, Filter)>, Vec<SubscriptionId>);

impl RelaySubs {
    /// No subscription at all.
    pub(super) fn is_empty(&self) -> bool {
        !self.admin && self.keys.is_empty() && !self.reads_permissions()
    }

    /// Whether the permission REQ is wanted here.
    fn reads_permissions(&self) -> bool {
        self.owners > 0
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
        let reading = self.reads_permissions();
        for i in self.keys.apply(delta) {
            match self.keys.chunks.get(&i) {
                Some(chunk) => send.push(chunk_request(i, chunk, since)),
                None => close.push(sub(NIP46_SUB, i)),
            }
        }
        self.owners = (self.owners + owners.added.len()).saturating_sub(owners.removed.len());
        match (reading, self.reads_permissions()) {
            (false, true) => send.push(perm_request(since)),
            (true, false) => close.push(SubscriptionId::new(PERM_SUB)),
            _ => {}
        }
        let mut added: Vec<PublicKey> = owners.added.iter().copied().collect();
        added.sort_unstable_by_key(|k| k.to_bytes());
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
        let perm = self.reads_permissions().then(|| perm_request(since));
        admin
            .into_iter()
            .chain(
                self.keys
                    .chunks
                    .iter()
                    .map(|(i, c)| chunk_request(*i, c, since)),
            )
            .chain(perm)
            .collect()
    }
}

fn admin_request(service: &PublicKey, since: Timestamp) -> (SubscriptionId, Filter) {
    (
        SubscriptionId::new(ADMIN_SUB),
        Filter::new()
            .kinds([Kind::from(KIND_ADMIN), Kind::from(KIND_CUSTODY)])
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

/// Every key's new permission events: dropped on arrival unless their
/// author is held.
fn perm_request(since: Timestamp) -> (SubscriptionId, Filter) {
    (SubscriptionId::new(PERM_SUB), perm_filter().since(since))
}

/// Every stored permission event of `keys` (relays keep one per app).
fn fetch_request(keys: &[PublicKey]) -> (SubscriptionId, Filter) {
    let n = FETCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (
        SubscriptionId::new(format!("{FETCH_SUB}{n}")),
        perm_filter()
            .authors(keys.iter().copied())
            .limit(PERM_EVENTS_PER_FETCH),
    )
}

fn perm_filter() -> Filter {
    Filter::new()
        .kind(Kind::from(KIND_APP_DATA))
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

    fn chunk_of(subs: &RelaySubs, key: &PublicKey) -> Option<usize> {
        subs.keys
            .chunks
            .iter()
            .find(|(_, c)| c.contains(key))
            .map(|(i, _)| *i)
    }

    #[test]
    fn a_change_touches_one_chunk() {
        let service = Keys::generate().public_key();
        let t = Timestamp::from(0);
        let keys: Vec<PublicKey> = (0..600).map(|_| Keys::generate().public_key()).collect();
        let mut subs = RelaySubs::default();
        let none = RelayDelta::default();
        // Test keys: their chunks only.
        let tests: Vec<PublicKey> = (0..3).map(|_| Keys::generate().public_key()).collect();
        let (send, _) = subs.apply(true, &delta(&tests, &[]), &none, &service, t);
        assert_eq!(
            send.len(),
            2,
            "admin and one chunk: no permission REQ, no fetch"
        );
        let (send, _) = subs.apply(true, &delta(&[], &tests), &none, &service, t);
        assert_eq!(send.len(), 0, "its chunk is closed");
        // Owned keys: read for permissions too.
        let came = delta(&keys, &[]);
        let (send, close) = subs.apply(true, &came, &came, &service, t);
        assert_eq!(
            (send.len(), close.len()),
            (7, 0),
            "three chunks, the permission REQ and three fetches"
        );
        assert_eq!(send.iter().filter(|(id, _)| is_fetch(id)).count(), 3);
        assert!(subs
            .keys
            .chunks
            .values()
            .all(|c| c.len() <= PUBKEYS_PER_FILTER));
        assert_eq!(subs.keys.chunks.values().map(Vec::len).sum::<usize>(), 600);
        // One key leaves and another arrives: one chunk each, and the
        // newcomer takes the place the first one left.
        let freed = chunk_of(&subs, &keys[10]);
        let gone = delta(&[], &keys[10..11]);
        let (send, close) = subs.apply(true, &gone, &gone, &service, t);
        assert_eq!((send.len(), close.len()), (1, 0));
        assert_eq!(
            send.first().map(|(id, _)| id.clone()),
            freed.map(|i| sub(NIP46_SUB, i))
        );
        let newcomer = Keys::generate().public_key();
        let came = delta(&[newcomer], &[]);
        let (send, _) = subs.apply(true, &came, &came, &service, t);
        assert_eq!(send.len(), 2, "its chunk's REQ and its fetch");
        assert_eq!(chunk_of(&subs, &newcomer), freed);
        assert_eq!(subs.requests(&service, t).len(), 5);
        // Everyone leaves: the chunks and the permission REQ are closed,
        // the admin REQ stays.
        let mut all: Vec<PublicKey> = keys.clone();
        all.retain(|k| *k != keys[10]);
        all.push(newcomer);
        let gone = delta(&[], &all);
        let (send, close) = subs.apply(true, &gone, &gone, &service, t);
        assert_eq!((send.len(), close.len()), (0, 4));
        assert!(close.contains(&SubscriptionId::new(PERM_SUB)));
        assert!(!subs.is_empty());
        let (_, close) = subs.apply(false, &none, &none, &service, t);
        assert_eq!(close.len(), 1);
        assert!(subs.is_empty());
    }

    #[test]
    fn a_permission_relay_reads_owned_keys_without_naming_them() {
        let service = Keys::generate().public_key();
        let t = Timestamp::from(0);
        let none = RelayDelta::default();
        let owners: Vec<PublicKey> = (0..300).map(|_| Keys::generate().public_key()).collect();
        let mut subs = RelaySubs::default();
        let (send, _) = subs.apply(false, &none, &delta(&owners, &[]), &service, t);
        assert_eq!(send.len(), 3, "the live REQ and two one-shot fetches");
        for (id, f) in &send {
            assert!(f
                .kinds
                .as_ref()
                .is_some_and(|k| k.contains(&Kind::from(KIND_APP_DATA))));
            // live REQs follow from `since` and name no key; fetches take
            // what is stored by the keys that arrived
            assert_eq!(is_fetch(id), f.since.is_none(), "{id}");
            assert_eq!(is_fetch(id), f.authors.is_some(), "{id}");
            assert!(is_fetch(id) || id.as_str() == PERM_SUB);
        }
        let fetched: usize = send
            .iter()
            .filter_map(|(_, f)| f.authors.as_ref().map(|a| a.len()))
            .sum();
        assert_eq!(fetched, 300);
        assert_eq!(subs.requests(&service, t).len(), 1);
        // A test key listening here does not keep the permission REQ.
        let test_key = Keys::generate().public_key();
        let (send, _) = subs.apply(false, &delta(&[test_key], &[]), &none, &service, t);
        assert_eq!(send.len(), 1, "its chunk only");
        let (send, close) = subs.apply(false, &none, &delta(&[], &owners), &service, t);
        assert_eq!((send.len(), close.len()), (0, 1), "the permission REQ");
        let (_, close) = subs.apply(false, &delta(&[], &[test_key]), &none, &service, t);
        assert_eq!(close.len(), 1, "its chunk");
        assert!(subs.is_empty());
    }
}
