//! How keys end, so that no slot is held for good by a key that serves no
//! one.
//!
//! What keeps a key is what its owner paid for: an app granted through
//! the admin API (a bunker URL, `grant`, `connect_key`, `nostrconnect`;
//! each paid with proof of work past a free allowance) or a pending bunker
//! secret. nsec.app's grants cost nothing, so they keep a key only while it
//! is used. "Used" is any admin request the key signs and any request of
//! one of its apps.
//!
//! - **Test keys** are deleted `test_key_ttl` after they were made.
//! - **Idle keys.** An owned key that nothing its owner paid for keeps is
//!   deleted `idle_ttl` (30 days) after it was last used. Any admin request
//!   (`ping`, `key_status`, an import …) starts the time again.
//! - **Displacement.** When every key slot is taken, a newcomer whose
//!   import pays the price of the last slot (the most proof of work the
//!   enclave asks, `AdmissionLimits::max_bits`) takes the slot of a key
//!   with no pending secret, imported at least `displace_after` (10
//!   minutes) ago, and either kept by no app its owner granted or unused
//!   for `idle_ttl`: of those, the one used least lately. So a stranger who
//!   filled the enclave keeps a slot only by paying for a grant on each key
//!   and using each key, and honest newcomers can pay their way in past
//!   keys that nobody paid to keep. Test keys work the same way among
//!   themselves: at their cap, the one closest to its end makes room.
//!   Whether any key could be displaced is counted by the sweep that runs
//!   every minute ([`KeyStore::expire`]), so an import that has not paid
//!   is told `Full` (or the price) without a search of every key.
//!   With admission control off (`--pow-bits 0`) nobody pays, and the caps
//!   are hard limits.
//!
//! `key_status` tells an owner which of these applies to their key.

use nostr::{Keys, PublicKey, RelayUrl};
use verifier::grant::Policy;
use verifier::rpc::status::KeyStatus;
use zeroize::Zeroizing;

use super::import::{distinct, read_on};
use super::{KeyStore, Memory, Resource, StoreError, UserKey};

