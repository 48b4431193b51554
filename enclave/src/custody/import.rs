//! Keys coming in and the relays they listen on: imports, a
//! nostrconnect:// app's relays, and the limits and admission control on
//! both.
//!
//! A key listens on its owner's relays and on the relays that its
//! nostrconnect:// apps added for themselves (`App::added_relays`). An
//! app's relays go when the app goes; an import that keeps the apps keeps
//! their relays, one that drops them drops those too.
//!
//! The admin relay and the permission relays are always served, so they
//! never count against `max_relays`: a newcomer can always listen on the
//! admin relay, however many relays strangers took.

use std::collections::HashSet;

use nostr::{Keys, PublicKey, RelayUrl};
use verifier::grant::wire::source;
use verifier::grant::{Perms, Policy};
use verifier::rpc::admin::KeptApps;

use super::apps::Granted;
use super::{ConnectError, Imported, KeyStore, Resource, StoreError, UserKey};

impl KeyStore {
    /// Whether `relay` is always served (the admin or a permission relay).
    fn always_served(&self, relay: &RelayUrl) -> bool {
        self.admin_relay.as_ref() == Some(relay) || self.perm_relays.contains(relay)
    }

    /// Relays in use that count against `max_relays`.
    fn counted_relays(&self) -> usize {
        let free = self
            .admin_relay
            .iter()
            .chain(self.perm_relays.iter())
            .collect::<HashSet<_>>()
            .into_iter()
            .filter(|r| self.relays.contains(r))
            .count();
        self.relays.len().saturating_sub(free)
    }

    /// Checks the relay limits for a key that will listen on `relays`
    /// (instead of its current ones, for `replacing`); returns how many of
    /// them are counted relays not served yet.
    pub(super) fn check_relays(
        &self,
        relays: &[RelayUrl],
        replacing: Option<&PublicKey>,
    ) -> Result<usize, StoreError> {
        if relays.len() > self.limits.max_relays_per_key {
            return Err(StoreError::TooManyRelaysPerKey(
                self.limits.max_relays_per_key,
            ));
        }
        let released = replacing
            .and_then(|p| self.keys.get(p))
            .map(|k| {
                k.relays()
                    .iter()
                    .filter(|r| {
                        self.relays.users(r) == 1 && !relays.contains(r) && !self.always_served(r)
                    })
                    .count()
            })
            .unwrap_or_default();
        let new = relays
            .iter()
            .filter(|r| !self.relays.contains(r) && !self.always_served(r))
            .count();
        if self.counted_relays().saturating_sub(released) + new > self.limits.max_relays {
            return Err(StoreError::TooManyRelays(self.limits.max_relays));
        }
        Ok(new)
    }

    /// Checks that `pow` pays for `new_relays` more relays and, if `key`
    /// is given, one more of that resource.
    pub(super) fn admit(
        &self,
        key: Option<Resource>,
        new_relays: usize,
        pow: u8,
        now: u64,
    ) -> Result<(), StoreError> {
        if let Some(resource) = key {
            let (used, max) = match resource {
                Resource::TestKeys => (self.test_keys, self.limits.max_test_keys),
                _ => (self.owned(), self.limits.max_keys),
            };
            self.admission
                .check(resource, 1, used, max, pow, now)
                .map_err(StoreError::Pow)?;
        }
        self.admission
            .check(
                Resource::Relays,
                new_relays,
                self.counted_relays(),
                self.limits.max_relays,
                pow,
                now,
            )
            .map_err(StoreError::Pow)
    }

    pub(super) fn record(&mut self, key: Option<Resource>, new_relays: usize, now: u64) {
        if let Some(resource) = key {
            self.admission.record(resource, 1, now);
        }
        self.admission.record(Resource::Relays, new_relays, now);
    }

    /// Whether `user`'s relays may change again at `now`.
    fn may_change_relays(&mut self, user: &PublicKey, now: u64) -> Result<(), StoreError> {
        let limit = self.limits.relay_changes_per_hour;
        let allowed = self
            .keys
            .get_mut(user)
            .is_none_or(|key| key.may_change_relays(limit, now));
        if allowed {
            Ok(())
        } else {
            Err(StoreError::RelayChangeRate(limit))
        }
    }

