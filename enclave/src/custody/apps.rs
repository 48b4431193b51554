//! The apps allowed on a key, each with its grant, and the pending bunker
//! secrets, each with the policy the app that spends it gets.

use nostr::PublicKey;
use verifier::grant::perms::MAX_PERMS;
use verifier::grant::wire::{source, AppView};
use verifier::grant::{Action, Decision, Grant, Method, Perm, Perms, Policy};
use zeroize::Zeroizing;

/// Longest app metadata kept (what the app claims in `connect`).
pub const MAX_CLAIMS: usize = 256;

/// What an app costs besides its policy: the map entry, the grant's state,
/// its claims (counted at their cap).
const APP_BYTES: usize = 256 + MAX_CLAIMS;

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

    /// The owner's new policy, from `now`.
    pub fn replace(&mut self, policy: &Policy, source: &'static str, now: u64) {
        self.grant.replace(policy, now);
        self.source = source;
        self.since = now;
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
        Self::bytes_of(self.grant.policy())
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

/// A pending single-use connect secret.
pub(super) struct Pending {
    pub(super) secret: Zeroizing<String>,
    pub(super) until: u64,
    pub(super) policy: Policy,
}

impl Pending {
    /// The memory counted for a secret of `policy`: the app it becomes,
    /// whatever perms its connect narrows it to (at most `MAX_PERMS`).
    pub(super) fn bytes_of(policy: &Policy) -> usize {
        64 + APP_BYTES + policy_bytes(policy, MAX_PERMS.max(perms_len(&policy.perms)))
    }
}
