//! The restore driver's reach in production: custodians through the relay
//! pool ([`RelayCustodians`]: each request to the custodian's admin
//! relay, where the service key listens for its reply too), and the
//! parent's state store through the metadata link ([`ParentStorage`], one
//! connection per call, vsock in production).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nostr::{PublicKey, RelayUrl};
use tracing::info;
use verifier::custodian::discover::CustodianInstance;
use verifier::custodian::message::{Call, Reply};
use verifier::state::{SealedChunk, SealedSnapshot, SnapshotRef, StateIdentity};

use super::restore::{Custodians, Storage};
use crate::link::ParentAddr;
use crate::metadata::MetadataClient;
use crate::relay::subscriptions::Subscriptions;
use crate::signer::Signer;

/// Custodians reached through relays.
#[derive(Debug, Clone)]
pub struct RelayCustodians {
    /// Whose custody client sends, and whose signer hands it the replies.
    pub signer: Arc<Signer>,
    /// The service key's subscriptions, to listen on custodians' relays.
    pub subscriptions: Subscriptions,
    /// Proof of work put on each request (what custodians ask of an
    /// enclave they have not verified lately).
    pub pow_bits: u8,
    /// Where each custodian launcher's enclave is now, looked up again
    /// when one does not answer (a restarted custodian has a new service
    /// key); `None`: always where it was found at start.
    pub book: Option<Arc<CustodianBook>>,
}

/// Looks up custodians' current enclaves (on relays, in production).
pub type Finder = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<CustodianInstance>> + Send>>
        + Send
        + Sync,
>;

/// The custodians' current enclaves by launcher, refreshed by a
/// [`Finder`] at most every [`FIND_AGAIN_EVERY`].
pub struct CustodianBook {
    current: Mutex<HashMap<PublicKey, CustodianInstance>>,
    last_find: Mutex<Option<Instant>>,
    finder: Finder,
}

/// The least time between two look-ups of the custodians.
pub const FIND_AGAIN_EVERY: Duration = Duration::from_secs(10);

impl std::fmt::Debug for CustodianBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustodianBook").finish_non_exhaustive()
    }
}

impl CustodianBook {
    /// A book of `found`, refreshed with `finder`.
    pub fn new(found: &[CustodianInstance], finder: Finder) -> Self {
        Self {
            current: Mutex::new(found.iter().map(|c| (c.launcher, c.clone())).collect()),
            last_find: Mutex::new(Some(Instant::now())),
            finder,
        }
    }

    /// Where `custodian`'s launcher's enclave is now, as far as known.
    pub fn current(&self, custodian: &CustodianInstance) -> CustodianInstance {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&custodian.launcher)
            .cloned()
            .unwrap_or_else(|| custodian.clone())
    }

    /// Looks the custodians up again in the background, unless that was
    /// done in the last [`FIND_AGAIN_EVERY`].
    pub fn refresh(self: &Arc<Self>) {
        {
            let mut last = self
                .last_find
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < FIND_AGAIN_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let book = Arc::clone(self);
        tokio::spawn(async move {
            let found = (book.finder)().await;
            let mut current = book.current.lock().unwrap_or_else(PoisonError::into_inner);
            for c in found {
                let moved = current
                    .get(&c.launcher)
                    .is_none_or(|old| old.service != c.service);
                // Only launchers of the set were looked for; a newer
                // instance event of one replaces the older.
                if moved
                    && current
                        .get(&c.launcher)
                        .is_none_or(|old| old.expiration <= c.expiration)
                {
                    info!(launcher = %c.launcher, relay = %c.admin_relay, "custodian found at a new enclave");
                    current.insert(c.launcher, c);
                }
            }
        });
    }
}

impl Custodians for RelayCustodians {
    async fn call(&self, custodian: &CustodianInstance, call: Call) -> Result<Reply, String> {
        let Some(book) = &self.book else {
            return self.call_at(custodian, call).await;
        };
        let now = book.current(custodian);
        let reply = self.call_at(&now, call).await;
        if reply.is_err() {
            book.refresh();
        }
        reply
    }

    fn missing(&self, _custodian: &CustodianInstance) {
        if let Some(book) = &self.book {
            book.refresh();
        }
    }
}

impl RelayCustodians {
    async fn call_at(&self, custodian: &CustodianInstance, call: Call) -> Result<Reply, String> {
        let url = RelayUrl::parse(&custodian.admin_relay)
            .map_err(|e| format!("{}: {e}", custodian.admin_relay))?;
        self.subscriptions.listen_for_service(&url).await;
        let client = self.subscriptions.client().clone();
        let send = |event: nostr::Event| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                client
                    .send_event_to([url], &event)
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|output| {
                        if output.success.is_empty() {
                            Err(format!("no relay took the request: {:?}", output.failed))
                        } else {
                            Ok(())
                        }
                    })
            }
        };
        self.signer
            .custody_client()
            .call(&custodian.service, call, self.pow_bits, send)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The parent's state store, over the metadata link.
#[derive(Debug, Clone, Copy)]
pub struct ParentStorage {
    /// Where the parent's metadata server is.
    pub parent: ParentAddr,
}

impl ParentStorage {
    async fn client(&self) -> Result<MetadataClient<Box<dyn crate::link::Stream>>, String> {
        let stream = self
            .parent
            .connect(Duration::from_secs(10))
            .await
            .map_err(|e| format!("cannot reach the parent: {e}"))?;
        MetadataClient::connect(stream)
            .await
            .map_err(|e| e.to_string())
    }
}

impl Storage for ParentStorage {
    async fn count(
        &self,
        identity: &StateIdentity,
        epoch: u64,
        version: u64,
    ) -> Result<Option<u32>, String> {
        let list = self
            .client()
            .await?
            .list_snapshots(identity)
            .await
            .map_err(|e| e.to_string())?;
        Ok(list
            .iter()
            .find(|s| s.epoch == epoch && s.version == version)
            .map(|s| s.count))
    }

    async fn get(&self, reference: &SnapshotRef) -> Result<Vec<SealedChunk>, String> {
        // Each chunk has its own reply deadline (`REPLY_TIMEOUT`); the
        // whole is bounded by the chunk count (at most `MAX_CHUNKS`).
        self.client()
            .await?
            .get_snapshot(reference)
            .await
            .map_err(|e| e.to_string())
    }

    async fn put(&self, snapshot: &SealedSnapshot) -> Result<(), String> {
        self.client()
            .await?
            .put_snapshot(snapshot)
            .await
            .map_err(|e| e.to_string())
    }

    async fn pin(&self, reference: &SnapshotRef) -> Result<(), String> {
        self.client()
            .await?
            .pin_snapshot(reference)
            .await
            .map_err(|e| e.to_string())
    }
}
