//! The signer's event loop: request events from the [`Inbox`] (taken from
//! the relays in turn) go to the [`Signer`], and its replies go to the
//! [`Outbox`], which reads every relay's `OK` and retries refusals.
//!
//! Handling an event is CPU work only (signatures, ECDH, encryption). It
//! runs on the blocking pool, as many at once as there are cores, so the
//! runtime's workers stay free to read the relays: a relay whose reader
//! falls behind drops events for us on its side, which no queue in the
//! enclave could bring back. The permits are released before anything
//! waits.
//!
//! When a request changed the held keys, the subscriptions of the relays
//! it changed are updated (queued, never awaited) and its reply waits, at
//! most [`crate::relay::subscriptions::EOSE_TIMEOUT`], for those relays
//! only, so a slow relay delays only the requests that name it. Test keys
//! and secrets expire on a timer, which also reports a dedupe cache that
//! had to overflow (a flood).

use std::sync::Arc;
use std::time::Duration;

use nostr::{Keys, RelayUrl};
use nostr_sdk::Client;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::continuity::persist::PersistHook;
use crate::relay::inbox::{Inbox, InboxLimits};
use crate::relay::outbox::{Outbox, OutboxLimits};
use crate::relay::subscriptions::Subscriptions;
use crate::relay::PoolLimits;
use crate::signer::{Change, Signer, SignerConfig};

/// Most requests handled at once: one per core; more wait in the inbox.
pub fn max_in_flight() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
/// Most replies waiting for their key's subscriptions at once; more are
/// sent without waiting.
pub const MAX_WAITING: usize = 1024;
/// How long a change's reply waits for its commit before the owner is
/// told it is not confirmed (the commit goes on; the next one covers it).
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(20);
/// How often expired test keys and secrets are removed.
pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(60);

/// The parts the loop connects.
#[derive(Debug, Clone)]
pub struct Service {
    /// The request handler.
    pub signer: Arc<Signer>,
    /// The subscriptions of the service key and every held key.
    pub subscriptions: Subscriptions,
    /// Where request events arrive.
    pub inbox: Inbox,
    /// Where replies leave.
    pub outbox: Outbox,
    /// Key continuity: replies to changes wait for their commit (set once,
    /// when the state is restored, which may be after the loop started).
    pub persist: Arc<std::sync::OnceLock<Arc<dyn PersistHook>>>,
}

impl std::fmt::Debug for dyn PersistHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersistHook")
    }
}

impl Service {
    /// The whole service around `client` (built by [`crate::relay::client`]
    /// with the same `inbox`): the signer for the `service` key, whose
    /// admin API listens on `admin_relay`; `pinned` relays are never
    /// dropped from the pool.
    pub fn new(
        client: Client,
        inbox: Inbox,
        service: Keys,
        admin_relay: RelayUrl,
        pinned: impl IntoIterator<Item = RelayUrl>,
        config: SignerConfig,
    ) -> Self {
        // Permission relays stay, whoever uses them.
        let pinned: Vec<RelayUrl> = pinned
            .into_iter()
            .chain(config.perm_relays.iter().cloned())
            .collect();
        let subscriptions = Subscriptions::new(
            client.clone(),
            service.public_key(),
            admin_relay.clone(),
            pinned,
        );
        Self {
            signer: Arc::new(Signer::new(service, admin_relay, config)),
            subscriptions,
            inbox,
            outbox: Outbox::new(client, OutboxLimits::default()),
            persist: Arc::default(),
        }
    }

    /// The same service whose replies to changes that must outlive a
    /// restart wait until `persist` has them committed by a quorum of
    /// custodians; if that fails, the owner is told the change is not
    /// confirmed ([`crate::signer::UNCONFIRMED`]) instead of "ok".
    pub fn with_persist(self, persist: Arc<dyn PersistHook>) -> Self {
        self.set_persist(persist);
        self
    }

    /// Like [`Self::with_persist`], on a running service (once).
    pub fn set_persist(&self, persist: Arc<dyn PersistHook>) {
        self.signer.expect_commits();
        let _ = self.persist.set(persist);
    }

    /// The same service with other outbox limits.
    pub fn outbox_limits(mut self, limits: OutboxLimits) -> Self {
        self.outbox = Outbox::new(self.subscriptions.client().clone(), limits);
        self
    }