    /// Makes the held `user` listen on `relays` from now on, in the relay
    /// indexes and the shared lists; `counted` records it as a change of
    /// its relays (an owner's or an app's addition, not a removal).
    pub(super) fn set_relays(
        &mut self,
        user: &PublicKey,
        relays: Vec<RelayUrl>,
        counted: bool,
        now: u64,
    ) {
        let Some(key) = self.keys.get_mut(user) else {
            return;
        };
        if counted {
            key.record_relay_change(now);
        }
        self.relays.remove(user, key.relays());
        self.relays.add(*user, &relays);
        if key.expires_at().is_none() {
            let perm = &self.perm_relays;
            self.owners.remove(user, &read_on(key.relays(), perm));
            self.owners.add(*user, &read_on(&relays, perm));
        }
        let old = key.set_relays(self.lists.share(relays));
        self.lists.release(old);
    }

    /// Imports `keys` listening on `relays`, or updates the relays of a
    /// key already held, keeping or dropping its apps and pending secrets
    /// (and the relays its apps added) as `apps` says. `pow` is the
    /// request's proof of work, checked when the import takes a new key
    /// slot or new relays. At `max_keys`, a newcomer who pays the price of
    /// the last slot takes the slot of a key that serves no one
    /// ([`super::lifecycle`]).
    pub fn import(
        &mut self,
        keys: Keys,
        relays: Vec<RelayUrl>,
        apps: KeptApps,
        pow: u8,
        now: u64,
    ) -> Result<Imported, StoreError> {
        let pubkey = keys.public_key();
        let owners = distinct(relays);
        let mut relays = owners.clone();
        if apps == KeptApps::Keep {
            if let Some(key) = self.keys.get(&pubkey) {
                for relay in key.apps().flat_map(|(_, a)| a.added_relays()) {
                    if !relays.contains(relay) {
                        relays.push(relay.clone());
                    }
                }
            }
        }
        let new_relays = self.check_relays(&relays, Some(&pubkey))?;
        let held = self.keys.contains_key(&pubkey);
        let moves = self
            .keys
            .get(&pubkey)
            .is_some_and(|k| !same_relays(k.relays(), &relays));
        if moves {
            self.may_change_relays(&pubkey, now)?;
        }
        // At the cap, a newcomer takes the slot of a key that serves no
        // one, paying the price of the last slot (`admit` asks it). Whether
        // there is such a key is known from the last sweep, so a request
        // that has not paid costs no search of every key.
        let at_cap = !held && self.owned() >= self.limits.max_keys;
        if at_cap && self.displaceable_seen == 0 {
            return Err(StoreError::Full(self.limits.max_keys));
        }
        let resource = (!held).then_some(Resource::Keys);
        self.admit(resource, new_relays, pow, now)?;
        let displaced = if at_cap {
            let victim = self
                .displaceable(now)
                .ok_or(StoreError::Full(self.limits.max_keys))?;
            let _ = self.delete(&victim);
            Some(victim)
        } else {
            None
        };
        self.record(resource, new_relays, now);
        if held {
            let owned_before = self
                .keys
                .get(&pubkey)
                .is_some_and(|k| k.expires_at().is_none());
            if !owned_before {
                // Imported by its owner: no longer a throw-away key.
                self.test_keys = self.test_keys.saturating_sub(1);
                let current = self.keys.get(&pubkey).map(|k| k.relays().to_vec());
                if let Some(key) = self.keys.get_mut(&pubkey) {
                    key.keep(now);
                }
                if let Some(current) = current {
                    self.owners
                        .add(pubkey, &read_on(&current, &self.perm_relays));
                }
            }
            if moves {
                self.set_relays(&pubkey, relays, true, now);
            }
            let claimed = owners;
            self.update(&pubkey, |key| {
                key.touch(now);
                match apps {
                    KeptApps::Drop => {
                        key.revoke_all(now);
                        // No app from before now: nsec.app's events
                        // included, even one not seen yet.
                        key.drop_changes_before(now);
                    }
                    KeptApps::Keep => key.claim_relays(&claimed),
                }
            });
            let key = self.keys.get(&pubkey);
            return Ok(Imported {
                new: false,
                apps_kept: key.map_or(0, UserKey::app_count),
                secrets_kept: key.map_or(0, UserKey::secret_count),
                relays_changed: moves,
                displaced,
            });
        }
        self.relays.add(pubkey, &relays);
        self.owners
            .add(pubkey, &read_on(&relays, &self.perm_relays));
        let mut key = UserKey::new(
            keys.secret_key().clone(),
            self.lists.share(relays),
            None,
            now,
        );
        if apps == KeptApps::Drop {
            // A key imported again after it was deleted forgot its owner's
            // revokes: "drop" says no app from before now, nsec.app's
            // stored events included.
            key.drop_changes_before(now);
        }
        self.keys.insert(pubkey, key);
        Ok(Imported {
            new: true,
            apps_kept: 0,
            secrets_kept: 0,
            relays_changed: true,
            displaced,
        })
    }

