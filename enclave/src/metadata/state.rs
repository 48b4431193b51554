//! Sealed state through the parent: snapshots are stored chunk by chunk
//! and read back by the [`SnapshotRef`] that names them. The parent is
//! untrusted storage: what it returns is opened only if it hashes to the
//! reference ([`SnapshotRef::open`]); here it is only parsed and capped.

use tokio::io::{AsyncRead, AsyncWrite};
use verifier::protocol::state::{chunk_from_result, list_from_result};
use verifier::protocol::{StateRequest, StoredSnapshot};
use verifier::state::{SealedChunk, SealedSnapshot, SnapshotRef, StateIdentity, MAX_CHUNKS};

use super::{MetadataClient, MetadataError};

impl<S: AsyncRead + AsyncWrite + Unpin> MetadataClient<S> {
    /// Stores every chunk of `snapshot`, one after another; done when the
    /// parent has written the last one.
    pub async fn put_snapshot(&mut self, snapshot: &SealedSnapshot) -> Result<(), MetadataError> {
        for chunk in &snapshot.chunks {
            let request = StateRequest::Put(chunk.clone()).to_request("");
            let result = self.call(request).await?;
            if !result.is_empty() {
                return Err(MetadataError::Malformed(
                    "state_put answered with a result".into(),
                ));
            }
        }
        Ok(())
    }

    /// The chunks of the snapshot `reference` names, as the parent holds
    /// them (not yet checked: see [`SnapshotRef::open`]).
    pub async fn get_snapshot(
        &mut self,
        reference: &SnapshotRef,
    ) -> Result<Vec<SealedChunk>, MetadataError> {
        if reference.count > MAX_CHUNKS {
            return Err(MetadataError::Malformed(format!(
                "a snapshot of {} chunks, over {MAX_CHUNKS}",
                reference.count
            )));
        }
        let mut chunks = Vec::with_capacity(reference.count as usize);
        for index in 0..reference.count {
            let request = StateRequest::Get {
                identity: reference.identity.clone(),
                epoch: reference.epoch,
                version: reference.version,
                index,
            }
            .to_request("");
            let result = self.call(request).await?;
            let chunk =
                chunk_from_result(&result).map_err(|e| MetadataError::Malformed(e.to_string()))?;
            chunks.push(chunk);
        }
        Ok(chunks)
    }

    /// Tells the parent that the snapshot `reference` names is committed,
    /// so it is never pruned.
    pub async fn pin_snapshot(&mut self, reference: &SnapshotRef) -> Result<(), MetadataError> {
        let request = StateRequest::Pin {
            identity: reference.identity.clone(),
            epoch: reference.epoch,
            version: reference.version,
        }
        .to_request("");
        self.call(request).await.map(|_| ())
    }

    /// The snapshots the parent says it keeps of `identity`: a hint of
    /// where to look, never of which is current.
    pub async fn list_snapshots(
        &mut self,
        identity: &StateIdentity,
    ) -> Result<Vec<StoredSnapshot>, MetadataError> {
        let request = StateRequest::List {
            identity: identity.clone(),
        }
        .to_request("");
        let result = self.call(request).await?;
        list_from_result(&result).map_err(|e| MetadataError::Malformed(e.to_string()))
    }
}
