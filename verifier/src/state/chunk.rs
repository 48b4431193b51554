//! One sealed chunk of a snapshot. The layout is fixed, so it is read
//! without a general decoder, and all of it up to the nonce is the AEAD's
//! associated data:
//!
//! ```text
//! "enclaved-state/1"          16 bytes, the format
//! launcher                    32 bytes, x-only public key
//! epoch, version              8 bytes each, big-endian
//! policy                      32 bytes, digest of the sealed release policy
//! key id                      16 bytes
//! index, count                4 bytes each, big-endian, index < count
//! name length, name           1 byte, then that many bytes
//! nonce                       12 bytes
//! ciphertext and tag          the plaintext's length + 16 bytes
//! ```

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM_SIV, NONCE_LEN};
use nostr::PublicKey;
use zeroize::Zeroizing;

use super::identity::{check_name, StateIdentity};
use super::key::{KeyId, StateKey};
use super::{CHUNK_PLAINTEXT, MAX_CHUNKS, MAX_SEALED_CHUNK};
use crate::error::{malformed, Error};

/// The format's first bytes.
pub const MAGIC: &[u8; 16] = b"enclaved-state/1";
/// Bytes of the AEAD tag.
const TAG_LEN: usize = 16;

/// What a chunk says it is, all of it authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Whose state.
    pub identity: StateIdentity,
    /// The restore generation that wrote it.
    pub epoch: u64,
    /// The snapshot's version within the state's history.
    pub version: u64,
    /// Digest of the release policy the state is sealed with
    /// ([`crate::release::ReleasePolicy::digest`]).
    pub policy: [u8; 32],
    /// Which state key seals it.
    pub key_id: KeyId,
    /// Its place in the snapshot.
    pub index: u32,
    /// How many chunks the snapshot has.
    pub count: u32,
}

/// A sealed chunk: its header (read, not yet authenticated, when parsed)
/// and its whole encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedChunk {
    /// What the chunk says it is.
    pub header: ChunkHeader,
    /// The chunk as stored.
    pub bytes: Vec<u8>,
    /// Where the nonce starts (the end of the associated data).
    aad_len: usize,
}

impl ChunkHeader {
    fn check(&self) -> Result<(), Error> {
        if self.count == 0 || self.count > MAX_CHUNKS {
            return Err(Error::TooLarge {
                what: "chunks in a state snapshot",
                size: self.count as usize,
                max: MAX_CHUNKS as usize,
            });
        }
        if self.index >= self.count {
            return Err(malformed(
                "state chunk",
                format!("index {} of {} chunks", self.index, self.count),
            ));
        }
        Ok(())
    }

    fn encode(&self) -> Vec<u8> {
        let name = self.identity.name().as_bytes();
        let mut out = Vec::with_capacity(125 + name.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.identity.launcher().to_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.policy);
        out.extend_from_slice(&self.key_id.0);
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        // ok: names are at most 64 bytes (check_name).
        out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(name);
        out
    }

    /// The first field of `expected` that differs from `self`, as an error.
    fn must_equal(&self, expected: &Self) -> Result<(), Error> {
        let field = |what: &'static str, e: String, f: String| {
            Err(Error::Mismatch {
                what,
                expected: e,
                found: f,
            })
        };
        if self.identity != expected.identity {
            return field(
                "state of the chunk",
                expected.identity.to_string(),
                self.identity.to_string(),
            );
        }
        if (self.epoch, self.version) != (expected.epoch, expected.version) {
            return field(
                "epoch and version of the chunk",
                format!("{}.{}", expected.epoch, expected.version),
                format!("{}.{}", self.epoch, self.version),
            );
        }
        if self.policy != expected.policy {
            return field(
                "release policy of the chunk",
                hex::encode(expected.policy),
                hex::encode(self.policy),
            );
        }
        if self.key_id != expected.key_id {
            return field(
                "state key of the chunk",
                expected.key_id.to_string(),
                self.key_id.to_string(),
            );
        }
        if (self.index, self.count) != (expected.index, expected.count) {
            return field(
                "place of the chunk",
                format!("{} of {}", expected.index, expected.count),
                format!("{} of {}", self.index, self.count),
            );
        }
        Ok(())
    }
}

