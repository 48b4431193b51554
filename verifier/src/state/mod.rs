//! Sealed state: how an enclave's keys, grants and logs are kept outside
//! it, so that they outlive the enclave (see `DESIGN.md`, key continuity).
//!
//! The state is encrypted in RAM with a random 256-bit [`StateKey`] and
//! stored, as ciphertext only, by untrusted hosts. A snapshot is split into
//! [`chunk`]s of at most [`CHUNK_PLAINTEXT`] bytes, each sealed with
//! AES-256-GCM-SIV (aws-lc-rs) under a random nonce. Each chunk's
//! associated data binds:
//! - the [`StateIdentity`] (launcher and state name);
//! - the epoch and version of the snapshot;
//! - the digest of the sealed release policy;
//! - the key id, and the chunk's index and count.
//!
//! A chunk of another identity, epoch, version, policy or key, or moved to
//! another index, does not open. A [`snapshot`] is named by the hash of
//! its chunks, which custodians record, so that an older or made-up
//! snapshot is refused before anything is decrypted.
//!
//! This module is the format only. Who holds the key, and which version is
//! current, is the custody protocol's business.

pub mod chunk;
pub mod identity;
pub mod key;
pub mod record;
pub mod snapshot;

pub use chunk::{ChunkHeader, SealedChunk};
pub use identity::StateIdentity;
pub use key::{KeyId, StateKey};
pub use record::StateRecord;
pub use snapshot::{SealedSnapshot, SnapshotRef};

/// Most plaintext bytes in one chunk.
pub const CHUNK_PLAINTEXT: usize = 512 * 1024;
/// Most bytes of one sealed chunk: its plaintext, the 16-byte tag, the
/// nonce and a header of fixed fields and a state name of at most
/// [`identity::MAX_NAME`] bytes, with room to spare.
pub const MAX_SEALED_CHUNK: usize = CHUNK_PLAINTEXT + 1024;
/// Most chunks in one snapshot (256 MiB of state).
pub const MAX_CHUNKS: u32 = 512;
