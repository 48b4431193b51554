//! The store's side of grants: giving and replacing them, bunker secrets,
//! `connect`, decisions and their log, and the count of the memory grants
//! hold (each counted when given at what it may come to hold; see
//! `apps::policy_bytes`), bounded by `Limits::max_grant_bytes` and paid
//! with proof of work past a free hourly allowance, as keys are.

use nostr::PublicKey;
use verifier::grant::nsecapp::{merge, to_policy, Merged, Payload};
use verifier::grant::wire::source;
use verifier::grant::{Action, Decision, Method, Perms, Policy, Refusal};
use zeroize::Zeroizing;

use super::user_key::TRACKED_BYTES;
use super::{DecisionLog, Entry, KeyStore, Resource, StoreError, UserKey};

impl KeyStore {
    /// Runs `change` on `user`'s key, keeping the count of grant memory.
    fn update<R>(&mut self, user: &PublicKey, change: impl FnOnce(&mut UserKey) -> R) -> Option<R> {
        let key = self.keys.get_mut(user)?;
        let before = key.grant_bytes();
        let result = change(key);
        let after = key.grant_bytes();
        self.grant_bytes = (self.grant_bytes + after).saturating_sub(before);
        Some(result)
    }

    /// The memory counted for all grants and pending secrets.
    pub fn grant_bytes(&self) -> usize {
        self.grant_bytes
    }

    /// Checks that `extra` bytes of grants fit and that `pow` pays for
    /// them past the free allowance.
    fn admit_grants(&self, extra: usize, pow: u8, now: u64) -> Result<(), StoreError> {
        let max = self.limits.max_grant_bytes;
        if self.grant_bytes.saturating_add(extra) > max {
            return Err(StoreError::GrantsFull(max >> 20));
        }
        self.admission
            .check(
                Resource::Grants,
                extra.div_ceil(1024),
                self.grant_bytes / 1024,
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
        let extra = self
            .keys
            .get(user)
            .ok_or(StoreError::NoKey)?
            .grant_cost(&app, policy);
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

    /// Ends `app`'s access to `user`'s key; whether it had any.
    pub fn logout(
        &mut self,
        user: &PublicKey,
        app: &PublicKey,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.update(user, |k| k.logout(app, now))
            .ok_or(StoreError::NoKey)
    }

    /// Whether `user`'s permission event `id` was applied lately.
    pub fn nsec_seen(&self, user: &PublicKey, id: &[u8; 32]) -> bool {
        self.keys.get(user).is_some_and(|k| k.nsec_seen(id))
    }

    /// Remembers that `user`'s permission event `id` was applied.
    pub fn nsec_applied(&mut self, user: &PublicKey, id: [u8; 32]) {
        if let Some(key) = self.keys.get_mut(user) {
            key.nsec_applied(id);
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
    /// held.
    pub fn log_refused(
        &mut self,
        user: &PublicKey,
        app: &PublicKey,
        action: &Action,
        refusal: Refusal,
        now: u64,
    ) {
        if self.keys.contains_key(user) {
            self.log
                .push(*user, Entry::new(now, app, action, Some(refusal)));
        }
    }

    /// The decision log.
    pub fn log(&self) -> &DecisionLog {
        &self.log
    }

    /// Applies `user`'s nsec.app permission event `payload` (see
    /// `verifier::grant::nsecapp`). The newest change wins: a permission
    /// change replaces the app's grant unless the owner changed that grant
    /// later through the admin API, and the reverse. Returns the app and
    /// what changed; `None` if the key is not held (or is a test key), or
    /// it already remembers as many apps as it may have.
    pub fn apply_nsec_app(
        &mut self,
        user: &PublicKey,
        payload: Payload,
        now: u64,
    ) -> Option<(PublicKey, Merged)> {
        let app = match &payload {
            Payload::App { app, .. } | Payload::Deleted { app, .. } => *app,
        };
        let max_apps = self.limits.max_apps_per_key;
        let key = self
            .keys
            .get_mut(user)
            .filter(|k| k.expires_at().is_none())?;
        let mut state = key.take_nsec_app(&app);
        let known = state.is_some();
        if state.is_none() && key.nsec_app_count() >= max_apps {
            return None;
        }
        let merged = merge(&mut state, payload);
        let Some(state) = state else {
            return Some((app, merged));
        };
        // A change the owner made through the admin API in the same
        // second or later stands (the owner's are in seconds, nsec.app's
        // in ms).
        let changed_at = match merged {
            Merged::Deleted => state.updated,
            _ => state.perms_updated,
        };
        let owner_later = key
            .owner_changed_at(&app)
            .is_some_and(|at| at.saturating_mul(1000).saturating_add(999) >= changed_at);
        let from_nsec = key
            .app(&app)
            .is_some_and(|a| a.source() == source::NSEC_APP);
        let claims = state.info.to_json();
        match merged {
            Merged::Unchanged => {}
            Merged::Info if from_nsec => self.set_claims(user, &app, &claims),
            Merged::Info => {}
            Merged::Perms | Merged::Deleted if owner_later => {}
            Merged::Perms => {
                let applied = to_policy(&state).is_some_and(|policy| {
                    let extra = self
                        .keys
                        .get(user)
                        .map_or(0, |k| k.grant_cost(&app, &policy));
                    // Signed by the key itself: the hard bound, no proof of work.
                    let fits =
                        self.grant_bytes.saturating_add(extra) <= self.limits.max_grant_bytes;
                    let limits = self.limits.clone();
                    let at = (changed_at / 1000).min(now);
                    fits && self
                        .update(user, |k| {
                            k.grant(app, &policy, source::NSEC_APP, at, &limits)
                        })
                        .is_some_and(|r| r.is_ok())
                });
                if applied {
                    self.set_claims(user, &app, &claims);
                } else {
                    // Refused, or it does not fit: fail closed, never
                    // leave an older, wider grant in force.
                    self.update(user, |k| k.forget_app(&app));
                }
            }
            Merged::Deleted => {
                self.update(user, |k| k.forget_app(&app));
            }
        }
        if let Some(key) = self.keys.get_mut(user) {
            key.keep_nsec_app(app, state);
            if !known {
                self.grant_bytes += TRACKED_BYTES;
            }
        }
        Some((app, merged))
    }
}