    /// A service whose client connects to relays directly, without the
    /// parent's proxy: for tests and benchmarks on 127.0.0.1.
    pub fn direct(service: Keys, admin_relay: RelayUrl, config: SignerConfig) -> Self {
        let inbox = Inbox::new(InboxLimits::default());
        let limits = PoolLimits {
            max_request_bytes: config.max_request_bytes,
            max_relays: config.limits.max_relays + config.perm_relays.len(),
        };
        let client = crate::relay::client_builder(service.clone(), &inbox, limits).build();
        Self::new(client, inbox, service, admin_relay, [], config)
    }
}

/// Subscribes for the service key and every held key, says `ready` once
/// the admin relay has acknowledged its subscription (or after a bounded
/// wait: [`Subscriptions::listening`]), and serves requests until aborted.
pub async fn run(service: Service, ready: tokio::sync::oneshot::Sender<()>) {
    sync(&service).await;
    // The events the inbox takes meanwhile wait there: nothing is lost.
    service
        .subscriptions
        .listening(service.signer.admin_relay())
        .await;
    let _ = ready.send(());
    info!(
        admin_relay = %service.signer.admin_relay(),
        "listening for admin requests (kind 24135) and NIP-46 requests (kind 24133)"
    );
    let expiry = tokio::spawn(expire(service.clone()));
    let permits = Arc::new(Semaphore::new(max_in_flight()));
    let waiting = Arc::new(Semaphore::new(MAX_WAITING));
    loop {
        let queued = service.inbox.recv().await;
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let (service, waiting) = (service.clone(), Arc::clone(&waiting));
        tokio::spawn(async move {
            let signer = Arc::clone(&service.signer);
            let handled = tokio::task::spawn_blocking(move || {
                signer.handle(&queued.event, &queued.relay, crate::unix_now())
            })
            .await;
            let Ok(outcome) = handled else {
                // A panic while handling one event: already reported by the
                // panic hook; the others go on.
                return;
            };
            if outcome.change.keys_changed() {
                sync(&service).await;
            }
            drop(permit);
            let Some(reply) = outcome.reply else { return };
            if let Change::Keys(relays) = &outcome.change {
                // A nostrconnect app's first request follows its connect
                // response at once: that one always waits (only a key's
                // owner can cause it, and each is bounded).
                if outcome.also.is_some() {
                    service.subscriptions.ready(relays).await;
                } else if let Ok(_slot) = waiting.try_acquire() {
                    service.subscriptions.ready(relays).await;
                }
            }
            let reply = match (service.persist.get(), outcome.durable) {
                (Some(persist), true) => {
                    if outcome.forgets {
                        persist.rekey();
                    }
                    let change = persist.changed();
                    let committed = tokio::time::timeout(COMMIT_TIMEOUT, persist.persist(change))
                        .await
                        .unwrap_or_else(|_| Err("no commit in time".into()));
                    match (committed, outcome.unconfirmed) {
                        (Ok(_), _) => reply,
                        (Err(e), unconfirmed) => {
                            warn!("a change is not confirmed by the custodians: {e}");
                            // Never "ok" for what is not committed.
                            let Some(unconfirmed) = unconfirmed else {
                                return;
                            };
                            unconfirmed
                        }
                    }
                }
                _ => reply,
            };
            if let Some(also) = outcome.also {
                // The app waits on its own relays only: each must take it.
                service.outbox.send_each(also).await;
            }
            service.outbox.send(reply).await;
        });
    }
    expiry.abort();
}

/// Brings the subscriptions of the relays whose keys changed up to date.
pub async fn sync(service: &Service) {
    let signer = &service.signer;
    service
        .subscriptions
        .sync(|| signer.store().take_relay_changes())
        .await;
}

async fn expire(service: Service) {
    let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
    let mut overflowed = 0;
    loop {
        tick.tick().await;
        if service.signer.expire(crate::unix_now()) {
            info!("expired test keys deleted");
            sync(&service).await;
        }
        let now_overflowed = service.signer.dedupe_overflow();
        if now_overflowed > overflowed {
            warn!(
                ids = now_overflowed - overflowed,
                "the dedupe cache overflowed into its filters in the last minute (a flood?); a few new requests may be refused as possible replays"
            );
        }
        overflowed = now_overflowed;
    }
}
