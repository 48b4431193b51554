//! A whole snapshot: its plaintext cut into chunks, each sealed, and the
//! hash that names it. Custodians record the [`SnapshotRef`]; a host only
//! ever stores and returns the chunks.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::chunk::{ChunkHeader, SealedChunk};
use super::identity::StateIdentity;
use super::key::{KeyId, StateKey};
use super::{CHUNK_PLAINTEXT, MAX_CHUNKS};
use crate::error::Error;

/// What names one snapshot: whose, which epoch and version, under which
/// policy and key, how many chunks, and the hash of them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRef {
    /// Whose state.
    pub identity: StateIdentity,
    /// The restore generation that wrote it.
    pub epoch: u64,
    /// Its version.
    pub version: u64,
    /// Digest of the sealed release policy.
    pub policy: [u8; 32],
    /// The state key's id.
    pub key_id: KeyId,
    /// How many chunks.
    pub count: u32,
    /// [`snapshot_hash`] of its chunks.
    pub hash: [u8; 32],
}

/// A sealed snapshot, ready to store.
#[derive(Debug, Clone)]
pub struct SealedSnapshot {
    /// What names it.
    pub reference: SnapshotRef,
    /// The sealed chunks, in order.
    pub chunks: Vec<SealedChunk>,
}

/// Domain of the snapshot hash.
const HASH_DOMAIN: &[u8] = b"enclaved-state-snapshot/1";

/// The hash that names a snapshot: SHA-256 over a domain, the number of
/// chunks and each chunk's own SHA-256, in order. A host that drops,
/// reorders, repeats or replaces a chunk changes it.
pub fn snapshot_hash<'a>(chunks: impl ExactSizeIterator<Item = &'a [u8]>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(HASH_DOMAIN);
    hasher.update((chunks.len() as u64).to_be_bytes());
    for chunk in chunks {
        hasher.update(Sha256::digest(chunk));
    }
    hasher.finalize().into()
}

impl SealedSnapshot {
    /// Seals `plaintext` as version `version` of epoch `epoch` of
    /// `identity`'s state, under `key` and the policy with digest `policy`.
    /// An empty state is one empty chunk.
    pub fn seal(
        key: &StateKey,
        identity: &StateIdentity,
        epoch: u64,
        version: u64,
        policy: [u8; 32],
        plaintext: &[u8],
    ) -> Result<Self, Error> {
        let pieces: Vec<&[u8]> = if plaintext.is_empty() {
            vec![&[]]
        } else {
            plaintext.chunks(CHUNK_PLAINTEXT).collect()
        };
        let count = u32::try_from(pieces.len())
            .ok()
            .filter(|n| *n <= MAX_CHUNKS)
            .ok_or(Error::TooLarge {
                what: "state snapshot",
                size: plaintext.len(),
                max: CHUNK_PLAINTEXT * MAX_CHUNKS as usize,
            })?;
        let mut chunks = Vec::with_capacity(pieces.len());
        for (index, piece) in (0u32..).zip(pieces) {
            let header = ChunkHeader {
                identity: identity.clone(),
                epoch,
                version,
                policy,
                key_id: key.id(),
                index,
                count,
            };
            chunks.push(SealedChunk::seal(key, header, piece)?);
        }
        let hash = snapshot_hash(chunks.iter().map(|c| c.bytes.as_slice()));
        Ok(Self {
            reference: SnapshotRef {
                identity: identity.clone(),
                epoch,
                version,
                policy,
                key_id: key.id(),
                count,
                hash,
            },
            chunks,
        })
    }
}

impl SnapshotRef {
    /// The header chunk `index` must carry.
    pub fn chunk_header(&self, index: u32) -> ChunkHeader {
        ChunkHeader {
            identity: self.identity.clone(),
            epoch: self.epoch,
            version: self.version,
            policy: self.policy,
            key_id: self.key_id,
            index,
            count: self.count,
        }
    }

