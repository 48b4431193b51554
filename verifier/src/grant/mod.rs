//! The grant model: what an app connected to a key may do, for how long
//! and how often. One home for the client (`verifier key`, which writes
//! grants) and the enclave (which enforces them on every request).
//!
//! A [`Policy`] is what the key's owner grants: [`Perms`] in NIP-46's
//! `perms` syntax, and conditions:
//!
//! - an expiry, absolute or as a TTL counted from when the grant starts
//!   (the `connect` that spends a bunker URL, or the owner's `grant`);
//! - a total number of uses;
//! - rate limits, any number of `N per window` buckets
//!   ([`rate::DEFAULT_RATES`] for every grant but `full` unless the owner
//!   says otherwise, `none` included);
//! - a `created_at` window for `sign_event` (±10 minutes of the enclave's
//!   clock by default for every grant but `full`), so a captured agent
//!   cannot back- or forward-date what it signs.
//!
//! Uses and rate limits count signing and decryption requests
//! ([`Method::is_counted`]); refused requests are not counted.
//!
//! A [`Grant`] is a policy in force for one app: its expiry resolved, its
//! uses and rate log kept. [`Grant::decide`] answers each request with a
//! [`Decision`]. The checks run in this order: expiry, permission,
//! `created_at` window, uses, rate.
//!
//! One permission rule is not in the perms alone: `nip04_decrypt` from a
//! peer the grant does not name needs the owner's full access (a `full`
//! policy, which the app may have narrowed when it connected). NIP-04 has
//! no MAC, so an app that may decrypt NIP-04 from any peer can cut and
//! mask ciphertexts block by block (`crate::rpc::isolation`); an owner
//! who scopes a grant scopes that too.

pub mod decision;
pub mod duration;
pub mod nsecapp;
pub mod perms;
pub mod rate;
pub mod record;
pub mod wire;
mod words;

pub use decision::{Action, Decision, Refusal};
pub use perms::{Method, Perm, Perms};
pub use rate::{Rate, RateLog, Rates};

/// The default `created_at` window of scoped grants: ±10 minutes.
pub const DEFAULT_WINDOW: u64 = 600;

/// When a grant ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expiry {
    /// At this unix time.
    At(u64),
    /// This many seconds after the grant starts.
    After(u64),
}

/// What an owner grants an app.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Policy {
    /// Methods and kinds.
    pub perms: Perms,
    /// When it ends; `None`: never (until revoked).
    pub expiry: Option<Expiry>,
    /// Most signing and decryption requests in all; `None`: no cap.
    pub uses: Option<u64>,
    /// Rate limits (empty: none).
    pub rates: Rates,
    /// Largest distance of a signed event's `created_at` from the
    /// enclave's clock, in seconds; `None`: any.
    pub window: Option<u64>,
}

impl Policy {
    /// `perms` with the default conditions: for `full`, none; for every
    /// other grant, [`rate::DEFAULT_RATES`] and a ±10 minute window.
    pub fn new(perms: Perms) -> Self {
        let scoped = !perms.is_full();
        Self {
            rates: default_rates(&perms),
            window: scoped.then_some(DEFAULT_WINDOW),
            perms,
            expiry: None,
            uses: None,
        }
    }

    /// Full access with no conditions: the original's `connect_key`.
    pub fn full() -> Self {
        Self::new(Perms::Full)
    }

    /// Whether the policy can start at `now`: an absolute expiry must be
    /// in the future.
    pub fn check_at(&self, now: u64) -> Result<(), String> {
        match self.expiry {
            Some(Expiry::At(at)) if at <= now => Err(format!(
                "the policy expired already, at {}",
                decision::utc(at)
            )),
            _ => Ok(()),
        }
    }

    /// This policy in words, for people: what, until when, how often. A
    /// lifetime not yet started (a bunker secret's) runs from when the app
    /// connects.
    pub fn describe(&self, now: u64) -> String {
        words::describe_policy(self, now)
    }

    /// The policy as a grant given at `now` holds it: a lifetime then
    /// becomes an end time (`key grant`, `connect`, `nostrconnect` start
    /// their grant when the enclave takes them, not later).
    pub fn started(&self, now: u64) -> Self {
        let mut started = self.clone();
        if let Some(Expiry::After(ttl)) = started.expiry {
            started.expiry = Some(Expiry::At(now.saturating_add(ttl)));
        }
        started
    }
}

