//! Subscriptions for every held key on one shared connection per relay.
//!
//! Each relay gets the admin subscription if it is the admin relay, and
//! NIP-46 subscriptions whose `#p` lists the keys on that relay, in chunks
//! of [`PUBKEYS_PER_FILTER`]. A change to the keys re-sends only the REQs
//! whose chunk changed (a REQ with the same id replaces the old one), so
//! other relays and subscriptions are untouched. Relays no key uses are
//! dropped, except the pinned ones (admin and announce relays).
//!
//! Every REQ asks from `since` = now minus [`SINCE_MARGIN`], and after a
//! reconnect from when the connection dropped minus the margin, so requests
//! sent while we were away are fetched from relays that keep them; the
//! handler drops duplicates and requests that are too old. `sync` waits
//! (bounded) for each changed REQ's EOSE, so a reply saying a key is ready
//! is only sent once its subscriptions are in place.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nostr::{Filter, Kind, PublicKey, RelayMessage, RelayUrl, SubscriptionId, Timestamp};
use nostr_sdk::pool::RelayNotification;
use nostr_sdk::{Client, Relay, RelayStatus, SubscribeOptions};
use tokio::sync::Mutex;
use tracing::{debug, info, warn};
use verifier::event::{KIND_ADMIN, KIND_NIP46};

/// Most pubkeys in one filter's `#p` (relays cap filter sizes).
pub const PUBKEYS_PER_FILTER: usize = 256;
/// How far back a REQ reaches before now or before a disconnect.
pub const SINCE_MARGIN: u64 = 60;
/// Longest wait for a relay to connect and acknowledge a REQ.
pub const EOSE_TIMEOUT: Duration = Duration::from_secs(5);

const ADMIN_SUB: &str = "admin";

/// The subscriptions of one relay as last sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct RelaySubs {
    admin: bool,
    chunks: Vec<Vec<PublicKey>>,
}

impl RelaySubs {
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
    SubscriptionId::new(format!("nip46-{i}"))
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
    /// Relays with a reconnect watcher.
    watched: Arc<std::sync::Mutex<HashSet<RelayUrl>>>,
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
            watched: Arc::default(),
        }
    }

    /// Makes the subscriptions match `keys()` (relay → pubkeys listening
    /// there), read once the previous sync is done so concurrent syncs
    /// never apply an older view. Waits, up to [`EOSE_TIMEOUT`], for
    /// changed REQs to be acknowledged.
    pub async fn sync(&self, keys: impl FnOnce() -> HashMap<RelayUrl, BTreeSet<PublicKey>>) {
        let wanted_at = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut state = self.state.lock().await;
        if self.applied.load(Ordering::SeqCst) >= wanted_at {
            return;
        }
        // Every change asked for up to here is in the store already.
        let view = self.requested.load(Ordering::SeqCst);
        let keys = keys();
        let mut wanted: HashMap<RelayUrl, RelaySubs> = keys
            .into_iter()
            .map(|(url, pubkeys)| {
                let list: Vec<PublicKey> = pubkeys.into_iter().collect();
                let chunks = list
                    .chunks(PUBKEYS_PER_FILTER)
                    .map(<[PublicKey]>::to_vec)
                    .collect();
                (
                    url,
                    RelaySubs {
                        admin: false,
                        chunks,
                    },
                )
            })
            .collect();
        wanted.entry(self.admin_relay.clone()).or_default().admin = true;

        let mut waits = Vec::new();
        for (url, subs) in &wanted {
            let old = state.get(url).cloned().unwrap_or_default();
            if old == *subs {
                continue;
            }
            let relay = match self.relay(url).await {
                Ok(relay) => relay,
                Err(e) => {
                    warn!(%url, "cannot add relay: {e}");
                    continue;
                }
            };
            let since = Timestamp::from(crate::unix_now().saturating_sub(SINCE_MARGIN));
            let old_requests: HashMap<SubscriptionId, Filter> =
                old.requests(&self.service, since).into_iter().collect();
            let new_requests = subs.requests(&self.service, since);
            let new_ids: HashSet<&SubscriptionId> = new_requests.iter().map(|(id, _)| id).collect();
            for id in old_requests.keys().filter(|id| !new_ids.contains(id)) {
                if let Err(e) = relay.unsubscribe(id).await {
                    debug!(%url, %id, "cannot close: {e}");
                }
            }
            let changed: Vec<(SubscriptionId, Filter)> = new_requests
                .into_iter()
                .filter(|(id, filter)| old_requests.get(id) != Some(filter))
                .collect();
            waits.push(tokio::spawn(subscribe(relay, changed)));
        }
        for url in state.keys() {
            if !wanted.contains_key(url) && !self.pinned.contains(url) {
                info!(%url, "no key uses this relay any more; disconnecting");
                if let Err(e) = self.client.force_remove_relay(url.clone()).await {
                    debug!(%url, "cannot remove relay: {e}");
                }
                self.watched
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(url);
            }
        }
        *state = wanted;
        // Still holding the lock: a sync that finds nothing left to change
        // must not return before these REQs are in place.
        for wait in waits {
            let _ = wait.await;
        }
        self.applied.store(view, Ordering::SeqCst);
        drop(state);
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
        let first = self
            .watched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(url.clone());
        if first {
            tokio::spawn(watch(relay.clone(), self.clone()));
        }
        Ok(relay)
    }

    async fn resubscribe(&self, relay: &Relay, since: Timestamp) {
        let subs = self.state.lock().await.get(relay.url()).cloned();
        if let Some(subs) = subs {
            let requests = subs.requests(&self.service, since);
            debug!(url = %relay.url(), count = requests.len(), %since, "re-subscribing after a reconnect");
            subscribe(relay.clone(), requests).await;
        }
    }
}

