//! The request handler: one incoming event in, at most one reply event
//! out. Requests are kind 24135 to the service key (the admin API,
//! [`admin`]) or kind 24133 to a held user key (NIP-46, [`nip46`]). Kind
//! 30078 events by a held key are its nsec.app permissions
//! ([`permissions`]): merged into its grants, never answered.
//!
//! Events are checked in this order, and dropped silently when a check
//! fails, since there is no one to answer or nothing readable to answer:
//! kind, size (before anything is decrypted), age, author (the enclave's
//! own keys never make requests), signature, first time seen, addressee,
//! decryption, a request (an id and a method: a response is never
//! answered). Every request gets a reply: unknown methods, bad parameters,
//! unauthorized apps and refusals of the isolation rule
//! (`verifier::rpc::isolation`) get an error reply, and so does a request
//! whose reply would be too large to seal. Replies are encrypted in the
//! scheme of the request.
//!
//! The handler does no I/O; [`crate::serve`] delivers events to it and its
//! replies to relays.

pub mod admin;
pub mod custody;
mod dropped;
pub mod grants;
pub mod nip46;
pub mod nostrconnect;
pub mod permissions;
pub mod seen;
pub mod template;

use std::sync::{Mutex, MutexGuard};

use nostr::{Event, EventBuilder, Keys, PublicKey, RelayUrl, Tag};
use tracing::debug;
use verifier::event::{KIND_ADMIN, KIND_CUSTODY, KIND_NIP46};
use verifier::grant::nsecapp::KIND_APP_DATA;
use verifier::rpc::admission::pow_bits;
use verifier::rpc::cipher::{Conversation, Scheme};
use verifier::rpc::isolation::{ProtocolKeys, ADMIN_NEEDS_NIP44};
use verifier::rpc::message::{Malformed, MAX_REQUEST_EVENT};
use verifier::rpc::{Request, Response};

use crate::continuity::client::CustodyClient;
use crate::custody::{signing_keys, KeyStore, Limits, UserKey};
pub use dropped::Dropped;
use seen::{NotNew, Seen};

/// Settings of the handler.
#[derive(Debug, Clone)]
pub struct SignerConfig {
    /// Key limits.
    pub limits: Limits,
    /// Largest request event, in bytes of content and tags, before decryption.
    pub max_request_bytes: usize,
    /// Oldest request handled, in seconds before now.
    pub max_request_age: u64,
    /// Furthest a request's created_at may be ahead of our clock.
    pub max_clock_skew: u64,
    /// Most request ids remembered for deduplication.
    pub max_seen: usize,
    /// Where every owned key's nsec.app permission events are read too.
    pub perm_relays: Vec<RelayUrl>,
    /// Keep other enclaves' state keys (a custodian); `None`: custody
    /// requests are refused.
    pub custody: Option<custody::CustodyConfig>,
}

impl Default for SignerConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_request_age: 300,
            max_clock_skew: 300,
            max_seen: 200_000,
            perm_relays: Vec::new(),
            custody: None,
        }
    }
}

/// The default cap on a request event's content and tags: room for the
/// largest NIP-44 payload (a 65,535-byte plaintext, 87,472 base64
/// characters) and its tags.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = verifier::rpc::nip44::MAX_ENCODED + 4096;

/// A reply to publish.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The signed kind 24133/24135 event.
    pub event: Event,
    /// Where to send it: the relay the request came from and the relays
    /// the answering key listens on.
    pub relays: Vec<RelayUrl>,
}

/// What handling one event produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The reply, if the event was a request.
    pub reply: Option<Reply>,
    /// Whether the held keys or their relays changed.
    pub change: Change,
    /// Another event the request makes the enclave send (a nostrconnect
    /// app's `connect` response), after the reply's relays are ready.
    pub also: Option<Reply>,
    /// The request changed what must outlive a restart (an owner's change,
    /// a spent bunker secret, a logout): with continuity, its reply waits
    /// for a commit.
    pub durable: bool,
    /// The request deleted a key: the commit replaces the state key.
    pub forgets: bool,
    /// What goes instead when no commit comes.
    pub unconfirmed: Option<Reply>,
}

