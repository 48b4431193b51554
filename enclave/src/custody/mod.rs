//! User keys, held in RAM only. Each [`UserKey`] carries the relays its
//! NIP-46 requests arrive on, the apps allowed to use it and its pending
//! single-use connect secrets. Private keys are wiped when a key is
//! deleted, expires or the store is dropped (nostr's `SecretKey` erases
//! itself on drop, as do the `Keys` derived from it for each request), and
//! are never printed: `Debug` shows public keys only.
//!
//! Every limit here is what a stranger could otherwise exhaust: the number
//! of imported keys and, separately, of throw-away test keys (so test keys
//! can never crowd out imports), relays per key, distinct relays overall,
//! apps and secrets per key, test keys per requester per hour; past a free
//! hourly allowance, proof of work for every new key, test key and relay
//! ([`admission`]); grant memory in two classes, owners' and events'
//! ([`grant_memory`]); and keys that serve no one do not hold their slot
//! for good ([`lifecycle`]).

pub mod admission;
pub mod apps;
pub mod decision_log;
mod grant_memory;
mod grant_store;
mod import;
pub mod lifecycle;
mod nsec_store;
mod recent_ids;
mod relay_index;
mod relay_lists;
mod snapshot;
mod user_key;

use std::collections::{HashMap, VecDeque};
use std::fmt;

use nostr::{PublicKey, RelayUrl};

pub use admission::{AdmissionLimits, PowRequired, Resource};
pub use apps::App;
pub use apps::{ConnectError, Granted};
pub use decision_log::{DecisionLog, Entry, LogLimits};
pub use grant_memory::{Memory, EVENT_SHARE};
pub use user_key::{signing_keys, UserKey};

use admission::Admission;
use grant_memory::GrantMemory;
use recent_ids::RecentIds;
use relay_index::RelayIndex;
pub use relay_index::{RelayChanges, RelayDelta};
use relay_lists::RelayLists;

/// The configurable limits of a [`KeyStore`].
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most imported keys held (test keys have their own limit).
    pub max_keys: usize,
    /// Most throw-away test keys held at once.
    pub max_test_keys: usize,
    /// Most relays per key.
    pub max_relays_per_key: usize,
    /// Most distinct relays over all keys (each is one connection).
    pub max_relays: usize,
    /// Most apps allowed per key.
    pub max_apps_per_key: usize,
    /// Most pending connect secrets per key (the oldest is dropped).
    pub max_secrets_per_key: usize,
    /// `generate_test_key` calls allowed per requester per hour.
    pub test_keys_per_hour: usize,
    /// How long a test key lives, in seconds.
    pub test_key_ttl: u64,
    /// How long a connect secret stays usable, in seconds.
    pub secret_ttl: u64,
    /// Changes of one key's relays (re-imports that move it) per hour:
    /// each costs a subscription update on the relays involved.
    pub relay_changes_per_hour: usize,
    /// Free allowances per hour and the proof of work past them.
    pub admission: AdmissionLimits,
    /// What the decision log keeps.
    pub log: LogLimits,
    /// Memory all grants and pending bunker secrets may count, over all
    /// keys (see `apps::policy_bytes`); nsec.app's take at most half.
    pub max_grant_bytes: usize,
    /// How long an owned key with no apps and no pending bunker secret is
    /// kept after its owner's last admin request, in seconds.
    pub idle_ttl: u64,
    /// How long after its import a key that serves no one may be displaced
    /// by a newcomer who pays the full price of a slot, in seconds.
    pub displace_after: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_keys: 50_000,
            max_test_keys: 1_000,
            max_relays_per_key: 8,
            max_relays: 256,
            max_apps_per_key: 64,
            max_secrets_per_key: 16,
            test_keys_per_hour: 3,
            test_key_ttl: 24 * 3600,
            secret_ttl: 24 * 3600,
            relay_changes_per_hour: 30,
            admission: AdmissionLimits::default(),
            log: LogLimits::default(),
            max_grant_bytes: 64 << 20,
            idle_ttl: 30 * 24 * 3600,
            displace_after: 600,
        }
    }
}