/// Sends `requests` on `relay` and waits (bounded) for each EOSE.
async fn subscribe(relay: Relay, requests: Vec<(SubscriptionId, Filter)>) {
    if requests.is_empty() {
        return;
    }
    let mut notifications = relay.notifications();
    if !relay.is_connected() {
        relay.wait_for_connection(EOSE_TIMEOUT).await;
    }
    // A relay that is down gets its REQs when it reconnects (see `watch`);
    // waiting for its EOSE would only hold up every other sync.
    let wait_for_eose = relay.is_connected();
    let mut pending: HashSet<SubscriptionId> = HashSet::new();
    for (id, filter) in requests {
        match relay
            .subscribe_with_id(id.clone(), filter, SubscribeOptions::default())
            .await
        {
            Ok(()) => {
                pending.insert(id);
            }
            Err(e) => {
                warn!(url = %relay.url(), %id, "cannot subscribe yet (retried on reconnect): {e}")
            }
        }
    }
    if !wait_for_eose {
        warn!(url = %relay.url(), "relay not connected; its subscriptions start when it connects");
        return;
    }
    let waited = tokio::time::timeout(EOSE_TIMEOUT, async {
        while !pending.is_empty() {
            match notifications.recv().await {
                Ok(RelayNotification::Message {
                    message: RelayMessage::EndOfStoredEvents(id),
                }) => {
                    pending.remove(id.as_ref());
                }
                Ok(RelayNotification::Message {
                    message: RelayMessage::Closed { subscription_id, message },
                }) if pending.remove(subscription_id.as_ref()) => {
                    warn!(url = %relay.url(), id = %subscription_id, "relay closed the subscription: {message}");
                }
                Ok(RelayNotification::Shutdown) | Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                _ => {}
            }
        }
    })
    .await;
    if waited.is_err() {
        warn!(url = %relay.url(), "no EOSE within {EOSE_TIMEOUT:?}; replying anyway");
    }
}

/// Re-sends a relay's subscriptions after each reconnect, reaching back
/// to when it dropped.
async fn watch(relay: Relay, subs: Subscriptions) {
    let mut notifications = relay.notifications();
    let mut dropped_at: Option<u64> = None;
    loop {
        match notifications.recv().await {
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