impl SealedChunk {
    /// Seals `plaintext` (at most [`CHUNK_PLAINTEXT`] bytes) as `header`
    /// says, under `key`, whose id the header must carry.
    pub fn seal(key: &StateKey, header: ChunkHeader, plaintext: &[u8]) -> Result<Self, Error> {
        header.check()?;
        if header.key_id != key.id() {
            return Err(Error::Mismatch {
                what: "state key of the chunk",
                expected: key.id().to_string(),
                found: header.key_id.to_string(),
            });
        }
        if plaintext.len() > CHUNK_PLAINTEXT {
            return Err(Error::TooLarge {
                what: "state chunk plaintext",
                size: plaintext.len(),
                max: CHUNK_PLAINTEXT,
            });
        }
        let aad = header.encode();
        let sealer = aead_key(key)?;
        let mut buffer = Zeroizing::new(plaintext.to_vec());
        let nonce = sealer
            .seal_in_place_append_tag(Aad::from(aad.as_slice()), &mut *buffer)
            .map_err(|_| malformed("state chunk", "sealing failed"))?;
        let mut bytes = Vec::with_capacity(aad.len() + NONCE_LEN + buffer.len());
        bytes.extend_from_slice(&aad);
        bytes.extend_from_slice(nonce.as_ref());
        bytes.extend_from_slice(&buffer);
        Ok(Self {
            header,
            aad_len: aad.len(),
            bytes,
        })
    }

    /// Reads a stored chunk's header; nothing is authenticated yet.
    /// Capped at [`MAX_SEALED_CHUNK`] bytes before anything is read.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, Error> {
        if bytes.len() > MAX_SEALED_CHUNK {
            return Err(Error::TooLarge {
                what: "sealed state chunk",
                size: bytes.len(),
                max: MAX_SEALED_CHUNK,
            });
        }
        let mut r = Reader(&bytes);
        if r.take(MAGIC.len())? != MAGIC {
            return Err(Error::Unsupported {
                what: "state chunk format",
                found: String::from_utf8_lossy(bytes.get(..MAGIC.len()).unwrap_or(&[]))
                    .into_owned(),
            });
        }
        let launcher =
            PublicKey::from_slice(r.take(32)?).map_err(|e| malformed("state chunk launcher", e))?;
        let epoch = u64::from_be_bytes(r.array()?);
        let version = u64::from_be_bytes(r.array()?);
        let policy: [u8; 32] = r.array()?;
        let key_id = KeyId(r.array()?);
        let index = u32::from_be_bytes(r.array()?);
        let count = u32::from_be_bytes(r.array()?);
        let [name_len] = r.array()?;
        let name = std::str::from_utf8(r.take(usize::from(name_len))?)
            .map_err(|e| malformed("state chunk name", e))?;
        check_name(name)?;
        let header = ChunkHeader {
            identity: StateIdentity::new(launcher, name)?,
            epoch,
            version,
            policy,
            key_id,
            index,
            count,
        };
        header.check()?;
        let aad_len = bytes.len() - r.0.len();
        if r.0.len() < NONCE_LEN + TAG_LEN {
            return Err(malformed("state chunk", "shorter than a nonce and a tag"));
        }
        Ok(Self {
            header,
            aad_len,
            bytes,
        })
    }

    /// The plaintext, if the chunk is `expected` (every header field) and
    /// opens under `key`. Erased on drop.
    pub fn open(
        &self,
        key: &StateKey,
        expected: &ChunkHeader,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.header.must_equal(expected)?;
        if key.id() != expected.key_id {
            return Err(Error::Mismatch {
                what: "state key of the chunk",
                expected: expected.key_id.to_string(),
                found: key.id().to_string(),
            });
        }
        let (aad, rest) = self
            .bytes
            .split_at_checked(self.aad_len)
            .ok_or_else(|| malformed("state chunk", "truncated"))?;
        let (nonce, sealed) = rest
            .split_at_checked(NONCE_LEN)
            .ok_or_else(|| malformed("state chunk", "truncated"))?;
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| malformed("state chunk", "bad nonce"))?;
        let mut buffer = Zeroizing::new(sealed.to_vec());
        let plain_len = aead_key(key)?
            .open_in_place(nonce, Aad::from(aad), buffer.as_mut_slice())
            .map_err(|_| Error::BadSignature("sealed state chunk"))?
            .len();
        buffer.truncate(plain_len);
        Ok(buffer)
    }
}

fn aead_key(key: &StateKey) -> Result<RandomizedNonceKey, Error> {
    RandomizedNonceKey::new(&AES_256_GCM_SIV, key.bytes())
        .map_err(|_| malformed("state key", "not an AES-256 key"))
}

/// Reads fixed fields off the front of a byte string.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let (head, rest) = self
            .0
            .split_at_checked(n)
            .ok_or_else(|| malformed("state chunk", "truncated header"))?;
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
