//! Subscriptions for every held key on one shared connection per relay.
//!
//! Each relay gets the admin subscription if it is the admin relay, and
//! NIP-46 subscriptions whose `#p` lists the keys on that relay, in chunks
//! of [`PUBKEYS_PER_FILTER`]. A sync looks only at the relays the store
//! says changed, and re-sends only the REQs whose chunk changed (a REQ with
//! the same id replaces the old one). Relays no key uses are dropped,
//! except the pinned ones (admin and announce relays).
//!
//! Every REQ asks from `since` = now minus [`SINCE_MARGIN`], and after a
//! reconnect from when the connection dropped minus the margin, so requests
//! sent while we were away are fetched from relays that keep them; the
//! handler drops duplicates and requests that are too old.
//!
//! A sync never waits on a relay: it queues the REQs and returns. Whoever
//! needs a key's subscriptions in place before replying (an import's "ok")
//! waits with [`Subscriptions::ready`] on that key's relays only, bounded
//! by [`EOSE_TIMEOUT`], so a relay that is slow, down, or never sends EOSE
//! delays only the requests that name it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nostr::{Filter, Kind, PublicKey, RelayMessage, RelayUrl, SubscriptionId, Timestamp};
use nostr_sdk::pool::RelayNotification;
use nostr_sdk::{Client, Relay, RelayStatus, SubscribeOptions};
use tokio::sync::{Mutex, Notify};
use tracing::{debug, info, warn};
use verifier::event::{KIND_ADMIN, KIND_NIP46};

/// Most pubkeys in one filter's `#p` (relays cap filter sizes).
pub const PUBKEYS_PER_FILTER: usize = 256;
/// How far back a REQ reaches before now or before a disconnect.
pub const SINCE_MARGIN: u64 = 60;
/// Longest a reply waits for its key's REQs to be acknowledged.
pub const EOSE_TIMEOUT: Duration = Duration::from_secs(5);

const ADMIN_SUB: &str = "admin";
const NIP46_SUB: &str = "nip46-";

/// The subscriptions of one relay as last sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct RelaySubs {
    admin: bool,
    chunks: Vec<Vec<PublicKey>>,
}

impl RelaySubs {
    fn new(admin: bool, keys: &BTreeSet<PublicKey>) -> Self {
        let list: Vec<PublicKey> = keys.iter().copied().collect();
        Self {
            admin,
            chunks: list
                .chunks(PUBKEYS_PER_FILTER)
                .map(<[PublicKey]>::to_vec)
                .collect(),
        }
    }

    fn is_empty(&self) -> bool {
        !self.admin && self.chunks.is_empty()
    }

    fn requests(&self, service: &PublicKey, since: Timestamp) -> Vec<(SubscriptionId, Filter)> {
        let mut out = Vec::new();
        if self.admin {
            out.push((
                SubscriptionId::new(ADMIN_SUB),
                Filter::new()
                    .kind(Kind::from(KIND_ADMIN))
                    .pubkey(*service)
                    .since(since),
            ));
        }
        for (i, chunk) in self.chunks.iter().enumerate() {
            out.push((
                nip46_sub(i),
                Filter::new()
                    .kind(Kind::from(KIND_NIP46))
                    .pubkeys(chunk.iter().copied())
                    .since(since),
            ));
        }
        out
    }
}

fn nip46_sub(i: usize) -> SubscriptionId {
    SubscriptionId::new(format!("{NIP46_SUB}{i}"))
}

fn is_ours(id: &SubscriptionId) -> bool {
    let id = id.as_str();
    id == ADMIN_SUB || id.starts_with(NIP46_SUB)
}

/// How many of a relay's REQs were sent and how many were answered (EOSE
/// or CLOSED), for [`Subscriptions::ready`].
#[derive(Debug, Default)]
struct Acks {
    sent: AtomicU64,
    answered: AtomicU64,
    changed: Notify,
}

impl Acks {
    fn answer(&self, n: u64) {
        let sent = self.sent.load(Ordering::SeqCst);
        let _ = self
            .answered
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |a| {
                Some(a.saturating_add(n).min(sent))
            });
        self.changed.notify_waiters();
    }
}

