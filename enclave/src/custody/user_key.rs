//! One user key and who may use it: its apps, each with a grant, and its
//! pending bunker secrets, each with the policy it hands out.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use nostr::{Keys, PublicKey, RelayUrl, SecretKey};
use subtle::ConstantTimeEq;
use verifier::grant::nsecapp::AppState;
use verifier::grant::{Action, Decision, Perms, Policy};
use zeroize::Zeroizing;

use super::apps::{App, Pending};
use super::relay_lists::RelayList;
use super::Limits;

/// A held key.
pub struct UserKey {
    /// Only the secret (32 bytes, erased on drop): the signing keys are
    /// derived when a request needs them, since a key's full `Keys` would
    /// cost 150 bytes more, and memory per key bounds how many an enclave
    /// holds. Boxed, so that it stays where it was made until it is
    /// erased: the store's map moves its entries when it grows and does not
    /// wipe the memory it leaves.
    secret: Box<SecretKey>,
    /// Shared with every key on the same relays.
    relays: RelayList,
    /// For test keys: when the key is deleted.
    expires_at: Option<u64>,
    /// Its apps and what goes with them, once it has any: most held keys
    /// are imported and wait, and a key costs less without (memory per
    /// key is what bounds how many an enclave holds).
    sessions: Option<Box<Sessions>>,
}

/// What a key has once apps use it or its relays change.
#[derive(Default)]
struct Sessions {
    apps: HashMap<PublicKey, App>,
    /// Pending single-use connect secrets, when they expire, and the
    /// policy of the app that spends each.
    secrets: Vec<Pending>,
    /// When its relays last changed (at most `relay_changes_per_hour`).
    relay_changes: VecDeque<u64>,
    /// What nsec.app's permission events said last, per app (timestamps
    /// only: the permissions themselves live in the apps' grants).
    nsec_app: HashMap<PublicKey, AppState>,
    /// When the owner last changed each app's access (a grant, a spent
    /// bunker secret, a revoke), so an older nsec.app event cannot undo
    /// it; at most [`OWNER_CHANGES_KEPT`], the oldest forgotten first.
    owner_at: HashMap<PublicKey, u64>,
    /// The permission events applied lately, so a replay costs no
    /// decryption.
    nsec_seen: VecDeque<[u8; 32]>,
}

/// Owner changes remembered per key.
pub(super) const OWNER_CHANGES_KEPT: usize = 128;
/// What one remembered nsec.app state or owner change is counted at.
pub(super) const TRACKED_BYTES: usize = 96;
/// Permission event ids remembered per key.
const NSEC_SEEN_KEPT: usize = 256;

/// The signing keys of `secret` (one point multiplication, about 15 µs:
/// done per request, outside the store's lock).
pub fn signing_keys(secret: SecretKey) -> Keys {
    Keys::new(secret)
}

impl fmt::Debug for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserKey")
            .field("relays", &self.relays)
            .field("apps", &self.app_count())
            .field("secrets", &self.secret_count())
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why `connect` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The secret is not one of the pending ones (wrong, spent or expired).
    BadSecret,
    /// No secret, and the app was never allowed.
    SecretRequired,
    /// The key has `max_apps_per_key` apps.
    TooManyApps(usize),
    /// The perms asked for leave nothing of the bunker URL's grant.
    NothingGranted(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSecret => f.write_str("connect: the secret is wrong, already used or expired"),
            Self::SecretRequired => {
                f.write_str("connect: a secret is required (use a bunker URL from the key's owner)")
            }
            Self::NothingGranted(granted) => write!(
                f,
                "connect: the perms you ask for leave nothing of what this bunker URL grants ({granted}); ask for some of it, or for nothing to get all of it"
            ),
            Self::TooManyApps(n) => write!(
                f,
                "connect: this key already has {n} apps; log one out first"
            ),
        }
    }
}

impl std::error::Error for ConnectError {}

impl UserKey {
    pub(super) fn new(secret: SecretKey, relays: RelayList, expires_at: Option<u64>) -> Self {
        Self {
            secret: Box::new(secret),
            relays,
            expires_at,
            sessions: None,
        }
    }

    fn sessions(&self) -> Option<&Sessions> {
        self.sessions.as_deref()
    }

    fn sessions_mut(&mut self) -> &mut Sessions {
        self.sessions.get_or_insert_with(Box::default)
    }

    /// A copy of the secret key (erased when dropped), to sign and decrypt
    /// with outside the store's lock: [`signing_keys`] derives the rest.
    pub fn secret_key(&self) -> SecretKey {
        SecretKey::clone(&self.secret)
    }

    /// Where its requests arrive and its replies go.
    pub fn relays(&self) -> &[RelayUrl] {
        &self.relays
    }

    /// Listens on `relays` from now on; returns the list it had.
    pub(super) fn set_relays(&mut self, relays: RelayList) -> RelayList {
        std::mem::replace(&mut self.relays, relays)
    }

    /// Its relay list, for the store to release when the key goes.
    pub(super) fn into_relays(self) -> RelayList {
        self.relays
    }

