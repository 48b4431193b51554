//! The restore driver's reach in production: custodians through the relay
//! pool ([`RelayCustodians`]: each request to the custodian's admin
//! relay, where the service key listens for its reply too), and the
//! parent's state store through the metadata link ([`ParentStorage`], one
//! connection per call, vsock in production).

use std::sync::Arc;
use std::time::Duration;

use nostr::RelayUrl;
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
}

impl Custodians for RelayCustodians {
    async fn call(&self, custodian: &CustodianInstance, call: Call) -> Result<Reply, String> {
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