    /// The owner's answer to a nostrconnect:// app: `app` gets `policy`
    /// narrowed by what it `asked` for, and `user`'s key listens on `more`
    /// relays too, for that app only. Every limit (apps, relays per key and
    /// overall, relay changes per hour, grant memory, proof of work `pow`)
    /// is checked before anything changes. Returns the key's relays and
    /// whether they changed.
    #[allow(clippy::too_many_arguments)]
    pub fn nostrconnect(
        &mut self,
        user: &PublicKey,
        app: PublicKey,
        policy: &Policy,
        asked: Option<&Perms>,
        more: &[RelayUrl],
        pow: u8,
        now: u64,
    ) -> Result<(Vec<RelayUrl>, bool), StoreError> {
        let key = self.keys.get(user).ok_or(StoreError::NoKey)?;
        let max_apps = self.limits.max_apps_per_key;
        if !key.allows(&app) && key.app_count() >= max_apps {
            return Err(StoreError::Connect(ConnectError::TooManyApps(max_apps)));
        }
        // The relays the owner listed stay the owner's; every other relay
        // of the URI is this app's, even one another app added too (it
        // stays while either needs it).
        let owners = owner_relays(key);
        let mut relays = relays_without(key, &app);
        let mut added = Vec::new();
        for relay in distinct(more.to_vec()) {
            if !owners.contains(&relay) {
                added.push(relay.clone());
            }
            if !relays.contains(&relay) {
                relays.push(relay);
            }
        }
        let changed = !same_relays(key.relays(), &relays);
        let mut narrowed = policy.clone();
        narrowed.perms = policy.perms.narrow(asked);
        let extra = key.grant_cost(&app, &narrowed, added.len());
        let new_relays = if changed {
            self.check_relays(&relays, Some(user))?
        } else {
            0
        };
        if changed {
            self.may_change_relays(user, now)?;
        }
        self.admit_grants(extra, pow, now)?;
        self.admit(None, new_relays, pow, now)?;
        // Everything is checked: now change.
        self.record(None, new_relays, now);
        self.admission
            .record(Resource::Grants, extra.div_ceil(1024), now);
        if changed {
            self.set_relays(user, relays.clone(), true, now);
        }
        let limits = self.limits.clone();
        let granted = Granted {
            policy,
            asked,
            source: source::NOSTRCONNECT,
            added: Some(added),
        };
        self.update(user, |k| k.grant_with(app, granted, now, &limits))
            .ok_or(StoreError::NoKey)?
            .map_err(StoreError::Connect)?;
        Ok((relays, changed))
    }

    /// After `app` left `user`'s key: the relays only it had added go.
    /// Whether the key's relays changed.
    pub(super) fn drop_app_relays(&mut self, user: &PublicKey, gone: &[RelayUrl]) -> bool {
        let Some(key) = self.keys.get(user) else {
            return false;
        };
        let kept: HashSet<&RelayUrl> = key.apps().flat_map(|(_, a)| a.added_relays()).collect();
        let relays: Vec<RelayUrl> = key
            .relays()
            .iter()
            .filter(|r| !gone.contains(r) || kept.contains(r))
            .cloned()
            .collect();
        if relays.len() == key.relays().len() {
            return false;
        }
        self.set_relays(user, relays, false, 0);
        true
    }
}

/// The relays of `key` that its owner listed (no app added them).
fn owner_relays(key: &UserKey) -> Vec<RelayUrl> {
    let added: HashSet<&RelayUrl> = key.apps().flat_map(|(_, a)| a.added_relays()).collect();
    key.relays()
        .iter()
        .filter(|r| !added.contains(r))
        .cloned()
        .collect()
}

/// The relays `key` listens on but for those only `app` added.
fn relays_without(key: &UserKey, app: &PublicKey) -> Vec<RelayUrl> {
    let others: HashSet<&RelayUrl> = key
        .apps()
        .filter(|(a, _)| *a != app)
        .flat_map(|(_, a)| a.added_relays())
        .collect();
    let mine = key.app(app).map_or(&[][..], |a| a.added_relays());
    key.relays()
        .iter()
        .filter(|r| !mine.contains(r) || others.contains(r))
        .cloned()
        .collect()
}

/// `relays` and then the permission relays: where an owned key's nsec.app
/// permission events are read (the index counts a relay named twice once).
pub(super) fn read_on(relays: &[RelayUrl], perm: &[RelayUrl]) -> Vec<RelayUrl> {
    relays.iter().chain(perm).cloned().collect()
}

/// `relays` without repeats, in order (the parsers already drop them: the
/// relay index counts on it).
pub(super) fn distinct(relays: Vec<RelayUrl>) -> Vec<RelayUrl> {
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