/// The subscription manager.
#[derive(Debug, Clone)]
pub struct Subscriptions {
    client: Client,
    service: PublicKey,
    admin_relay: RelayUrl,
    pinned: Arc<HashSet<RelayUrl>>,
    state: Arc<Mutex<HashMap<RelayUrl, RelaySubs>>>,
    /// Syncs asked for, and the last one applied: a sync that finds a
    /// newer view already applied returns at once, so a burst of imports
    /// costs a few syncs, not one each.
    requested: Arc<AtomicU64>,
    applied: Arc<AtomicU64>,
    /// Relays with a watcher, and their REQ acknowledgements.
    acks: Arc<std::sync::Mutex<HashMap<RelayUrl, Arc<Acks>>>>,
}

impl Subscriptions {
    /// Manages `client`'s subscriptions for the service key and the
    /// admin relay; `pinned` relays are never removed.
    pub fn new(
        client: Client,
        service: PublicKey,
        admin_relay: RelayUrl,
        pinned: impl IntoIterator<Item = RelayUrl>,
    ) -> Self {
        let mut pinned: HashSet<RelayUrl> = pinned.into_iter().collect();
        pinned.insert(admin_relay.clone());
        Self {
            client,
            service,
            admin_relay,
            pinned: Arc::new(pinned),
            state: Arc::new(Mutex::new(HashMap::new())),
            requested: Arc::new(AtomicU64::new(0)),
            applied: Arc::new(AtomicU64::new(0)),
            acks: Arc::default(),
        }
    }

    /// The client whose subscriptions these are.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Brings the subscriptions of the relays in `changes()` (relay → the
    /// keys listening there now, for the relays that changed) up to date,
    /// read once the previous sync is done so concurrent syncs never apply
    /// an older view. Queues REQs and CLOSEs; never waits on a relay.
    pub async fn sync(&self, changes: impl FnOnce() -> HashMap<RelayUrl, BTreeSet<PublicKey>>) {
        let wanted_at = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut state = self.state.lock().await;
        if self.applied.load(Ordering::SeqCst) >= wanted_at {
            return;
        }
        // Every change asked for up to here is in the store already.
        let view = self.requested.load(Ordering::SeqCst);
        let mut changes = changes();
        if !state.contains_key(&self.admin_relay) {
            changes.entry(self.admin_relay.clone()).or_default();
        }
        for (url, keys) in changes {
            let subs = RelaySubs::new(url == self.admin_relay, &keys);
            let old = state.get(&url).cloned().unwrap_or_default();
            if old == subs && state.contains_key(&url) {
                continue;
            }
            if subs.is_empty() {
                state.remove(&url);
                if !self.pinned.contains(&url) {
                    self.drop_relay(&url).await;
                    continue;
                }
            }
            match self.relay(&url).await {
                Ok(relay) => self.update(&relay, &old, &subs).await,
                Err(e) => {
                    warn!(%url, "cannot add relay: {e}");
                    continue;
                }
            }
            if !subs.is_empty() {
                state.insert(url, subs);
            }
        }
        self.applied.store(view, Ordering::SeqCst);
        drop(state);
    }

    /// Waits until the REQs sent so far on each of `relays` are answered,
    /// a relay is not connected, or [`EOSE_TIMEOUT`] passes.
    pub async fn ready(&self, relays: &[RelayUrl]) {
        let waits: Vec<_> = relays
            .iter()
            .filter_map(|url| {
                let acks = self
                    .acks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(url)
                    .cloned()?;
                Some(async move {
                    let target = acks.sent.load(Ordering::SeqCst);
                    loop {
                        let changed = acks.changed.notified();
                        if acks.answered.load(Ordering::SeqCst) >= target {
                            return;
                        }
                        changed.await;
                    }
                })
            })
            .collect();
        if tokio::time::timeout(EOSE_TIMEOUT, futures_util::future::join_all(waits))
            .await
            .is_err()
        {
            debug!("subscriptions not acknowledged within {EOSE_TIMEOUT:?}; replying anyway");
        }
    }

    /// Sends the REQs of `subs` that differ from `old`, and CLOSEs the ones
    /// no longer wanted.
    async fn update(&self, relay: &Relay, old: &RelaySubs, subs: &RelaySubs) {
        let since = Timestamp::from(crate::unix_now().saturating_sub(SINCE_MARGIN));
        let old_requests: HashMap<SubscriptionId, Filter> =
            old.requests(&self.service, since).into_iter().collect();
        let new_requests = subs.requests(&self.service, since);
        let new_ids: HashSet<&SubscriptionId> = new_requests.iter().map(|(id, _)| id).collect();
        for id in old_requests.keys().filter(|id| !new_ids.contains(id)) {
            if let Err(e) = relay.unsubscribe(id).await {
                debug!(url = %relay.url(), %id, "cannot close: {e}");
            }
        }
        let changed: Vec<(SubscriptionId, Filter)> = new_requests
            .into_iter()
            .filter(|(id, filter)| old_requests.get(id) != Some(filter))
            .collect();
        self.subscribe(relay, changed).await;
    }

