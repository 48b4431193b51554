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
//! apps and secrets per key, test keys per requester per hour; and, past a
//! free hourly allowance, proof of work for every new key, test key and
//! relay ([`admission`]).

pub mod admission;
pub mod apps;
pub mod decision_log;
mod grant_store;
mod relay_index;
mod relay_lists;
mod user_key;

use std::collections::{HashMap, VecDeque};
use std::fmt;

use nostr::{Keys, PublicKey, RelayUrl};
use verifier::grant::Policy;
use verifier::rpc::admin::KeptApps;
use zeroize::Zeroizing;

pub use admission::{AdmissionLimits, PowRequired, Resource};
pub use apps::App;
pub use decision_log::{DecisionLog, Entry, LogLimits};
pub use user_key::{signing_keys, ConnectError, UserKey};

use admission::Admission;
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
    /// keys (see `apps::policy_bytes`).
    pub max_grant_bytes: usize,
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
        }
    }
}

/// Why the store refused a change; the message goes back to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store holds `max_keys` keys.
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
            Self::Full(n) => write!(f, "this enclave holds its maximum of {n} keys"),
            Self::TestKeysFull(n) => write!(f, "this enclave holds its maximum of {n} test keys"),
            Self::TooManyRelaysPerKey(n) => write!(f, "at most {n} relays per key"),
            Self::TooManyRelays(n) => {
                write!(
                    f,
                    "this enclave serves at most {n} distinct relays; reuse one of those in use"
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
    grant_bytes: usize,
    /// Where every owned key's nsec.app permission events are read too.
    perm_relays: Vec<RelayUrl>,
    /// How many owned keys (not test keys) have their permission events
    /// read on each relay: their own relays and the permission relays.
    owners: RelayIndex,
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
            grant_bytes: 0,
            perm_relays: Vec::new(),
            owners: RelayIndex::default(),
            limits,
            keys: HashMap::new(),
            test_keys: 0,
            relays: RelayIndex::default(),
            lists: RelayLists::default(),
            test_key_requests: HashMap::new(),
        }
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

    /// Distinct relays in use.
    pub fn relay_count(&self) -> usize {
        self.relays.len()
    }

    /// Checks the relay limits for a key that will listen on `relays`
    /// (instead of its current ones, for `replacing`); returns how many of
    /// them are not served yet.
    fn check_relays(
        &self,
        relays: &[RelayUrl],
        replacing: Option<&PublicKey>,
    ) -> Result<usize, StoreError> {
        if relays.len() > self.limits.max_relays_per_key {
            return Err(StoreError::TooManyRelaysPerKey(
                self.limits.max_relays_per_key,
            ));
        }
        let released: Vec<&RelayUrl> = replacing
            .and_then(|p| self.keys.get(p))
            .map(|k| {
                k.relays()
                    .iter()
                    .filter(|r| self.relays.users(r) == 1 && !relays.contains(r))
                    .collect()
            })
            .unwrap_or_default();
        let new = relays.iter().filter(|r| !self.relays.contains(r)).count();
        if self.relays.len() - released.len() + new > self.limits.max_relays {
            return Err(StoreError::TooManyRelays(self.limits.max_relays));
        }
        Ok(new)
    }

    /// Checks that `pow` pays for `new_relays` more relays and, if `key`
    /// is given, one more of that resource.
    fn admit(
        &self,
        key: Option<Resource>,
        new_relays: usize,
        pow: u8,
        now: u64,
    ) -> Result<(), StoreError> {
        if let Some(resource) = key {
            let (used, max) = match resource {
                Resource::TestKeys => (self.test_keys, self.limits.max_test_keys),
                _ => (self.keys.len() - self.test_keys, self.limits.max_keys),
            };
            self.admission
                .check(resource, 1, used, max, pow, now)
                .map_err(StoreError::Pow)?;
        }
        self.admission
            .check(
                Resource::Relays,
                new_relays,
                self.relays.len(),
                self.limits.max_relays,
                pow,
                now,
            )
            .map_err(StoreError::Pow)
    }

    fn record(&mut self, key: Option<Resource>, new_relays: usize, now: u64) {
        if let Some(resource) = key {
            self.admission.record(resource, 1, now);
        }
        self.admission.record(Resource::Relays, new_relays, now);
    }

    /// Imports `keys` listening on `relays`, or updates the relays of a
    /// key already held, keeping or dropping its apps and pending secrets
    /// as `apps` says. `pow` is the request's proof of work, checked when
    /// the import takes a new key slot or new relays.
    pub fn import(
        &mut self,
        keys: Keys,
        relays: Vec<RelayUrl>,
        apps: KeptApps,
        pow: u8,
        now: u64,
    ) -> Result<Imported, StoreError> {
        let pubkey = keys.public_key();
        let relays = distinct(relays);
        let new_relays = self.check_relays(&relays, Some(&pubkey))?;
        let held = self.keys.contains_key(&pubkey);
        let moves = self
            .keys
            .get(&pubkey)
            .is_some_and(|k| !same_relays(k.relays(), &relays));
        if moves {
            let limit = self.limits.relay_changes_per_hour;
            if let Some(key) = self.keys.get_mut(&pubkey) {
                if !key.may_change_relays(limit, now) {
                    return Err(StoreError::RelayChangeRate(limit));
                }
            }
        }
        if !held && self.keys.len() - self.test_keys >= self.limits.max_keys {
            return Err(StoreError::Full(self.limits.max_keys));
        }
        let resource = (!held).then_some(Resource::Keys);
        self.admit(resource, new_relays, pow, now)?;
        self.record(resource, new_relays, now);
        if let Some(existing) = self.keys.get_mut(&pubkey) {
            let owned = existing.expires_at().is_none();
            if moves {
                existing.record_relay_change(now);
                self.relays.remove(&pubkey, existing.relays());
                self.relays.add(pubkey, &relays);
                if owned {
                    let perm = &self.perm_relays;
                    self.owners
                        .remove(&pubkey, &read_on(existing.relays(), perm));
                    self.owners.add(pubkey, &read_on(&relays, perm));
                }
            }
            if !owned {
                // Imported by its owner: no longer a throw-away key.
                self.test_keys = self.test_keys.saturating_sub(1);
                existing.keep();
                self.owners
                    .add(pubkey, &read_on(&relays, &self.perm_relays));
            }
            let old = existing.set_relays(self.lists.share(relays));
            self.lists.release(old);
            if apps == KeptApps::Drop {
                let before = existing.grant_bytes();
                existing.revoke_all(now);
                self.grant_bytes =
                    (self.grant_bytes + existing.grant_bytes()).saturating_sub(before);
            }
            return Ok(Imported {
                new: false,
                apps_kept: existing.app_count(),
                secrets_kept: existing.secret_count(),
                relays_changed: moves,
            });
        }
        self.relays.add(pubkey, &relays);
        self.owners
            .add(pubkey, &read_on(&relays, &self.perm_relays));
        self.keys.insert(
            pubkey,
            UserKey::new(keys.secret_key().clone(), self.lists.share(relays), None),
        );
        Ok(Imported {
            new: true,
            apps_kept: 0,
            secrets_kept: 0,
            relays_changed: true,
        })
    }

    /// Makes `user`'s key listen on `more` relays too (a nostrconnect://
    /// app's), under the same limits as an import: relays per key, relays
    /// overall, relay changes per hour, and proof of work `pow` for new
    /// relays past the free allowance. Returns the key's relays, and
    /// whether they changed.
    pub fn add_relays(
        &mut self,
        user: &PublicKey,
        more: &[RelayUrl],
        pow: u8,
        now: u64,
    ) -> Result<(Vec<RelayUrl>, bool), StoreError> {
        let key = self.keys.get(user).ok_or(StoreError::NoKey)?;
        let mut relays = key.relays().to_vec();
        for relay in more {
            if !relays.contains(relay) {
                relays.push(relay.clone());
            }
        }
        if relays.len() == key.relays().len() {
            return Ok((relays, false));
        }
        let new_relays = self.check_relays(&relays, Some(user))?;
        let limit = self.limits.relay_changes_per_hour;
        if let Some(key) = self.keys.get_mut(user) {
            if !key.may_change_relays(limit, now) {
                return Err(StoreError::RelayChangeRate(limit));
            }
        }
        self.admit(None, new_relays, pow, now)?;
        self.record(None, new_relays, now);
        if let Some(key) = self.keys.get_mut(user) {
            key.record_relay_change(now);
            self.relays.remove(user, key.relays());
            self.relays.add(*user, &relays);
            if key.expires_at().is_none() {
                let perm = &self.perm_relays;
                self.owners.remove(user, &read_on(key.relays(), perm));
                self.owners.add(*user, &read_on(&relays, perm));
            }
            let old = key.set_relays(self.lists.share(relays.clone()));
            self.lists.release(old);
        }
        Ok((relays, true))
    }

    /// Deletes the key for `pubkey`, wiping it.
    pub fn delete(&mut self, pubkey: &PublicKey) -> Result<(), StoreError> {
        let key = self.keys.remove(pubkey).ok_or(StoreError::NoKey)?;
        self.log.forget(pubkey);
        self.grant_bytes = self.grant_bytes.saturating_sub(key.grant_bytes());
        self.relays.remove(pubkey, key.relays());
        if key.expires_at().is_some() {
            self.test_keys = self.test_keys.saturating_sub(1);
        } else {
            // Test keys have no owner: their permission events are not read.
            self.owners
                .remove(pubkey, &read_on(key.relays(), &self.perm_relays));
        }
        self.lists.release(key.into_relays());
        Ok(())
    }

    /// A fresh throw-away key for `requester` on `relays`, living
    /// `test_key_ttl`, with one connect secret. Returns it and the secret.
    /// `pow` is the request's proof of work (see [`admission`]).
    pub fn generate_test_key(
        &mut self,
        requester: &PublicKey,
        relays: Vec<RelayUrl>,
        pow: u8,
        now: u64,
    ) -> Result<(PublicKey, Zeroizing<String>), StoreError> {
        let limit = self.limits.test_keys_per_hour;
        let recent = self.test_key_requests.entry(*requester).or_default();
        while recent.front().is_some_and(|t| *t + 3600 <= now) {
            recent.pop_front();
        }
        if recent.len() >= limit {
            return Err(StoreError::TestKeyRate(limit));
        }
        if recent.is_empty() {
            // Not a requester worth remembering yet: keep the map to those
            // that did get a test key.
            self.test_key_requests.remove(requester);
        }
        if self.test_keys >= self.limits.max_test_keys {
            return Err(StoreError::TestKeysFull(self.limits.max_test_keys));
        }
        let relays = distinct(relays);
        let new_relays = self.check_relays(&relays, None)?;
        self.admit(Some(Resource::TestKeys), new_relays, pow, now)?;
        self.record(Some(Resource::TestKeys), new_relays, now);
        self.test_key_requests
            .entry(*requester)
            .or_default()
            .push_back(now);
        let keys = Keys::generate();
        let pubkey = keys.public_key();
        self.relays.add(pubkey, &relays);
        let relays = self.lists.share(relays);
        let expires = now + self.limits.test_key_ttl;
        let mut key = UserKey::new(keys.secret_key().clone(), relays, Some(expires));
        // Throw-away keys give full access: there is nothing to protect.
        let secret = key.new_secret(now, &self.limits, Policy::full());
        self.grant_bytes += key.grant_bytes();
        self.keys.insert(pubkey, key);
        self.test_keys += 1;
        Ok((pubkey, secret))
    }

    /// Removes expired test keys, secrets and rate-limit records; returns
    /// how many keys were removed.
    pub fn expire(&mut self, now: u64) -> usize {
        let expired: Vec<PublicKey> = self
            .keys
            .iter()
            .filter(|(_, k)| k.expires_at().is_some_and(|t| t <= now))
            .map(|(p, _)| *p)
            .collect();
        for pubkey in &expired {
            let _ = self.delete(pubkey);
        }
        for key in self.keys.values_mut() {
            let before = key.grant_bytes();
            key.expire_secrets(now);
            self.grant_bytes = (self.grant_bytes + key.grant_bytes()).saturating_sub(before);
        }
        self.test_key_requests
            .retain(|_, times| times.back().is_some_and(|t| t + 3600 > now));
        expired.len()
    }
}

/// `relays` and then the permission relays: where an owned key's nsec.app
/// permission events are read (the index counts a relay named twice once).
fn read_on(relays: &[RelayUrl], perm: &[RelayUrl]) -> Vec<RelayUrl> {
    relays.iter().chain(perm).cloned().collect()
}

/// `relays` without repeats, in order (the parsers already drop them: the
/// relay index counts on it).
fn distinct(relays: Vec<RelayUrl>) -> Vec<RelayUrl> {
    let mut out: Vec<RelayUrl> = Vec::with_capacity(relays.len());
    for relay in relays {
        if !out.contains(&relay) {
            out.push(relay);
        }
    }
    out
}

/// Whether two relay lists hold the same relays.
fn same_relays(a: &[RelayUrl], b: &[RelayUrl]) -> bool {
    a.len() == b.len() && a.iter().all(|r| b.contains(r))
}

#[cfg(test)]
mod tests;