/// The error an owner gets when a change was applied but no quorum of
/// custodians confirmed it: it may be lost if the enclave restarts now.
pub const UNCONFIRMED: &str = "applied, but this enclave's custodians have not confirmed it yet: it may be lost if the enclave restarts now; send the request again to confirm it";

/// How a request changed the held keys.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing the subscriptions follow.
    #[default]
    None,
    /// Keys or their relays changed: subscriptions must be updated, and
    /// the reply waits (bounded) until these relays, the changed key's,
    /// acknowledge them.
    Keys(Vec<RelayUrl>),
}

impl Change {
    /// The change of an import: if it `moved` the key onto `relays` (or
    /// made it there), those relays; else none.
    pub fn moved(moved: bool, relays: Vec<RelayUrl>) -> Self {
        if moved {
            Self::Keys(relays)
        } else {
            Self::None
        }
    }

    /// Subscriptions must be updated if `changed` (relays were dropped:
    /// nothing to wait for).
    pub fn synced(changed: bool) -> Self {
        if changed {
            Self::Keys(Vec::new())
        } else {
            Self::None
        }
    }

    /// Whether subscriptions must be updated.
    pub fn keys_changed(&self) -> bool {
        matches!(self, Self::Keys(_))
    }
}

/// The request handler, shared by all relay connections.
pub struct Signer {
    service: Keys,
    admin_relay: RelayUrl,
    config: SignerConfig,
    store: Mutex<KeyStore>,
    seen: Mutex<Seen>,
    refusal_lines: nip46::RefusalLines,
    custodian: Option<custody::Custodian>,
    custody_client: std::sync::Arc<CustodyClient>,
    /// Keys are being restored from custodians: admin requests wait.
    restoring: std::sync::atomic::AtomicBool,
    /// Requests created before this (unix seconds) are dropped: set when a
    /// restored state is installed, whose own replay cache was not kept.
    not_before: std::sync::atomic::AtomicU64,
    /// Key continuity's lease: requests are served only while it holds.
    lease: std::sync::OnceLock<crate::continuity::lease::Lease>,
    /// Changes are committed before they are acknowledged (continuity).
    commits: std::sync::atomic::AtomicBool,
}