    /// Whether its relays may change again at `now`, at most `limit`
    /// times an hour.
    pub(super) fn may_change_relays(&mut self, limit: usize, now: u64) -> bool {
        let Some(s) = self.sessions.as_deref_mut() else {
            return limit > 0;
        };
        while s.relay_changes.front().is_some_and(|t| t + 3600 <= now) {
            s.relay_changes.pop_front();
        }
        s.relay_changes.len() < limit
    }

    pub(super) fn record_relay_change(&mut self, now: u64) {
        self.sessions_mut().relay_changes.push_back(now);
    }

    /// When a test key is deleted; `None` for imported keys.
    pub fn expires_at(&self) -> Option<u64> {
        self.expires_at
    }

    pub(super) fn keep(&mut self) {
        self.expires_at = None;
    }

    /// Whether `app` may use the key (its grant decides what it may do).
    pub fn allows(&self, app: &PublicKey) -> bool {
        self.sessions().is_some_and(|s| s.apps.contains_key(app))
    }

    /// Gives `app` `policy` from `now` (the owner's `connect_key` or
    /// `grant`), replacing the grant it had.
    pub fn grant(
        &mut self,
        app: PublicKey,
        policy: &Policy,
        source: &'static str,
        now: u64,
        limits: &Limits,
    ) -> Result<(), ConnectError> {
        if source != verifier::grant::wire::source::NSEC_APP {
            self.owner_changed(app, now);
        }
        let s = self.sessions_mut();
        if let Some(existing) = s.apps.get_mut(&app) {
            existing.replace(policy, source, now);
            return Ok(());
        }
        if s.apps.len() >= limits.max_apps_per_key {
            return Err(ConnectError::TooManyApps(limits.max_apps_per_key));
        }
        s.apps.insert(app, App::new(policy, None, source, now));
        Ok(())
    }

    /// NIP-46 `connect` by `app` with `secret`, asking for `asked` perms
    /// and saying `claims` about itself. A pending secret is spent and its
    /// policy, narrowed by `asked`, becomes the app's grant (replacing the
    /// one it had). An app already allowed may connect again with whatever
    /// it holds, typically the spent secret of the bunker URL it was set up
    /// with (clients send it on every start): nothing is spent or changed.
    pub fn connect(
        &mut self,
        app: PublicKey,
        secret: Option<&str>,
        asked: Option<&Perms>,
        claims: Option<&str>,
        now: u64,
        limits: &Limits,
    ) -> Result<(), ConnectError> {
        self.expire_secrets(now);
        let found = secret.filter(|s| !s.is_empty()).and_then(|secret| {
            self.sessions()?
                .secrets
                .iter()
                .position(|p| bool::from(p.secret.as_bytes().ct_eq(secret.as_bytes())))
        });
        let Some(found) = found else {
            if self.allows(&app) {
                return Ok(());
            }
            return Err(match secret.filter(|s| !s.is_empty()) {
                Some(_) => ConnectError::BadSecret,
                None => ConnectError::SecretRequired,
            });
        };
        let s = self.sessions_mut();
        if !s.apps.contains_key(&app) && s.apps.len() >= limits.max_apps_per_key {
            return Err(ConnectError::TooManyApps(limits.max_apps_per_key));
        }
        let Some(pending) = s.secrets.get(found) else {
            return Err(ConnectError::BadSecret);
        };
        let offered = &pending.policy.perms;
        let narrowed = offered.narrow(asked);
        if narrowed == Perms::Listed(Vec::new()) && *offered != narrowed {
            // The secret stays usable: a mistaken request costs nothing.
            let mut shown = offered.to_string();
            shown.truncate(
                shown
                    .char_indices()
                    .nth(200)
                    .map_or(shown.len(), |(i, _)| i),
            );
            return Err(ConnectError::NothingGranted(shown));
        }
        let pending = s.secrets.remove(found);
        self.owner_changed(app, now);
        let mut granted = App::new(
            &pending.policy,
            asked,
            verifier::grant::wire::source::BUNKER_URL,
            now,
        );
        granted.set_claims(claims);
        self.sessions_mut().apps.insert(app, granted);
        Ok(())
    }

    /// The decision on `app`'s `action` at `now`; `None` if the app is
    /// not allowed at all.
    pub fn decide(&mut self, app: &PublicKey, action: &Action, now: u64) -> Option<Decision> {
        self.sessions
            .as_deref_mut()?
            .apps
            .get_mut(app)
            .map(|a| a.decide(action, now))
    }

    /// Keeps what `app` says about itself, if it is allowed.
    pub fn set_claims(&mut self, app: &PublicKey, claims: &str) {
        if let Some(a) = self
            .sessions
            .as_deref_mut()
            .and_then(|s| s.apps.get_mut(app))
        {
            a.set_claims(Some(claims));
        }
    }

    /// What nsec.app said last about `app`, taken out to be merged.
    pub(super) fn take_nsec_app(&mut self, app: &PublicKey) -> Option<AppState> {
        self.sessions.as_deref_mut()?.nsec_app.remove(app)
    }

    /// How many apps nsec.app's events are remembered for.
    pub(super) fn nsec_app_count(&self) -> usize {
        self.sessions().map_or(0, |s| s.nsec_app.len())
    }