    /// Queues `requests` on `relay`, counting them for [`Self::ready`].
    async fn subscribe(&self, relay: &Relay, requests: Vec<(SubscriptionId, Filter)>) {
        let acks = self.acks_of(relay.url());
        for (id, filter) in requests {
            match relay
                .subscribe_with_id(id.clone(), filter, SubscribeOptions::default())
                .await
            {
                Ok(()) => {
                    acks.sent.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    warn!(url = %relay.url(), %id, "cannot subscribe yet (retried on reconnect): {e}")
                }
            }
        }
        if !relay.is_connected() {
            // Nothing will answer until it connects; `watch` re-sends then.
            acks.answer(u64::MAX);
        }
    }

    fn acks_of(&self, url: &RelayUrl) -> Arc<Acks> {
        Arc::clone(
            self.acks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(url.clone())
                .or_default(),
        )
    }

    async fn drop_relay(&self, url: &RelayUrl) {
        info!(%url, "no key uses this relay any more; disconnecting");
        if let Err(e) = self.client.force_remove_relay(url.clone()).await {
            debug!(%url, "cannot remove relay: {e}");
        }
        self.acks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(url);
    }

    /// The relay for `url`, added, connecting, and watched for reconnects.
    async fn relay(&self, url: &RelayUrl) -> Result<Relay, nostr_sdk::client::Error> {
        let added = self.client.add_relay(url.clone()).await?;
        let relay = self.client.relay(url.clone()).await?;
        if added || relay.status() == RelayStatus::Initialized {
            relay.connect();
        }
        // Watch each relay we subscribe on once, whoever added it to the
        // pool (the announcer adds its relays too).
        let first = !self
            .acks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(url);
        if first {
            let acks = self.acks_of(url);
            tokio::spawn(watch(relay.clone(), self.clone(), acks));
        }
        Ok(relay)
    }

    async fn resubscribe(&self, relay: &Relay, since: Timestamp) {
        let subs = self.state.lock().await.get(relay.url()).cloned();
        if let Some(subs) = subs {
            let requests = subs.requests(&self.service, since);
            debug!(url = %relay.url(), count = requests.len(), %since, "re-subscribing after a reconnect");
            self.subscribe(relay, requests).await;
        }
    }
}

/// Counts a relay's answers to our REQs, and re-sends its subscriptions
/// after each reconnect, reaching back to when it dropped.
async fn watch(relay: Relay, subs: Subscriptions, acks: Arc<Acks>) {
    let mut notifications = relay.notifications();
    let mut dropped_at: Option<u64> = None;
    loop {
        match notifications.recv().await {
            Ok(RelayNotification::Message {
                message: RelayMessage::EndOfStoredEvents(id),
            }) if is_ours(&id) => acks.answer(1),
            Ok(RelayNotification::Message {
                message:
                    RelayMessage::Closed {
                        subscription_id,
                        message,
                    },
            }) if is_ours(&subscription_id) => {
                warn!(url = %relay.url(), id = %subscription_id, "relay closed the subscription: {message}");
                acks.answer(1);
            }
            Ok(RelayNotification::RelayStatus { status }) => match status {
                RelayStatus::Connected => {
                    if let Some(at) = dropped_at.take() {
                        info!(url = %relay.url(), "reconnected");
                        let since = Timestamp::from(at.saturating_sub(SINCE_MARGIN));
                        let subs = subs.clone();
                        let relay = relay.clone();
                        tokio::spawn(async move { subs.resubscribe(&relay, since).await });
                    }
                }
                RelayStatus::Disconnected | RelayStatus::Terminated => {
                    // Nobody will answer what was sent: stop waiting for it.
                    acks.answer(u64::MAX);
                    if dropped_at.is_none() {
                        warn!(url = %relay.url(), "relay connection lost; reconnecting with backoff");
                        dropped_at = Some(crate::unix_now());
                    }
                    if status == RelayStatus::Terminated {
                        return;
                    }
                }
                _ => {}
            },
            Ok(RelayNotification::Shutdown)
            | Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            _ => {}
        }
    }
}