/// The answer to an admin request while keys are being restored.
pub const RESTORING: &str =
    "this enclave is restoring its keys from its custodians; try again in a minute";

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("service", &self.service.public_key())
            .field("admin_relay", &self.admin_relay)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A handler for the service key `service`, whose admin API listens on `admin_relay`.
    pub fn new(service: Keys, admin_relay: RelayUrl, config: SignerConfig) -> Self {
        let seen = Seen::new(config.max_request_age, config.max_seen);
        let mut store = KeyStore::new(config.limits.clone());
        store.set_perm_relays(config.perm_relays.clone());
        store.set_admin_relay(admin_relay.clone());
        Self {
            store: Mutex::new(store),
            seen: Mutex::new(seen),
            refusal_lines: nip46::RefusalLines::default(),
            custodian: config.custody.clone().map(custody::Custodian::new),
            custody_client: std::sync::Arc::new(CustodyClient::new(service.clone())),
            restoring: std::sync::atomic::AtomicBool::new(false),
            not_before: std::sync::atomic::AtomicU64::new(0),
            lease: std::sync::OnceLock::new(),
            commits: std::sync::atomic::AtomicBool::new(false),
            service,
            admin_relay,
            config,
        }
    }

    /// The service public key.
    pub fn service_key(&self) -> PublicKey {
        self.service.public_key()
    }

    /// This enclave's custody requests to its custodians, whose replies
    /// the signer hands it.
    pub fn custody_client(&self) -> &std::sync::Arc<CustodyClient> {
        &self.custody_client
    }

    /// Where the admin API listens.
    pub fn admin_relay(&self) -> &RelayUrl {
        &self.admin_relay
    }

    /// Replaces the (empty) store with a restored one, before anything is
    /// served; the keys' relays come back as changes for the
    /// subscriptions.
    pub fn install(&self, store: KeyStore) {
        *self.store() = store;
        // The restored state does not carry the ids of the requests that
        // made it: requests from before now are refused, so that none of
        // them can be replayed to undo a later change (a revoke, a delete).
        self.not_before
            .store(crate::unix_now(), std::sync::atomic::Ordering::SeqCst);
    }

    /// Changes are committed before they are acknowledged from now on:
    /// each change's reply gets an "unconfirmed" alternative.
    pub fn expect_commits(&self) {
        self.commits
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Serves requests only while `lease` holds (key continuity).
    pub fn set_lease(&self, lease: crate::continuity::lease::Lease) {
        let _ = self.lease.set(lease);
    }

    /// While `restoring`, admin requests are answered [`RESTORING`] and
    /// change nothing (the store is not the owners' yet).
    pub fn set_restoring(&self, restoring: bool) {
        self.restoring
            .store(restoring, std::sync::atomic::Ordering::SeqCst);
    }

    /// The key store (locked briefly; never held across I/O or signing).
    pub fn store(&self) -> MutexGuard<'_, KeyStore> {
        // A panic while holding the lock cannot leave the store half-changed
        // in a way that matters more than stopping service would.
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Handles one event from `from` at `now`.
    pub fn handle(&self, event: &Event, from: &RelayUrl, now: u64) -> Outcome {
        match self.try_handle(event, from, now) {
            Ok(outcome) => outcome,
            Err(why) => {
                debug!(id = %event.id, relay = %from, ?why, "event dropped");
                Outcome::default()
            }
        }
    }

    /// Like [`Self::handle`], saying why an event was dropped.
    pub fn try_handle(&self, event: &Event, from: &RelayUrl, now: u64) -> Result<Outcome, Dropped> {
        let kind = event.kind.as_u16();
        if kind != KIND_NIP46 && kind != KIND_ADMIN && kind != KIND_CUSTODY && kind != KIND_APP_DATA
        {
            return Err(Dropped::Kind);
        }
        if event_size(event) > self.config.max_request_bytes.min(MAX_REQUEST_EVENT) {
            return Err(Dropped::TooLarge);
        }
        if kind == KIND_APP_DATA {
            // Permission events are state, not requests: any age, never
            // answered, merged idempotently (replays change nothing).
            return permissions::handle(self, event, now);
        }
        let created = event.created_at.as_secs();
        if created.saturating_add(self.config.max_request_age) < now
            || created > now.saturating_add(self.config.max_clock_skew)
            || created < self.not_before.load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(Dropped::Stale);
        }
        // A state whose lease is lost may be served by a successor: this
        // enclave answers nothing of it any more (custody is its own).
        if kind != KIND_CUSTODY && self.lease.get().is_some_and(|l| !l.holds()) {
            return Err(Dropped::LeaseLost);
        }
        // The service key never makes requests; a held key makes admin
        // requests (its owner's) but never NIP-46 ones, so one held key's
        // replies can never become another's requests (or its own).
        if self.is_service_key(&event.pubkey)
            || (kind == KIND_NIP46 && self.is_held_key(&event.pubkey))
        {
            return Err(Dropped::OwnEvent);
        }
        event.verify().map_err(|_| Dropped::Signature)?;
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .first_time(event.id, created, now)
            .map_err(|e| match e {
                NotNew::Duplicate => Dropped::Duplicate,
                NotNew::MaybeReplayed => Dropped::MaybeReplayed,
            })?;
        if kind == KIND_CUSTODY {
            if !addressed_to(event, &self.service.public_key()) {
                return Err(Dropped::NotOurs);
            }
            if self.custody_reply(event) {
                return Ok(Outcome::default());
            }
            let service = self.service.clone();
            let pow = pow_bits(event);
            // Answered on the relay it came from only.
            return self.answer(event, from, &service, Vec::new, |request| {
                custody::handle(self, &event.pubkey, request, pow, now)
            });
        }
        if kind == KIND_ADMIN {
            if !addressed_to(event, &self.service.public_key()) {
                return Err(Dropped::NotOurs);
            }
            let service = self.service.clone();
            let relays = || vec![self.admin_relay.clone()];
            let pow = pow_bits(event);
            let nip04 = Scheme::of(&event.content) == Scheme::Nip04;
            let mut also = None;
            let mut outcome = self.answer(event, from, &service, relays, |request| {
                if nip04 {
                    return (
                        Response::error(&request.id, ADMIN_NEEDS_NIP44),
                        Change::None,
                    );
                }
                if self.restoring.load(std::sync::atomic::Ordering::SeqCst) {
                    return (Response::error(&request.id, RESTORING), Change::None);
                }
                admin::handle(self, &event.pubkey, request, pow, now, &mut also)
            })?;
            outcome.also = also;
            return Ok(outcome);
        }
        let secret = event
            .tags
            .iter()
            .filter_map(tag_pubkey)
            .find_map(|p| self.store().get(&p).map(UserKey::secret_key))
            .ok_or(Dropped::NotOurs)?;
        // Derived outside the store's lock.
        let keys = signing_keys(secret);
        let user = keys.public_key();
        // An app the key allows (after this request: a connect may have
        // just allowed it) is answered on the key's relays too. Anyone else
        // only on the relay it used, so strangers cannot make the enclave
        // publish on every relay of someone's key.
        let relays = || {
            self.store()
                .get(&user)
                .filter(|k| k.allows(&event.pubkey))
                .map(|k| k.relays().to_vec())
                .unwrap_or_default()
        };
        self.answer(event, from, &keys, relays, |request| {
            nip46::handle(self, &keys, &event.pubkey, request, now)
        })
    }

    /// Whether `event` is a custodian's reply to one of our custody
    /// requests (handed to the custody client), not a request.
    fn custody_reply(&self, event: &Event) -> bool {
        if !self.custody_client.awaits(&event.pubkey) {
            return false;
        }
        let Ok((_, plaintext)) =
            Conversation::open(self.service.secret_key(), &event.pubkey, &event.content)
        else {
            return false;
        };
        if !matches!(Request::parse(&plaintext), Err(Malformed::NotARequest(_))) {
            return false;
        }
        Response::parse(&plaintext)
            .is_ok_and(|response| self.custody_client.deliver(&event.pubkey, &response))
    }

    /// Decrypts the request in `event` with `keys`, runs `run`, and seals
    /// and signs the reply with `keys`, to go to `from` and to `relays()`
    /// (asked once the request has run).
    fn answer(
        &self,
        event: &Event,
        from: &RelayUrl,
        keys: &Keys,
        relays: impl FnOnce() -> Vec<RelayUrl>,
        run: impl FnOnce(&Request) -> (Response, Change),
    ) -> Result<Outcome, Dropped> {
        let (conversation, plaintext) =
            Conversation::open(keys.secret_key(), &event.pubkey, &event.content)
                .map_err(|_| Dropped::Undecryptable)?;
        let (response, change, method) = match Request::parse(&plaintext) {
            Ok(request) => {
                let (response, change) = run(&request);
                (response, change, request.method)
            }
            Err(Malformed::Invalid { id, reason }) => {
                (Response::error(&id, reason), Change::None, String::new())
            }
            Err(Malformed::NotARequest(_)) => return Err(Dropped::NotARequest),
        };
        drop(plaintext);
        let changes_state = !response.is_error()
            && match event.kind.as_u16() {
                KIND_ADMIN => verifier::rpc::admin::changes_state(&method),
                KIND_NIP46 => matches!(
                    verifier::grant::Method::from_name(&method),
                    Some(verifier::grant::Method::Connect | verifier::grant::Method::Logout)
                ),
                _ => false,
            };
        // Only with continuity can a change go unconfirmed: the second
        // reply is not sealed and signed for nothing otherwise.
        let committed = self.commits.load(std::sync::atomic::Ordering::SeqCst);
        let unconfirmed = if changes_state && committed {
            reply_event(
                &conversation,
                keys,
                event,
                &Response::error(&response.id, UNCONFIRMED),
            )
            .ok()
        } else {
            None
        };
        let reply = match reply_event(&conversation, keys, event, &response) {
            Ok(reply) => reply,
            // Too large to seal (NIP-44 holds 65,535 bytes): say so in a
            // reply that fits, rather than leave the client waiting.
            Err(e) => {
                debug!(id = %event.id, "reply cannot be sealed: {e}");
                let short = Response::error(&response.id, REPLY_TOO_LARGE);
                reply_event(&conversation, keys, event, &short)
                    .map_err(|_| Dropped::Undecryptable)?
            }
        };
        let mut relays = relays();
        if !relays.contains(from) {
            relays.insert(0, from.clone());
        }
        let unconfirmed = unconfirmed.map(|event| Reply {
            event,
            relays: relays.clone(),
        });
        Ok(Outcome {
            reply: Some(Reply {
                event: reply,
                relays,
            }),
            change,
            also: None,
            durable: changes_state,
            forgets: changes_state
                && event.kind.as_u16() == KIND_ADMIN
                && method == verifier::rpc::admin::method::DELETE_KEY,
            unconfirmed,
        })
    }

    /// Deletes expired test keys and secrets; true if keys were removed.
    pub fn expire(&self, now: u64) -> bool {
        self.store().expire(now) > 0
    }

    /// How many request ids overflowed the dedupe cache into its filters
    /// (0 unless the signer was flooded).
    pub fn dedupe_overflow(&self) -> u64 {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .overflowed()
    }
}