impl KeyStore {
    /// Deletes the key for `pubkey`, wiping it.
    pub fn delete(&mut self, pubkey: &PublicKey) -> Result<(), StoreError> {
        let key = self.keys.remove(pubkey).ok_or(StoreError::NoKey)?;
        self.log.forget(pubkey);
        self.memory.changed(pubkey, key.memory(), Memory::default());
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

    /// The owner of `user` made an admin request at `now` (its apps'
    /// requests count too: `KeyStore::decide`).
    pub fn touch(&mut self, user: &PublicKey, now: u64) {
        if let Some(key) = self.keys.get_mut(user) {
            key.touch(now);
        }
    }

    /// The key a newcomer paying for the last slot may displace at `now`
    /// ([`Self::may_displace`]): of those, the one used least lately.
    pub(super) fn displaceable(&self, now: u64) -> Option<PublicKey> {
        self.keys
            .iter()
            .filter(|(_, key)| self.may_displace(key, now))
            .filter_map(|(pubkey, key)| key.used().map(|(_, last_used)| (last_used, *pubkey)))
            .min()
            .map(|(_, pubkey)| pubkey)
    }

    /// Whether a paying newcomer may take `key`'s slot at `now`: an owned
    /// key with no pending secret, imported at least `displace_after` ago,
    /// kept by no app its owner granted or unused for `idle_ttl`. With
    /// admission control off (`pow_bits` 0) the cap is a hard limit:
    /// nobody pays, so nobody displaces.
    fn may_displace(&self, key: &UserKey, now: u64) -> bool {
        let Some((imported, last_used)) = key.used() else {
            return false;
        };
        self.limits.admission.pow_bits > 0
            && key.secret_count() == 0
            && imported.saturating_add(self.limits.displace_after) <= now
            && (key.owner_apps() == 0 || last_used.saturating_add(self.limits.idle_ttl) <= now)
    }

    /// Whether `key` is idle at `now`: nothing its owner paid for keeps
    /// it, and it was not used for `idle_ttl`.
    fn idle(&self, key: &UserKey, now: u64) -> bool {
        key.used().is_some_and(|(_, last_used)| {
            !key.kept_by_owner() && last_used.saturating_add(self.limits.idle_ttl) <= now
        })
    }

    /// What `key_status` says of `user`'s key at `now`.
    pub fn status(&self, user: &PublicKey, now: u64) -> KeyStatus {
        let Some(key) = self.keys.get(user) else {
            return KeyStatus::default();
        };
        let used = key.used();
        let deleted_after = match (key.expires_at(), used) {
            (Some(at), _) => Some(at),
            (None, Some((_, last_used))) if !key.kept_by_owner() => {
                Some(last_used.saturating_add(self.limits.idle_ttl))
            }
            _ => None,
        };
        KeyStatus {
            held: true,
            test_key: key.expires_at().is_some(),
            apps: key.app_count(),
            owner_apps: key.owner_apps(),
            pending_secrets: key.secret_count(),
            imported: used.map(|(at, _)| at),
            last_used: used.map(|(_, at)| at),
            deleted_after,
            displaceable: self.may_displace(key, now),
            idle_days: self.limits.idle_ttl / 86_400,
        }
    }

    /// A fresh throw-away key for `requester` on `relays`, living
    /// `test_key_ttl`, with one connect secret. Returns it and the secret.
    /// `pow` is the request's proof of work (see [`super::admission`]).
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
        let relays = distinct(relays);
        let new_relays = self.check_relays(&relays, None)?;
        let secret_cost = UserKey::secret_cost(&Policy::full());
        if !self.memory.owner_fits(secret_cost) {
            return Err(StoreError::GrantsFull(self.memory.max() >> 20));
        }
        // At the cap the request pays the price of the last slot, and the
        // test key closest to its end makes room.
        self.admit(Some(Resource::TestKeys), new_relays, pow, now)?;
        if self.test_keys >= self.limits.max_test_keys {
            let oldest = self
                .keys
                .iter()
                .filter_map(|(p, k)| k.expires_at().map(|at| (at, *p)))
                .min()
                .map(|(_, p)| p)
                .filter(|_| self.limits.admission.pow_bits > 0)
                .ok_or(StoreError::TestKeysFull(self.limits.max_test_keys))?;
            let _ = self.delete(&oldest);
        }
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
        let mut key = UserKey::new(keys.secret_key().clone(), relays, Some(expires), now);
        // Throw-away keys give full access: there is nothing to protect.
        let secret = key.new_secret(now, &self.limits, Policy::full());
        self.memory
            .changed(&pubkey, Memory::default(), key.memory());
        self.keys.insert(pubkey, key);
        self.test_keys += 1;
        Ok((pubkey, secret))
    }

    /// Removes expired test keys and secrets, idle keys and rate-limit
    /// records, and counts the keys a paying newcomer could displace;
    /// returns how many keys were removed.
    pub fn expire(&mut self, now: u64) -> usize {
        let ended: Vec<PublicKey> = self
            .keys
            .iter()
            .filter(|(_, k)| {
                k.expires_at()
                    .map_or_else(|| self.idle(k, now), |at| at <= now)
            })
            .map(|(p, _)| *p)
            .collect();
        for pubkey in &ended {
            let _ = self.delete(pubkey);
        }
        let with_secrets: Vec<PublicKey> = self
            .keys
            .iter()
            .filter(|(_, k)| k.secret_count() > 0)
            .map(|(p, _)| *p)
            .collect();
        for pubkey in &with_secrets {
            self.update(pubkey, |k| k.expire_secrets(now));
        }
        self.test_key_requests
            .retain(|_, times| times.back().is_some_and(|t| t + 3600 > now));
        self.displaceable_seen = self
            .keys
            .values()
            .filter(|k| self.may_displace(k, now))
            .count();
        ended.len()
    }
}
