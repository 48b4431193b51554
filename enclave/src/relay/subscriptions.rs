//! Subscriptions for every held key on one shared connection per relay.
//!
//! Each relay gets the admin subscription if it is the admin relay, and
//! NIP-46 subscriptions whose `#p` lists the keys on that relay, in stable
//! chunks ([`super::chunks`]). A sync applies what the store says changed
//! on each relay and re-sends only the REQs whose chunk changed (a REQ with
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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nostr::{Filter, PublicKey, RelayMessage, RelayUrl, SubscriptionId, Timestamp};
use nostr_sdk::pool::RelayNotification;
use nostr_sdk::SubscribeAutoCloseOptions;
use nostr_sdk::{Client, Relay, RelayStatus, SubscribeOptions};
use tokio::sync::{Mutex, Notify};
use tracing::{debug, info, warn};

use super::chunks::{is_fetch, is_ours, RelaySubs};
use crate::custody::RelayChanges;

/// How far back a REQ reaches before now or before a disconnect.
pub const SINCE_MARGIN: u64 = 60;
/// Longest a reply waits for its key's REQs to be acknowledged.
pub const EOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// First wait before re-sending subscriptions a relay closed or could not
/// take; doubles up to [`RETRY_MAX`].
pub const RETRY_INITIAL: Duration = Duration::from_secs(10);
/// Longest wait between such re-sends.
pub const RETRY_MAX: Duration = Duration::from_secs(300);
/// Longest a one-shot fetch of permission events stays open.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// How many of a relay's REQs were sent and how many were answered (EOSE
/// or CLOSED), for [`Subscriptions::ready`].
#[derive(Debug, Default)]
struct Acks {
    sent: AtomicU64,
    answered: AtomicU64,
    changed: Notify,
    /// A re-subscription is scheduled (after a failed REQ or a CLOSED).
    retry_scheduled: std::sync::atomic::AtomicBool,
    /// The wait before the next one, in seconds; doubles while they fail.
    retry_delay: AtomicU64,
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

/// What has been subscribed where.
#[derive(Debug, Default)]
struct State {
    subs: HashMap<RelayUrl, RelaySubs>,
    /// Relays whose REQs could not all be sent: sent in full next time.
    incomplete: HashSet<RelayUrl>,
}

/// The subscription manager.
#[derive(Debug, Clone)]
pub struct Subscriptions {
    client: Client,
    service: PublicKey,
    admin_relay: RelayUrl,
    pinned: Arc<HashSet<RelayUrl>>,
    state: Arc<Mutex<State>>,
    /// Syncs asked for, and the last one applied: a sync that finds a
    /// newer view already applied returns at once, so a burst of imports
    /// costs a few syncs, not one each.
    requested: Arc<AtomicU64>,
    applied: Arc<AtomicU64>,
    /// Relays with a watcher, and their REQ acknowledgements.
    acks: Arc<std::sync::Mutex<HashMap<RelayUrl, Arc<Acks>>>>,
    /// Relays besides the admin relay where the service key's REQ is kept
    /// (custodians' admin relays, where their replies come), never dropped.
    service_relays: Arc<std::sync::Mutex<HashSet<RelayUrl>>>,
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
            state: Arc::default(),
            requested: Arc::new(AtomicU64::new(0)),
            applied: Arc::new(AtomicU64::new(0)),
            acks: Arc::default(),
            service_relays: Arc::default(),
        }
    }

    /// Listens for what comes to the service key on `url` too, from now
    /// on: a custodian's admin relay, where its replies to custody
    /// requests arrive. Returns once the relay acknowledged the REQ (at
    /// most [`EOSE_TIMEOUT`]).
    pub async fn listen_for_service(&self, url: &RelayUrl) {
        let new = self
            .service_relays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(url.clone());
        if new && *url != self.admin_relay {
            self.sync(RelayChanges::default).await;
            self.listening(url).await;
        }
    }

    fn service_relays(&self) -> HashSet<RelayUrl> {
        self.service_relays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The client whose subscriptions these are.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Applies `changes()` (what came and went on each relay since the
    /// last sync, from the store: the keys listening there, and the keys
    /// whose permission events are read there), read once the previous
    /// sync is done so concurrent syncs apply them in order. Queues REQs and
    /// CLOSEs; never waits on a relay.
    pub async fn sync(&self, changes: impl FnOnce() -> RelayChanges) {
        let wanted_at = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut state = self.state.lock().await;
        if self.applied.load(Ordering::SeqCst) >= wanted_at {
            return;
        }
        // Every change asked for up to here is in the store already.
        let view = self.requested.load(Ordering::SeqCst);
        let RelayChanges {
            mut keys,
            mut owners,
        } = changes();
        let service_relays = self.service_relays();
        for url in service_relays.iter().chain([&self.admin_relay]) {
            if !state.subs.contains_key(url) {
                keys.entry(url.clone()).or_default();
            }
        }
        let since = Timestamp::from(crate::unix_now().saturating_sub(SINCE_MARGIN));
        let urls: HashSet<RelayUrl> = keys.keys().chain(owners.keys()).cloned().collect();
        for url in urls {
            let delta = keys.remove(&url).unwrap_or_default();
            let owners = owners.remove(&url).unwrap_or_default();
            let admin = url == self.admin_relay || service_relays.contains(&url);
            let subs = state.subs.entry(url.clone()).or_default();
            let (send, close) = subs.apply(admin, &delta, &owners, &self.service, since);
            if subs.is_empty() {
                state.subs.remove(&url);
                state.incomplete.remove(&url);
                if !self.pinned.contains(&url) && !service_relays.contains(&url) {
                    self.drop_relay(&url).await;
                    continue;
                }
            }
            if send.is_empty() && close.is_empty() && !state.incomplete.contains(&url) {
                continue;
            }
            let relay = match self.relay(&url).await {
                Ok(relay) => relay,
                Err(e) => {
                    // Sent in full once the relay can be added.
                    warn!(%url, "cannot add relay: {e}");
                    state.incomplete.insert(url);
                    continue;
                }
            };
            if state.incomplete.remove(&url) {
                let all = state
                    .subs
                    .get(&url)
                    .map(|s| s.requests(&self.service, since))
                    .unwrap_or_default();
                self.subscribe(&relay, all).await;
                continue;
            }
            for id in &close {
                if let Err(e) = relay.unsubscribe(id).await {
                    debug!(%url, %id, "cannot close: {e}");
                }
            }
            self.subscribe(&relay, send).await;
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

    /// Waits until `url` is connected and has acknowledged its REQs, at
    /// most [`EOSE_TIMEOUT`] for each: for the admin relay at start-up, so
    /// that "ready" means a request sent now is heard. REQs queued while
    /// the relay was still connecting count as answered (nothing could
    /// answer them yet), and it may have connected since, so its REQs are
    /// sent again once it is up, and those are waited for.
    pub async fn listening(&self, url: &RelayUrl) {
        let Ok(relay) = self.client.relay(url).await else {
            return;
        };
        relay.wait_for_connection(EOSE_TIMEOUT).await;
        if !relay.is_connected() {
            warn!(%url, "relay not connected within {EOSE_TIMEOUT:?}; going on without it");
            return;
        }
        let since = Timestamp::from(crate::unix_now().saturating_sub(SINCE_MARGIN));
        self.resubscribe(&relay, since).await;
        self.ready(std::slice::from_ref(url)).await;
    }

    /// Queues `requests` on `relay`, counting them for [`Self::ready`]. A
    /// REQ that cannot be queued on a connected relay (its queue is full)
    /// is sent again, with all the relay's others, a little later.
    async fn subscribe(&self, relay: &Relay, requests: Vec<(SubscriptionId, Filter)>) {
        let acks = self.acks_of(relay.url());
        let mut failed = false;
        for (id, filter) in requests {
            // A one-shot fetch closes at EOSE (or after FETCH_TIMEOUT) and
            // is never waited for.
            let fetch = is_fetch(&id);
            if fetch && !relay.is_connected() {
                // A one-shot REQ is not kept for the connection: send it
                // once the relay is up (in the background; never waited for).
                let relay = relay.clone();
                tokio::spawn(async move {
                    relay.wait_for_connection(FETCH_TIMEOUT).await;
                    let close = SubscribeAutoCloseOptions::default().timeout(Some(FETCH_TIMEOUT));
                    let options = SubscribeOptions::default().close_on(Some(close));
                    if let Err(e) = relay.subscribe_with_id(id.clone(), filter, options).await {
                        debug!(url = %relay.url(), %id, "permission fetch not sent: {e}");
                    }
                });
                continue;
            }
            let options = if fetch {
                SubscribeOptions::default().close_on(Some(
                    // The default exit policy: at EOSE.
                    SubscribeAutoCloseOptions::default().timeout(Some(FETCH_TIMEOUT)),
                ))
            } else {
                SubscribeOptions::default()
            };
            match relay.subscribe_with_id(id.clone(), filter, options).await {
                Ok(()) if fetch => {}
                Ok(()) => {
                    acks.sent.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    failed = true;
                    debug!(url = %relay.url(), %id, "cannot subscribe now: {e}")
                }
            }
        }
        if !relay.is_connected() {
            // Nothing will answer until it connects; `watch` re-sends then.
            acks.answer(u64::MAX);
        } else if failed && self.retry_later(relay, &acks) {
            warn!(url = %relay.url(), "some subscriptions could not be queued; sending them again later");
        }
    }

    /// Re-sends all of `relay`'s subscriptions after a pause that doubles
    /// (from [`RETRY_INITIAL`] to [`RETRY_MAX`]) while they keep failing;
    /// at most one is scheduled per relay. Returns whether this call
    /// scheduled it.
    fn retry_later(&self, relay: &Relay, acks: &Arc<Acks>) -> bool {
        if acks.retry_scheduled.swap(true, Ordering::SeqCst) {
            return false;
        }
        let delay = acks
            .retry_delay
            .load(Ordering::SeqCst)
            .clamp(RETRY_INITIAL.as_secs(), RETRY_MAX.as_secs());
        acks.retry_delay
            .store((delay * 2).min(RETRY_MAX.as_secs()), Ordering::SeqCst);
        let (subs, relay, acks) = (self.clone(), relay.clone(), Arc::clone(acks));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(delay)).await;
            acks.retry_scheduled.store(false, Ordering::SeqCst);
            let since = Timestamp::from(crate::unix_now().saturating_sub(SINCE_MARGIN + delay));
            subs.resubscribe(&relay, since).await;
        });
        true
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
        let subs = self.state.lock().await.subs.get(relay.url()).cloned();
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
            }) if is_ours(&id) && !is_fetch(&id) => {
                acks.retry_delay.store(0, Ordering::SeqCst);
                acks.answer(1);
            }
            Ok(RelayNotification::Message {
                message:
                    RelayMessage::Closed {
                        subscription_id,
                        message,
                    },
            }) if is_ours(&subscription_id) && !is_fetch(&subscription_id) => {
                acks.answer(1);
                // One warning per scheduled retry, however often it closes.
                if subs.retry_later(&relay, &acks) {
                    warn!(url = %relay.url(), id = %subscription_id, "relay closed the subscription ({message}); subscribing again later");
                }
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