/// Why the store refused a change; the message goes back to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store holds `max_keys` keys, every one of which serves an app
    /// or was imported too lately to be displaced.
    Full(usize),
    /// The store holds `max_test_keys` test keys.
    TestKeysFull(usize),
    /// More relays than allowed for one key.
    TooManyRelaysPerKey(usize),
    /// Adding these relays would pass the overall relay limit.
    TooManyRelays(usize),
    /// The requester asked for too many test keys this hour.
    TestKeyRate(usize),
    /// This key's relays changed too often this hour.
    RelayChangeRate(usize),
    /// No key is held for this public key.
    NoKey,
    /// Connecting an app failed.
    Connect(ConnectError),
    /// The request must carry (more) proof of work.
    Pow(PowRequired),
    /// Grants and secrets would pass `max_grant_bytes`.
    GrantsFull(usize),
    /// The policy cannot be given (it expired already).
    BadPolicy(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(n) => write!(
                f,
                "this enclave holds its maximum of {n} keys, and each serves apps or was imported in the last minutes; try later"
            ),
            Self::TestKeysFull(n) => write!(f, "this enclave holds its maximum of {n} test keys"),
            Self::TooManyRelaysPerKey(n) => write!(f, "at most {n} relays per key"),
            Self::TooManyRelays(n) => {
                write!(
                    f,
                    "this enclave serves at most {n} distinct relays; reuse one of those in use, such as its admin relay"
                )
            }
            Self::TestKeyRate(n) => write!(f, "at most {n} test keys per hour; try again later"),
            Self::RelayChangeRate(n) => write!(
                f,
                "a key's relays may change at most {n} times per hour; try again later"
            ),
            Self::NoKey => f.write_str("no key is held for you"),
            Self::Connect(e) => write!(f, "{e}"),
            Self::Pow(e) => write!(f, "{e}"),
            Self::BadPolicy(e) => write!(f, "{e}"),
            Self::GrantsFull(mib) => write!(
                f,
                "this enclave holds its maximum of {mib} MiB of grants; revoke apps, or try later"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// The key was not held before.
    pub new: bool,
    /// Apps still allowed on a key that was held.
    pub apps_kept: usize,
    /// Pending bunker secrets still usable on a key that was held.
    pub secrets_kept: usize,
    /// The key's relays changed (or it is new): subscriptions need updating.
    pub relays_changed: bool,
    /// The key whose slot it took (the enclave was full).
    pub displaced: Option<PublicKey>,
}

/// All user keys, by public key.
pub struct KeyStore {
    limits: Limits,
    keys: HashMap<PublicKey, UserKey>,
    /// How many of the keys are test keys.
    test_keys: usize,
    /// How many keys use each relay.
    relays: RelayIndex,
    /// The keys' relay lists, each kept once.
    lists: RelayLists,
    /// Recent `generate_test_key` times per requester.
    test_key_requests: HashMap<PublicKey, VecDeque<u64>>,
    /// Free allowances used this hour.
    admission: Admission,
    /// What each key's apps asked for and what their grants said.
    log: DecisionLog,
    /// The memory counted for all grants and pending secrets.
    memory: GrantMemory,
    /// The nsec.app permission events applied lately, over all keys, so a
    /// replay costs no decryption.
    nsec_ids: RecentIds,
    /// Where every owned key's nsec.app permission events are read too.
    perm_relays: Vec<RelayUrl>,
    /// The admin relay: always served, so it never counts against
    /// `max_relays` (a newcomer can always listen there).
    admin_relay: Option<RelayUrl>,
    /// How many keys a paying newcomer could displace, as of the last
    /// [`KeyStore::expire`] sweep.
    displaceable_seen: usize,
    /// How many owned keys (not test keys) have their permission events
    /// read on each relay: their own relays and the permission relays.
    owners: RelayIndex,
    /// Decisions made (each may count a use, fill a rate window, log):
    /// what key continuity snapshots every few seconds when it moved.
    decisions: u64,
    /// When the operator abandoned an earlier state and started over
    /// (`--abandon-state`): kept in every snapshot, and announced.
    reset_at: Option<u64>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("keys", &self.keys.len())
            .field("relays", &self.relays.len())
            .finish()
    }
}

impl KeyStore {
    /// An empty store.
    pub fn new(limits: Limits) -> Self {
        Self {
            admission: Admission::new(limits.admission.clone()),
            log: DecisionLog::new(limits.log),
            memory: GrantMemory::new(limits.max_grant_bytes),
            nsec_ids: RecentIds::new(NSEC_IDS_KEPT),
            perm_relays: Vec::new(),
            admin_relay: None,
            displaceable_seen: 0,
            owners: RelayIndex::default(),
            decisions: 0,
            limits,
            keys: HashMap::new(),
            test_keys: 0,
            relays: RelayIndex::default(),
            lists: RelayLists::default(),
            test_key_requests: HashMap::new(),
            reset_at: None,
        }
    }

    /// When the state this store is kept under was started over, if it was.
    pub fn reset_at(&self) -> Option<u64> {
        self.reset_at
    }

    /// Decisions made so far (uses, rate windows and the log moved).
    pub fn decisions(&self) -> u64 {
        self.decisions
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How many keys are held, test keys included.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// How many of them are test keys.
    pub fn test_key_count(&self) -> usize {
        self.test_keys
    }

    /// Whether `pubkey` is held.
    pub fn holds(&self, pubkey: &PublicKey) -> bool {
        self.keys.contains_key(pubkey)
    }

    /// No keys are held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for `pubkey`.
    pub fn get(&self, pubkey: &PublicKey) -> Option<&UserKey> {
        self.keys.get(pubkey)
    }

    /// The key for `pubkey`, bypassing the accounting of grant memory
    /// (tests only: the store's own methods change apps and secrets).
    #[cfg(test)]
    pub(crate) fn get_mut(&mut self, pubkey: &PublicKey) -> Option<&mut UserKey> {
        self.keys.get_mut(pubkey)
    }

    /// What came and went on each relay since the last call: what the
    /// subscriptions must update.
    pub fn take_relay_changes(&mut self) -> RelayChanges {
        RelayChanges {
            keys: self.relays.take_changes(),
            owners: self.owners.take_changes(),
        }
    }

    /// Reads every owned key's nsec.app permission events on `relays` too
    /// (set before any key is held).
    pub fn set_perm_relays(&mut self, relays: Vec<RelayUrl>) {
        self.perm_relays = relays;
    }

    /// The permission relays.
    pub fn perm_relays(&self) -> &[RelayUrl] {
        &self.perm_relays
    }

    /// The admin relay, always served (set before any key is held).
    pub fn set_admin_relay(&mut self, relay: RelayUrl) {
        self.admin_relay = Some(relay);
    }

    /// Distinct relays in use.
    pub fn relay_count(&self) -> usize {
        self.relays.len()
    }

    /// How many keys are owned (not test keys).
    fn owned(&self) -> usize {
        self.keys.len() - self.test_keys
    }
}

/// nsec.app permission event ids remembered over all keys.
const NSEC_IDS_KEPT: usize = 65_536;

#[cfg(test)]
mod tests;