impl ProtocolKeys for Signer {
    fn is_service_key(&self, key: &PublicKey) -> bool {
        *key == self.service.public_key()
    }

    fn is_held_key(&self, key: &PublicKey) -> bool {
        self.store().holds(key)
    }

    fn is_app_of(&self, user: &PublicKey, app: &PublicKey) -> bool {
        self.store().get(user).is_some_and(|k| k.allows(app))
    }
}

/// The enclave's protocol keys as one locked view of the store sees them,
/// for checks that must agree with a decision made under the same lock.
pub struct StoreKeys<'a> {
    store: &'a KeyStore,
    service: PublicKey,
}

impl<'a> StoreKeys<'a> {
    /// The keys of `store` and the service key `service`.
    pub fn new(store: &'a KeyStore, service: PublicKey) -> Self {
        Self { store, service }
    }
}

impl ProtocolKeys for StoreKeys<'_> {
    fn is_service_key(&self, key: &PublicKey) -> bool {
        *key == self.service
    }

    fn is_held_key(&self, key: &PublicKey) -> bool {
        self.store.holds(key)
    }

    fn is_app_of(&self, user: &PublicKey, app: &PublicKey) -> bool {
        self.store.get(user).is_some_and(|k| k.allows(app))
    }
}

/// The error reply of a request whose reply would not fit in NIP-44.
pub const REPLY_TOO_LARGE: &str =
    "the reply is too large to send (NIP-44 carries at most 65,535 bytes); ask for less";

/// The reply to `request` (an event from the app), sealed and signed.
pub fn reply_event(
    conversation: &Conversation<'_>,
    keys: &Keys,
    request: &Event,
    response: &Response,
) -> Result<Event, String> {
    let content = conversation
        .encrypt(&response.to_json())
        .map_err(|e| e.to_string())?;
    EventBuilder::new(request.kind, content)
        .tag(Tag::public_key(request.pubkey))
        .sign_with_keys(keys)
        .map_err(|e| e.to_string())
}

/// Bytes of content and tags: what a sender controls, measured without
/// serializing the event again.
fn event_size(event: &Event) -> usize {
    event.content.len()
        + event
            .tags
            .iter()
            .map(|t| t.as_slice().iter().map(|s| s.len() + 3).sum::<usize>() + 2)
            .sum::<usize>()
}

fn tag_pubkey(tag: &Tag) -> Option<PublicKey> {
    match tag.as_slice() {
        [name, value, ..] if name == "p" => PublicKey::from_hex(value).ok(),
        _ => None,
    }
}

fn addressed_to(event: &Event, pubkey: &PublicKey) -> bool {
    event
        .tags
        .iter()
        .filter_map(tag_pubkey)
        .any(|p| p == *pubkey)
}