/// The rates a grant of `perms` gets when its owner names none.
pub fn default_rates(perms: &Perms) -> Rates {
    if perms.is_full() {
        Rates::none()
    } else {
        Rates::default_scoped()
    }
}

/// A policy in force for one app.
#[derive(Debug, Clone)]
pub struct Grant {
    policy: Policy,
    /// The resolved expiry.
    expires_at: Option<u64>,
    /// The owner's policy was full access (before the app narrowed it).
    owner_full: bool,
    used: u64,
    log: RateLog,
}

impl Grant {
    /// `policy`, narrowed to what the app `asked` for (its `connect`
    /// perms), starting at `now`.
    pub fn new(policy: &Policy, asked: Option<&Perms>, now: u64) -> Self {
        let owner_full = policy.perms.is_full();
        let mut policy = policy.clone();
        policy.perms = policy.perms.narrow(asked);
        let expires_at = policy.expiry.map(|e| match e {
            Expiry::At(at) => at,
            Expiry::After(ttl) => now.saturating_add(ttl),
        });
        policy.expiry = expires_at.map(Expiry::At);
        Self {
            policy,
            expires_at,
            owner_full,
            used: 0,
            log: RateLog::default(),
        }
    }

    /// Full access, for ever: throw-away test keys and `connect_key`
    /// without a policy.
    pub fn full() -> Self {
        Self::new(&Policy::full(), None, 0)
    }

    /// Replaces the policy (the owner's `grant`) from `now`: uses start
    /// again, the rate log is kept.
    pub fn replace(&mut self, policy: &Policy, now: u64) {
        self.replace_narrowed(policy, None, now);
    }

    /// Like [`Self::replace`], narrowed to what the app `asked` for.
    pub fn replace_narrowed(&mut self, policy: &Policy, asked: Option<&Perms>, now: u64) {
        let log = std::mem::take(&mut self.log);
        *self = Self::new(policy, asked, now);
        self.log = log;
    }

    /// The policy in force, its expiry absolute.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Signing and decryption requests allowed so far.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Whether the grant expired by `now`.
    pub fn expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether the grant names `action` (its perms, and NIP-04's rule),
    /// whatever its conditions say.
    pub fn names(&self, action: &Action) -> bool {
        self.permission(action).is_ok()
    }

    fn permission(&self, action: &Action) -> Result<(), Refusal> {
        let (method, peer) = (action.method, action.peer.as_ref());
        if !self.policy.perms.allows(method, action.kind, peer) {
            return Err(Refusal::NotGranted);
        }
        if method == Method::Nip04Decrypt
            && !self.owner_full
            && !self.policy.perms.names_peer(method, peer)
        {
            return Err(Refusal::Nip04NeedsPeer);
        }
        Ok(())
    }

    /// The decision on `action` at `now`; an allowed counted request is
    /// counted.
    pub fn decide(&mut self, action: &Action, now: u64) -> Decision {
        match self.check(action, now) {
            Ok(()) => Decision::Allowed,
            Err(refusal) => Decision::Refused(refusal),
        }
    }

    fn check(&mut self, action: &Action, now: u64) -> Result<(), Refusal> {
        let method = action.method;
        if method == Method::Logout {
            return Ok(());
        }
        if let Some(at) = self.expires_at.filter(|at| *at <= now) {
            return Err(Refusal::Expired { at });
        }
        self.permission(action)?;
        if let (Some(window), Some(created)) = (self.policy.window, action.created_at) {
            let offset = i128::from(created) - i128::from(now);
            if offset.unsigned_abs() > u128::from(window) {
                let offset = i64::try_from(offset).unwrap_or(i64::MAX);
                return Err(Refusal::CreatedAtOutOfWindow { window, offset });
            }
        }
        if !method.is_counted() {
            return Ok(());
        }
        if let Some(uses) = self.policy.uses.filter(|u| self.used >= *u) {
            return Err(Refusal::UsedUp { uses });
        }
        self.log
            .admit(&self.policy.rates, now)
            .map_err(|l| Refusal::RateLimited {
                rate: l.rate,
                retry_in: l.retry_in,
            })?;
        self.used += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
