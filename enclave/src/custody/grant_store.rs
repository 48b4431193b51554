//! The store's side of grants: giving and replacing them, bunker secrets,
//! `connect`, decisions and their log, and the count of the memory grants
//! hold (each counted when given at what it may come to hold; see
//! `apps::policy_bytes`), in two classes (`super::grant_memory`): what
//! owners grant through the admin API is bounded by
//! `Limits::max_grant_bytes` and paid with proof of work past a free
//! hourly allowance, as keys are; what nsec.app's events grant is
//! `super::nsec_store`'s.

use nostr::PublicKey;
use verifier::grant::{Action, Decision, Method, Perms, Policy, Refusal};
use zeroize::Zeroizing;

use super::apps::App;
use super::{DecisionLog, Entry, KeyStore, Memory, Resource, StoreError, UserKey};

/// What removing an app did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Removed {
    /// The app had a grant.
    pub had: bool,
    /// The key's relays changed: relays only that app had added went.
    pub relays_changed: bool,
}

impl KeyStore {
    /// Runs `change` on `user`'s key, keeping the count of grant memory.
    pub(super) fn update<R>(
        &mut self,
        user: &PublicKey,
        change: impl FnOnce(&mut UserKey) -> R,
    ) -> Option<R> {
        let key = self.keys.get_mut(user)?;
        let before = key.memory();
        let result = change(key);
        let after = key.memory();
        self.memory.changed(user, before, after);
        Some(result)
    }

    /// The memory counted for all grants and pending secrets.
    pub fn grant_bytes(&self) -> usize {
        self.memory.counted().total()
    }

    /// The memory counted for all grants and pending secrets, by class.
    pub fn grant_memory(&self) -> Memory {
        self.memory.counted()
    }

    /// Checks that `extra` bytes of owners' grants fit and that `pow`
    /// pays for them past the free allowance. The price follows how full
    /// owners' grants are, not nsec.app's: a stranger's permission events
    /// cannot raise it.
    pub(super) fn admit_grants(&self, extra: usize, pow: u8, now: u64) -> Result<(), StoreError> {
        let max = self.memory.max();
        if !self.memory.owner_fits(extra) {
            return Err(StoreError::GrantsFull(max >> 20));
        }
        self.admission
            .check(
                Resource::Grants,
                extra.div_ceil(1024),
                self.memory.counted().owner / 1024,
                max / 1024,
                pow,
                now,
            )
            .map_err(StoreError::Pow)
    }

    /// Gives `app` `policy` on `user`'s key (the owner's `connect_key` or
    /// `grant`), replacing its grant; `pow` pays for the memory it takes.
    pub fn grant(
        &mut self,
        user: &PublicKey,
        app: PublicKey,
        policy: &Policy,
        source: &'static str,
        pow: u8,
        now: u64,
    ) -> Result<(), StoreError> {
        policy.check_at(now).map_err(StoreError::BadPolicy)?;
        let key = self.keys.get(user).ok_or(StoreError::NoKey)?;
        // The relays it added for itself stay with it.
        let added = key.app(&app).map_or(0, |a| a.added_relays().len());
        let extra = key.grant_cost(&app, policy, added);
        self.admit_grants(extra, pow, now)?;
        let limits = self.limits.clone();
        self.update(user, |k| k.grant(app, policy, source, now, &limits))
            .ok_or(StoreError::NoKey)?
            .map_err(StoreError::Connect)?;
        self.admission
            .record(Resource::Grants, extra.div_ceil(1024), now);
        Ok(())
    }

    /// A fresh bunker secret on `user`'s key for an app to get `policy`.
    pub fn new_secret(
        &mut self,
        user: &PublicKey,
        policy: Policy,
        pow: u8,
        now: u64,
    ) -> Result<Zeroizing<String>, StoreError> {
        if !self.keys.contains_key(user) {
            return Err(StoreError::NoKey);
        }
        policy.check_at(now).map_err(StoreError::BadPolicy)?;
        let extra = UserKey::secret_cost(&policy);
        self.admit_grants(extra, pow, now)?;
        let limits = self.limits.clone();
        let secret = self
            .update(user, |k| k.new_secret(now, &limits, policy))
            .ok_or(StoreError::NoKey)?;
        self.admission
            .record(Resource::Grants, extra.div_ceil(1024), now);
        Ok(secret)
    }

