//! The apps allowed on a key, each with its grant, and the pending bunker
//! secrets, each with the policy the app that spends it gets; what an app is
//! given, and why a `connect` is refused.

use std::fmt;

use nostr::{PublicKey, RelayUrl};
use verifier::grant::perms::MAX_PERMS;
use verifier::grant::wire::{source, AppView};
use verifier::grant::{Action, Decision, Grant, Method, Perm, Perms, Policy};
use verifier::state::record::{AppRecord, Key};
use zeroize::Zeroizing;

/// Longest app metadata kept (what the app claims in `connect`).
pub const MAX_CLAIMS: usize = 256;

/// What an app costs besides its policy: the map entry, the grant's state,
/// its claims (counted at their cap).
const APP_BYTES: usize = 256 + MAX_CLAIMS;

/// What a relay an app added to its key (a nostrconnect:// app's) is
/// counted at: a parsed URL of at most `verifier::rpc::relays::MAX_RELAY_URL`
/// bytes.
pub const RELAY_BYTES: usize = 128 + verifier::rpc::relays::MAX_RELAY_URL;

/// The memory a grant of `policy` may come to hold, counted when it is
/// given: its perms and the rate log its largest bucket needs.
pub fn policy_bytes(policy: &Policy, perms: usize) -> usize {
    let log = policy
        .rates
        .buckets()
        .iter()
        .map(|r| r.count as usize)
        .max()
        .unwrap_or(0);
    128 + perms * size_of::<Perm>() + log * size_of::<u64>()
}

fn perms_len(perms: &Perms) -> usize {
    match perms {
        Perms::Full => 0,
        Perms::Listed(p) => p.len(),
    }
}

/// An app allowed on a key.
#[derive(Debug, Clone)]
pub struct App {
    grant: Grant,
    source: &'static str,
    since: u64,
    last: Option<(u64, Method)>,
    claims: Option<String>,
    /// The relays the key listens on for this app only (a nostrconnect://
    /// app's, not the owner's): they go when it goes.
    added: Vec<RelayUrl>,
}

impl App {
    /// An app granted `policy` (narrowed by what it `asked`) from `now`.
    pub fn new(policy: &Policy, asked: Option<&Perms>, source: &'static str, now: u64) -> Self {
        Self {
            grant: Grant::new(policy, asked, now),
            source,
            since: now,
            last: None,
            claims: None,
            added: Vec::new(),
        }
    }

    /// A test key's app: full access.
    pub fn full(now: u64) -> Self {
        Self::new(&Policy::full(), None, source::BUNKER_URL, now)
    }

    /// Keeps what the app says about itself, capped, for display only.
    pub fn set_claims(&mut self, claims: Option<&str>) {
        self.claims = claims.filter(|c| !c.is_empty()).map(|c| {
            let mut end = c.len().min(MAX_CLAIMS);
            while !c.is_char_boundary(end) {
                end -= 1;
            }
            c.get(..end).unwrap_or_default().to_owned()
        });
    }

    /// The owner's new policy (narrowed by what the app `asked`), from
    /// `now`: the rate history is kept.
    pub fn replace(
        &mut self,
        policy: &Policy,
        asked: Option<&Perms>,
        source: &'static str,
        now: u64,
    ) {
        self.grant.replace_narrowed(policy, asked, now);
        self.source = source;
        self.since = now;
    }

    /// The relays the key listens on for this app only.
    pub fn added_relays(&self) -> &[RelayUrl] {
        &self.added
    }

    /// Records the relays the key listens on for this app only.
    pub(super) fn set_added_relays(&mut self, relays: Vec<RelayUrl>) {
        self.added = relays;
    }

    /// The decision on `action` at `now`.
    pub fn decide(&mut self, action: &Action, now: u64) -> Decision {
        self.last = Some((now, action.method));
        self.grant.decide(action, now)
    }

    /// Where the grant came from.
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// When the grant started.
    pub fn since(&self) -> u64 {
        self.since
    }

    /// The grant in force.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// The memory counted for this app.
    pub fn bytes(&self) -> usize {
        Self::bytes_of(self.grant.policy()) + self.added.len() * RELAY_BYTES
    }

    /// The memory an app granted `policy` is counted at.
    pub fn bytes_of(policy: &Policy) -> usize {
        APP_BYTES + policy_bytes(policy, perms_len(&policy.perms))
    }

