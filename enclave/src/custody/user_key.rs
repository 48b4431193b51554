//! One user key and who may use it: its apps, each with a grant, and its
//! pending bunker secrets, each with the policy it hands out.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use nostr::{Keys, PublicKey, RelayUrl, SecretKey};
use subtle::ConstantTimeEq;
use verifier::grant::{Action, Decision, Perms, Policy};
use zeroize::Zeroizing;

use super::apps::{App, ConnectError, Granted, Pending};
use super::grant_memory::Memory;
use super::relay_lists::RelayList;

mod changes;
mod nsec;
mod record;

use super::Limits;
use nsec::NsecRecord;

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
    /// A test key's expiry, or an owned key's import and last use.
    life: Life,
    /// Its apps and what goes with them, once it has any: most held keys
    /// are imported and wait, and a key costs less without (memory per
    /// key is what bounds how many an enclave holds).
    sessions: Option<Box<Sessions>>,
}

/// Whose a key is, and so how it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    /// A throw-away test key, deleted at this time.
    Test {
        /// Unix seconds.
        expires_at: u64,
    },
    /// Imported by its owner: deleted only by the owner, or when it has
    /// no apps and no pending secrets and is idle (see `super::lifecycle`).
    Owned {
        /// When it was first imported (or a test key became the owner's).
        imported: u64,
        /// Its owner's last admin request, or its apps' last request (or
        /// the import).
        last_used: u64,
    },
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
    nsec_app: HashMap<PublicKey, NsecRecord>,
    /// When the owner last changed each app's access (a grant, a spent
    /// bunker secret, a revoke), so an older nsec.app event cannot undo
    /// it; at most [`changes::OWNER_CHANGES_KEPT`], the oldest forgotten first.
    owner_at: HashMap<PublicKey, u64>,
    /// The newest owner change forgotten (unix seconds): an nsec.app change
    /// no newer than it, for an app without a remembered owner change, is
    /// taken to be older than the owner's and does not apply.
    owner_floor: u64,
    /// The newest nsec.app timestamp of a state forgotten (ms; for memory,
    /// see `super::nsec_store`): an event for an app without a remembered
    /// state, no newer than it, may be older than what was forgotten and is
    /// not applied.
    nsec_floor: u64,
    /// How the last few bunker secrets ended (a fingerprint of each), so an
    /// app that brings one back is told it was used or expired rather than
    /// wrong; at most [`ENDED_SECRETS_KEPT`], the oldest forgotten first.
    ended_secrets: VecDeque<([u8; 8], SecretEnd)>,
}

/// How many ended bunker secrets a key remembers (a fixed part of its
/// bookkeeping, about 100 bytes).
pub(super) const ENDED_SECRETS_KEPT: usize = 4;

/// How a bunker secret ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretEnd {
    Spent,
    Expired,
    Dropped,
}

/// What identifies a secret among the few a key remembers: not enough of
/// it to connect with (8 bytes of its SHA-256).
fn fingerprint(secret: &str) -> [u8; 8] {
    use sha2::Digest;
    let digest: [u8; 32] = sha2::Sha256::digest(secret.as_bytes()).into();
    let mut out = [0; 8];
    for (o, d) in out.iter_mut().zip(digest) {
        *o = d;
    }
    out
}

/// What one remembered nsec.app state or owner change is counted at: its
/// key, its record and the map's spare room (a map of 64 entries has 128
/// buckets).
pub(super) const TRACKED_BYTES: usize = 128;

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
            .field("life", &self.life)
            .finish()
    }
}