    /// Remembers what nsec.app said about `app` (its timestamps).
    pub(super) fn keep_nsec_app(&mut self, app: PublicKey, mut state: AppState) {
        state.perms = Vec::new();
        state.info = Default::default();
        self.sessions_mut().nsec_app.insert(app, state);
    }

    /// When `app`'s grant started, if it has one.
    pub fn app_since(&self, app: &PublicKey) -> Option<u64> {
        self.app(app).map(App::since)
    }

    /// `app`'s entry, if it is allowed.
    pub fn app(&self, app: &PublicKey) -> Option<&App> {
        self.sessions()?.apps.get(app)
    }

    /// The apps and their grants.
    pub fn apps(&self) -> impl Iterator<Item = (&PublicKey, &App)> {
        self.sessions().into_iter().flat_map(|s| s.apps.iter())
    }

    /// The memory counted for its apps' grants and pending secrets.
    pub fn grant_bytes(&self) -> usize {
        let Some(s) = self.sessions() else {
            return 0;
        };
        (s.nsec_app.len() + s.owner_at.len()) * TRACKED_BYTES
            + s.apps.values().map(App::bytes).sum::<usize>()
            + s.secrets
                .iter()
                .map(|p| Pending::bytes_of(&p.policy))
                .sum::<usize>()
    }

    /// How much more memory granting `policy` to `app` would count.
    pub fn grant_cost(&self, app: &PublicKey, policy: &Policy) -> usize {
        let now = self.app(app).map_or(0, App::bytes);
        App::bytes_of(policy).saturating_sub(now)
    }

    /// How much more memory a new secret for `policy` would count.
    pub fn secret_cost(policy: &Policy) -> usize {
        Pending::bytes_of(policy)
    }

    /// Ends `app`'s session (its `logout`, or the owner's `revoke_app`);
    /// returns whether it had one.
    pub fn logout(&mut self, app: &PublicKey, now: u64) -> bool {
        self.owner_changed(*app, now);
        self.sessions_mut().apps.remove(app).is_some()
    }

    /// Removes `app` because nsec.app said so (not an owner change here).
    pub(super) fn forget_app(&mut self, app: &PublicKey) -> bool {
        self.sessions
            .as_deref_mut()
            .is_some_and(|s| s.apps.remove(app).is_some())
    }

    fn owner_changed(&mut self, app: PublicKey, now: u64) {
        let owner_at = &mut self.sessions_mut().owner_at;
        if !owner_at.contains_key(&app) && owner_at.len() >= OWNER_CHANGES_KEPT {
            if let Some(oldest) = owner_at.iter().min_by_key(|(_, t)| **t).map(|(a, _)| *a) {
                owner_at.remove(&oldest);
            }
        }
        owner_at.insert(app, now);
    }

    /// When the owner last changed `app`'s access (unix seconds).
    pub fn owner_changed_at(&self, app: &PublicKey) -> Option<u64> {
        self.sessions()?.owner_at.get(app).copied()
    }

    /// Whether the permission event `id` was applied lately.
    pub(super) fn nsec_seen(&self, id: &[u8; 32]) -> bool {
        self.sessions().is_some_and(|s| s.nsec_seen.contains(id))
    }

    /// Remembers that the permission event `id` was applied.
    pub(super) fn nsec_applied(&mut self, id: [u8; 32]) {
        let seen = &mut self.sessions_mut().nsec_seen;
        if seen.len() >= NSEC_SEEN_KEPT {
            seen.pop_front();
        }
        seen.push_back(id);
    }

    /// Revokes every app and every pending connect secret.
    pub(super) fn revoke_all(&mut self, now: u64) {
        let apps: Vec<PublicKey> = self.apps().map(|(a, _)| *a).collect();
        for app in apps {
            self.owner_changed(app, now);
        }
        if let Some(s) = self.sessions.as_deref_mut() {
            s.apps.clear();
            s.secrets.clear();
        }
    }

    /// How many apps are allowed.
    pub fn app_count(&self) -> usize {
        self.sessions().map_or(0, |s| s.apps.len())
    }

    /// How many connect secrets are pending.
    pub fn secret_count(&self) -> usize {
        self.sessions().map_or(0, |s| s.secrets.len())
    }

    /// A fresh single-use secret, valid for `secret_ttl`, for an app to
    /// get `policy`; the oldest pending one is dropped when there are too
    /// many.
    pub fn new_secret(&mut self, now: u64, limits: &Limits, policy: Policy) -> Zeroizing<String> {
        let secret = verifier::rpc::bunker::new_secret();
        let secrets = &mut self.sessions_mut().secrets;
        while !secrets.is_empty() && secrets.len() >= limits.max_secrets_per_key.max(1) {
            secrets.remove(0);
        }
        secrets.push(Pending {
            secret: secret.clone(),
            until: now + limits.secret_ttl,
            policy,
        });
        secret
    }

    pub(super) fn expire_secrets(&mut self, now: u64) {
        if let Some(s) = self.sessions.as_deref_mut() {
            s.secrets.retain(|p| p.until > now);
        }
    }
}