    /// As `list_apps` reports it.
    pub fn view(&self, app: &PublicKey) -> AppView {
        AppView {
            app: app.to_hex(),
            source: self.source.to_owned(),
            policy: self.grant.policy().to_json(),
            used: self.grant.used(),
            since: self.since,
            last_request: self.last.map(|(t, m)| (t, m.as_str().to_owned())),
            claims: self.claims.clone(),
        }
    }
}

impl App {
    /// The app as sealed state keeps it.
    pub(super) fn to_record(&self, app: &PublicKey) -> AppRecord {
        AppRecord {
            app: Key(app.to_bytes()),
            grant: self.grant.to_record(),
            source: self.source.to_owned(),
            since: self.since,
            last: self.last.map(|(t, m)| (t, m.as_str().to_owned())),
            claims: self.claims.clone(),
            added: self.added.iter().map(|r| r.to_string()).collect(),
        }
    }

    /// The app a record keeps, and its public key.
    pub(super) fn from_record(record: &AppRecord) -> Result<(PublicKey, Self), String> {
        let app = PublicKey::from_slice(&record.app.0).map_err(|e| format!("an app: {e}"))?;
        let source = source::ALL
            .into_iter()
            .find(|s| *s == record.source)
            .ok_or_else(|| format!("an app's grant came from {:?}", record.source))?;
        let last = match &record.last {
            None => None,
            Some((t, m)) => Some((
                *t,
                Method::from_name(m).ok_or_else(|| format!("an app's last method {m:?}"))?,
            )),
        };
        let added = record
            .added
            .iter()
            .map(|r| RelayUrl::parse(r).map_err(|e| format!("an app's relay {r:?}: {e}")))
            .collect::<Result<_, _>>()?;
        let mut restored = Self {
            grant: Grant::from_record(&record.grant)?,
            source,
            since: record.since,
            last,
            claims: None,
            added,
        };
        restored.set_claims(record.claims.as_deref());
        Ok((app, restored))
    }
}

/// A pending single-use connect secret.
pub(super) struct Pending {
    pub(super) secret: Zeroizing<String>,
    pub(super) until: u64,
    pub(super) policy: Policy,
}

impl Pending {
    /// The memory counted for a secret of `policy`: the app it becomes,
    /// whatever perms its connect narrows it to (at most `MAX_PERMS`), and
    /// the owner change its connect remembers.
    pub(super) fn bytes_of(policy: &Policy) -> usize {
        64 + super::user_key::TRACKED_BYTES
            + APP_BYTES
            + policy_bytes(policy, MAX_PERMS.max(perms_len(&policy.perms)))
    }
}

/// What an app is given: a policy, narrowed by what it asked for, from
/// one source, with the relays the key listens on for it alone.
#[derive(Debug)]
pub struct Granted<'a> {
    /// The owner's (or nsec.app's) policy.
    pub policy: &'a Policy,
    /// What the app asked for (its perms), which narrows the policy.
    pub asked: Option<&'a Perms>,
    /// Where it came from (`verifier::grant::wire::source`).
    pub source: &'static str,
    /// Relays added to the key for this app only (`None`: those it had).
    pub added: Option<Vec<RelayUrl>>,
}

impl<'a> Granted<'a> {
    /// `policy` from `source`, as it is.
    pub fn new(policy: &'a Policy, source: &'static str) -> Self {
        Self {
            policy,
            asked: None,
            source,
            added: None,
        }
    }
}

/// Why `connect` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The secret is not one of the pending ones, nor one the key
    /// remembers ending.
    BadSecret,
    /// The secret was spent by an app's connect.
    SecretSpent,
    /// The secret expired unused.
    SecretExpired,
    /// The owner revoked it, or newer secrets replaced it.
    SecretDropped,
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
            Self::SecretSpent => f.write_str(
                "connect: this bunker URL's secret was already used by an app's connect; ask the key's owner for a new bunker URL",
            ),
            Self::SecretExpired => f.write_str(
                "connect: this bunker URL's secret expired unused (a bunker URL lasts a day); ask the key's owner for a new one",
            ),
            Self::SecretDropped => f.write_str(
                "connect: this bunker URL's secret was revoked by the key's owner or replaced by newer ones; ask for a new bunker URL",
            ),
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