impl UserKey {
    /// A key on `relays`: a test key if it `expires_at`, else its
    /// owner's, imported at `now`.
    pub(super) fn new(
        secret: SecretKey,
        relays: RelayList,
        expires_at: Option<u64>,
        now: u64,
    ) -> Self {
        let life = match expires_at {
            Some(expires_at) => Life::Test { expires_at },
            None => Life::Owned {
                imported: now,
                last_used: now,
            },
        };
        Self {
            secret: Box::new(secret),
            relays,
            life,
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
        match self.life {
            Life::Test { expires_at } => Some(expires_at),
            Life::Owned { .. } => None,
        }
    }

    /// An owned key's import and last use (unix seconds); `None` for test keys.
    pub fn used(&self) -> Option<(u64, u64)> {
        match self.life {
            Life::Test { .. } => None,
            Life::Owned {
                imported,
                last_used,
            } => Some((imported, last_used)),
        }
    }

    /// Its owner, or one of its apps, made a request at `now`.
    pub(super) fn touch(&mut self, now: u64) {
        if let Life::Owned { last_used, .. } = &mut self.life {
            *last_used = (*last_used).max(now);
        }
    }

    /// Imported by its owner at `now`: no longer a throw-away key.
    pub(super) fn keep(&mut self, now: u64) {
        if let Life::Test { .. } = self.life {
            self.life = Life::Owned {
                imported: now,
                last_used: now,
            };
        }
    }

    /// How many of its apps the owner granted through the admin API (a
    /// bunker URL, `grant`, `connect_key`, `nostrconnect`), each paid for:
    /// nsec.app's grants, which cost nothing, are not among them.
    pub fn owner_apps(&self) -> usize {
        self.apps()
            .filter(|(_, a)| a.source() != verifier::grant::wire::source::NSEC_APP)
            .count()
    }

    /// Whether what its owner paid for keeps it: an app the owner granted,
    /// or a pending bunker secret (what the idle and displacement rules
    /// look at, `super::lifecycle`).
    pub fn kept_by_owner(&self) -> bool {
        self.owner_apps() > 0 || self.secret_count() > 0
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
        self.grant_with(app, Granted::new(policy, source), now, limits)
    }

    /// Gives `app` what `granted` says from `now`, replacing the grant it
    /// had (and the relays it had added).
    pub fn grant_with(
        &mut self,
        app: PublicKey,
        granted: Granted<'_>,
        now: u64,
        limits: &Limits,
    ) -> Result<(), ConnectError> {
        let s = self.sessions_mut();
        if !s.apps.contains_key(&app) && s.apps.len() >= limits.max_apps_per_key {
            return Err(ConnectError::TooManyApps(limits.max_apps_per_key));
        }
        if granted.source != verifier::grant::wire::source::NSEC_APP {
            self.owner_changed(app, now);
        }
        let s = self.sessions_mut();
        let entry = s
            .apps
            .entry(app)
            .or_insert_with(|| App::new(granted.policy, granted.asked, granted.source, now));
        entry.replace(granted.policy, granted.asked, granted.source, now);
        if let Some(added) = granted.added {
            entry.set_added_relays(added);
        }
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
                Some(secret) => self.ended(secret),
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
        remember_end(s, &pending.secret, SecretEnd::Spent);
        self.owner_changed(app, now);
        let mut granted = App::new(
            &pending.policy,
            asked,
            verifier::grant::wire::source::BUNKER_URL,
            now,
        );
        granted.set_claims(claims);
        let s = self.sessions_mut();
        // The relays it had added for itself stay with it (and go with it).
        if let Some(added) = s.apps.get(&app).map(|a| a.added_relays().to_vec()) {
            granted.set_added_relays(added);
        }
        s.apps.insert(app, granted);
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

    /// The memory counted for its apps' grants, pending secrets and the
    /// changes it remembers, by class.
    pub fn memory(&self) -> Memory {
        let Some(s) = self.sessions() else {
            return Memory::default();
        };
        let mut memory = Memory {
            owner: s.owner_at.len() * TRACKED_BYTES
                + s.secrets
                    .iter()
                    .map(|p| Pending::bytes_of(&p.policy))
                    .sum::<usize>(),
            event: s.nsec_app.len() * TRACKED_BYTES,
        };
        for app in s.apps.values() {
            if app.source() == verifier::grant::wire::source::NSEC_APP {
                memory.event += app.bytes();
            } else {
                memory.owner += app.bytes();
            }
        }
        memory
    }

    /// The memory counted for its apps' grants and pending secrets.
    pub fn grant_bytes(&self) -> usize {
        self.memory().total()
    }

    /// How much more owner memory granting `policy` to `app` would count
    /// (with `relays` added for it).
    pub fn grant_cost(&self, app: &PublicKey, policy: &Policy, relays: usize) -> usize {
        let now = self
            .app(app)
            .filter(|a| a.source() != verifier::grant::wire::source::NSEC_APP)
            .map_or(0, App::bytes);
        let record = if self.has_owner_change(app) {
            0
        } else {
            TRACKED_BYTES
        };
        (App::bytes_of(policy) + relays * super::apps::RELAY_BYTES + record).saturating_sub(now)
    }

    /// How much more memory a new secret for `policy` would count.
    pub fn secret_cost(policy: &Policy) -> usize {
        Pending::bytes_of(policy)
    }

    /// Ends `app`'s session (its `logout`, or the owner's `revoke_app`);
    /// returns what it had. A change is remembered only for an app that
    /// had a grant, not for any key a request names.
    pub(super) fn logout(&mut self, app: &PublicKey, now: u64) -> Option<App> {
        let s = self.sessions.as_deref_mut()?;
        let had = s.apps.remove(app);
        // Only for an app that had a grant: an older nsec.app event must
        // not give it back. Nothing is remembered for an app with none,
        // or anyone could grow the owner's memory by revoking made-up apps
        // (an older nsec.app event cannot grant it past nsec.app's own
        // state anyway).
        if let Some(gone) = &had {
            self.owner_ended(*app, gone.source(), now);
        }
        had
    }

    /// Removes `app` because nsec.app said so (not an owner change here).
    pub(super) fn forget_app(&mut self, app: &PublicKey) -> Option<App> {
        self.sessions.as_deref_mut()?.apps.remove(app)
    }

    /// The owner now lists `relays` as the key's own: no app added them.
    pub(super) fn claim_relays(&mut self, relays: &[RelayUrl]) {
        if let Some(s) = self.sessions.as_deref_mut() {
            for app in s.apps.values_mut() {
                if app.added_relays().iter().any(|r| relays.contains(r)) {
                    let kept = app
                        .added_relays()
                        .iter()
                        .filter(|r| !relays.contains(r))
                        .cloned()
                        .collect();
                    app.set_added_relays(kept);
                }
            }
        }
    }

    /// Revokes every app and every pending connect secret.
    pub(super) fn revoke_all(&mut self, now: u64) {
        let apps: Vec<(PublicKey, &'static str)> =
            self.apps().map(|(a, app)| (*a, app.source())).collect();
        for (app, source) in apps {
            self.owner_ended(app, source, now);
        }
        if let Some(s) = self.sessions.as_deref_mut() {
            s.apps.clear();
            for pending in std::mem::take(&mut s.secrets) {
                remember_end(s, &pending.secret, SecretEnd::Dropped);
            }
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
        // Expired ones end as expired, not as replaced by this one.
        self.expire_secrets(now);
        let s = self.sessions_mut();
        while !s.secrets.is_empty() && s.secrets.len() >= limits.max_secrets_per_key.max(1) {
            let oldest = s.secrets.remove(0);
            remember_end(s, &oldest.secret, SecretEnd::Dropped);
        }
        s.secrets.push(Pending {
            secret: secret.clone(),
            until: now + limits.secret_ttl,
            policy,
        });
        secret
    }

    pub(super) fn expire_secrets(&mut self, now: u64) {
        if let Some(s) = self
            .sessions
            .as_deref_mut()
            .filter(|s| s.secrets.iter().any(|p| p.until <= now))
        {
            let (live, gone): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut s.secrets)
                .into_iter()
                .partition(|p| p.until > now);
            s.secrets = live;
            for pending in gone {
                remember_end(s, &pending.secret, SecretEnd::Expired);
            }
        }
    }

    /// Why `secret`, which is not pending, does not connect.
    fn ended(&self, secret: &str) -> ConnectError {
        let print = fingerprint(secret);
        let end = self
            .sessions()
            .and_then(|s| s.ended_secrets.iter().find(|(f, _)| *f == print))
            .map(|(_, end)| *end);
        match end {
            Some(SecretEnd::Spent) => ConnectError::SecretSpent,
            Some(SecretEnd::Expired) => ConnectError::SecretExpired,
            Some(SecretEnd::Dropped) => ConnectError::SecretDropped,
            None => ConnectError::BadSecret,
        }
    }
}

fn remember_end(s: &mut Sessions, secret: &str, end: SecretEnd) {
    if s.ended_secrets.len() >= ENDED_SECRETS_KEPT {
        s.ended_secrets.pop_front();
    }
    s.ended_secrets.push_back((fingerprint(secret), end));
}