    /// The plaintext of the snapshot this names, from `chunks` as a host
    /// returned them. The hash is checked before anything is decrypted, so
    /// an older, partial or made-up snapshot is refused at once; then
    /// every chunk must open as its place in this snapshot. Erased on drop.
    pub fn open(
        &self,
        key: &StateKey,
        chunks: &[SealedChunk],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        if chunks.len() != self.count as usize {
            return Err(Error::Mismatch {
                what: "chunks of the snapshot",
                expected: self.count.to_string(),
                found: chunks.len().to_string(),
            });
        }
        let hash = snapshot_hash(chunks.iter().map(|c| c.bytes.as_slice()));
        if hash != self.hash {
            return Err(Error::Mismatch {
                what: "snapshot hash",
                expected: hex::encode(self.hash),
                found: hex::encode(hash),
            });
        }
        // Sized once: a buffer that grows leaves unerased copies behind.
        let capacity = chunks.iter().map(|c| c.bytes.len()).sum();
        let mut plaintext = Zeroizing::new(Vec::with_capacity(capacity));
        for (index, chunk) in (0u32..).zip(chunks) {
            let piece = chunk.open(key, &self.chunk_header(index))?;
            plaintext.extend_from_slice(&piece);
        }
        Ok(plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> StateIdentity {
        StateIdentity::new(nostr::Keys::generate().public_key(), "main").unwrap()
    }

    #[test]
    fn a_snapshot_round_trips_across_chunks() {
        let key = StateKey::generate().unwrap();
        let id = identity();
        let state: Vec<u8> = (0..CHUNK_PLAINTEXT * 2 + 10).map(|i| i as u8).collect();
        let sealed = SealedSnapshot::seal(&key, &id, 1, 9, [1; 32], &state).unwrap();
        assert_eq!(sealed.reference.count, 3);
        let stored: Vec<SealedChunk> = sealed
            .chunks
            .iter()
            .map(|c| SealedChunk::parse(c.bytes.clone()).unwrap())
            .collect();
        assert_eq!(
            sealed.reference.open(&key, &stored).unwrap().as_slice(),
            &state[..]
        );

        let empty = SealedSnapshot::seal(&key, &id, 1, 10, [1; 32], b"").unwrap();
        assert_eq!(empty.reference.count, 1);
        assert!(empty
            .reference
            .open(&key, &empty.chunks)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_host_cannot_swap_drop_or_replay_chunks() {
        let key = StateKey::generate().unwrap();
        let id = identity();
        let state = vec![5u8; CHUNK_PLAINTEXT + 1];
        let v1 = SealedSnapshot::seal(&key, &id, 1, 1, [1; 32], &state).unwrap();
        let v2 = SealedSnapshot::seal(&key, &id, 1, 2, [1; 32], &state).unwrap();
        let r = &v2.reference;
        // Reordered, dropped, repeated, or a chunk of the older version.
        let swapped = vec![v2.chunks[1].clone(), v2.chunks[0].clone()];
        let dropped = vec![v2.chunks[0].clone()];
        let repeated = vec![v2.chunks[0].clone(), v2.chunks[0].clone()];
        let mixed = vec![v2.chunks[0].clone(), v1.chunks[1].clone()];
        for (what, chunks) in [
            ("swapped", swapped),
            ("dropped", dropped),
            ("repeated", repeated),
            ("mixed", mixed),
        ] {
            assert!(
                matches!(r.open(&key, &chunks), Err(Error::Mismatch { .. })),
                "{what}"
            );
        }
        // The older snapshot, whole, under the newer one's name.
        assert!(r.open(&key, &v1.chunks).is_err());
        // The older snapshot's chunks with the hash forged to match: the
        // chunks still say version 1.
        let forged = SnapshotRef {
            hash: v1.reference.hash,
            ..r.clone()
        };
        assert!(matches!(
            forged.open(&key, &v1.chunks),
            Err(Error::Mismatch { .. })
        ));
    }

    #[test]
    fn a_snapshot_too_large_is_refused_before_sealing() {
        let key = StateKey::generate().unwrap();
        // Zeroed pages: nothing is touched until a chunk is sealed.
        let state = vec![0u8; CHUNK_PLAINTEXT * MAX_CHUNKS as usize + 1];
        assert!(matches!(
            SealedSnapshot::seal(&key, &identity(), 1, 1, [0; 32], &state),
            Err(Error::TooLarge { .. })
        ));
    }
}