    /// NIP-46 `connect` by `app` on `user`'s key (see [`UserKey::connect`]);
    /// the secret it spends counted the memory of the app it becomes.
    pub fn connect(
        &mut self,
        user: &PublicKey,
        app: PublicKey,
        secret: Option<&str>,
        asked: Option<&Perms>,
        claims: Option<&str>,
        now: u64,
    ) -> Result<(), StoreError> {
        let limits = self.limits.clone();
        self.update(user, |k| {
            k.connect(app, secret, asked, claims, now, &limits)
        })
        .ok_or(StoreError::NoKey)?
        .map_err(StoreError::Connect)
    }

    /// Keeps what `app` says about itself on `user`'s key, for display.
    pub fn set_claims(&mut self, user: &PublicKey, app: &PublicKey, claims: &str) {
        self.update(user, |k| k.set_claims(app, claims));
    }

    /// Ends `app`'s access to `user`'s key (its `logout`, or the owner's
    /// `revoke_app`), and the relays only it had added.
    pub fn logout(
        &mut self,
        user: &PublicKey,
        app: &PublicKey,
        now: u64,
    ) -> Result<Removed, StoreError> {
        let gone = self
            .update(user, |k| k.logout(app, now))
            .ok_or(StoreError::NoKey)?;
        Ok(self.removed(user, gone))
    }

    /// What removing `gone` from `user`'s key did, its relays dropped.
    pub(super) fn removed(&mut self, user: &PublicKey, gone: Option<App>) -> Removed {
        let Some(gone) = gone else {
            return Removed::default();
        };
        Removed {
            had: true,
            relays_changed: self.drop_app_relays(user, gone.added_relays()),
        }
    }

    /// Whether `user`'s permission event `id` was applied lately.
    pub fn nsec_seen(&self, user: &PublicKey, id: &[u8; 32]) -> bool {
        self.keys.contains_key(user) && self.nsec_ids.contains(id)
    }

    /// Remembers that `user`'s permission event `id` was applied.
    pub fn nsec_applied(&mut self, user: &PublicKey, id: [u8; 32]) {
        if self.keys.contains_key(user) {
            self.nsec_ids.insert(id);
        }
    }

    /// The decision on `app`'s `action` on `user`'s key at `now`, logged;
    /// `None` if the key is not held or the app not allowed on it.
    pub fn decide(
        &mut self,
        user: &PublicKey,
        app: &PublicKey,
        action: &Action,
        now: u64,
    ) -> Option<Decision> {
        let key = self.keys.get_mut(user)?;
        let decision = key.decide(app, action, now)?;
        self.decisions = self.decisions.wrapping_add(1);
        // A request of one of its apps: the key is in use.
        key.touch(now);
        // Test keys have no owner to read a log; allowed plumbing
        // (get_public_key, ping, switch_relays) says nothing.
        let plumbing = action.method.always_allowed()
            && !matches!(action.method, Method::Connect | Method::Logout);
        let refusal = match decision {
            Decision::Allowed => None,
            Decision::Refused(r) => Some(r),
        };
        if key.expires_at().is_none() && (refusal.is_some() || !plumbing) {
            self.log.push(*user, Entry::new(now, app, action, refusal));
        }
        Some(decision)
    }

    /// Whether `app`'s grant on `user`'s key names `action` and is in
    /// force (nothing is counted or logged).
    pub fn permits(&self, user: &PublicKey, app: &PublicKey, action: &Action, now: u64) -> bool {
        self.keys
            .get(user)
            .and_then(|k| k.app(app).map(|a| a.grant()))
            .is_some_and(|g| !g.expired(now) && g.names(action))
    }

    /// Logs an allowed `action` by `app` that no grant decides (a
    /// `connect` that spent a secret).
    pub fn log_allowed(&mut self, user: &PublicKey, app: &PublicKey, action: &Action, now: u64) {
        if self
            .keys
            .get(user)
            .is_some_and(|k| k.expires_at().is_none())
        {
            self.log.push(*user, Entry::new(now, app, action, None));
        }
    }

    /// Logs a refusal no grant made (the isolation rule's), if `user` is
    /// held and owned.
    pub fn log_refused(
        &mut self,
        user: &PublicKey,
        app: &PublicKey,
        action: &Action,
        refusal: Refusal,
        now: u64,
    ) {
        // Test keys have no owner to read a log.
        if self
            .keys
            .get(user)
            .is_some_and(|k| k.expires_at().is_none())
        {
            self.log
                .push(*user, Entry::new(now, app, action, Some(refusal)));
        }
    }

    /// The decision log.
    pub fn log(&self) -> &DecisionLog {
        &self.log
    }
}
