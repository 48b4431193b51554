//! What a snapshot's plaintext holds: every key an enclave holds and what
//! goes with it, and its decision log, as CBOR (ciborium). New code must
//! read what older released code wrote, so the format is versioned
//! ([`RECORD_FORMAT`]) and changes only by adding fields with defaults.
//!
//! Secrets (user keys, bunker secrets) are erased when a record is
//! dropped, and the encoding is written into memory that is erased too
//! ([`StateRecord::to_cbor`]).

use std::fmt;

use serde::de::{Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{malformed, Error};
use crate::grant::record::{GrantRecord, RefusalRecord};

/// The format written.
pub const RECORD_FORMAT: u32 = 1;

/// An enclave's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRecord {
    /// [`RECORD_FORMAT`] of the code that wrote it.
    pub format: u32,
    /// When it was written (unix seconds).
    pub written_at: u64,
    /// Every key held.
    pub keys: Vec<KeyRecord>,
    /// The decision log, all keys', oldest first.
    pub log: Vec<LogRecord>,
    /// The log's next entry number (numbers are never reused).
    pub next_log_seq: u64,
    /// When the operator abandoned an earlier state under this name and
    /// started over (unix seconds); every later snapshot keeps it, so the
    /// enclaves holding the state keep announcing it.
    #[serde(default)]
    pub reset_at: Option<u64>,
}

/// One held key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The private key.
    pub secret: SecretBytes,
    /// Where its requests arrive.
    pub relays: Vec<String>,
    /// A test key's expiry, or an owned key's import and last use.
    pub life: LifeRecord,
    /// Its apps.
    #[serde(default)]
    pub apps: Vec<AppRecord>,
    /// Its pending bunker secrets.
    #[serde(default)]
    pub secrets: Vec<PendingRecord>,
    /// When its relays last changed (unix seconds).
    #[serde(default)]
    pub relay_changes: Vec<u64>,
    /// What nsec.app said last about each app.
    #[serde(default)]
    pub nsec_app: Vec<NsecAppRecord>,
    /// When the owner last changed each app's access.
    #[serde(default)]
    pub owner_at: Vec<(Key, u64)>,
    /// The newest owner change forgotten (unix seconds).
    #[serde(default)]
    pub owner_floor: u64,
    /// The newest nsec.app timestamp forgotten (ms).
    #[serde(default)]
    pub nsec_floor: u64,
    /// How the last bunker secrets ended: a fingerprint and `spent`,
    /// `expired` or `dropped`.
    #[serde(default)]
    pub ended_secrets: Vec<(u64, String)>,
}

/// Whose a key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LifeRecord {
    /// A throw-away test key, deleted at this time.
    Test {
        /// Unix seconds.
        expires_at: u64,
    },
    /// Its owner's.
    Owned {
        /// When it was first imported.
        imported: u64,
        /// Its last use.
        last_used: u64,
    },
}

/// An app allowed on a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    /// The app's public key.
    pub app: Key,
    /// Its grant.
    pub grant: GrantRecord,
    /// Where the grant came from (`crate::grant::wire::source`).
    pub source: String,
    /// When the grant started.
    pub since: u64,
    /// Its last request: when, and the method.
    #[serde(default)]
    pub last: Option<(u64, String)>,
    /// What it said about itself.
    #[serde(default)]
    pub claims: Option<String>,
    /// Relays the key listens on for this app only.
    #[serde(default)]
    pub added: Vec<String>,
}

/// A pending bunker secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRecord {
    /// The secret.
    pub secret: SecretString,
    /// When it expires.
    pub until: u64,
    /// The policy of the app that spends it ([`crate::grant::Policy::to_json`]).
    pub policy: String,
}

/// What nsec.app said last about one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsecAppRecord {
    /// The app.
    pub app: Key,
    /// Its `updateTimestamp` (ms).
    pub updated: u64,
    /// Its `permUpdateTimestamp` (ms).
    pub perms_updated: u64,
    /// Whether it deleted the app.
    pub deleted: bool,
    /// When the owner last ended the grant nsec.app gave (unix seconds).
    pub owner_at: u64,
}

/// One decision log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// The key it is about.
    pub key: Key,
    /// Its number.
    pub seq: u64,
    /// When (unix seconds).
    pub time: u64,
    /// How many times in a row.
    pub count: u32,
    /// The app.
    pub app: Key,
    /// The method's name.
    pub method: String,
    /// The event kind, for `sign_event`.
    pub kind: Option<u16>,
    /// Why it was refused; `None`: allowed.
    pub refusal: Option<RefusalRecord>,
}

/// A public key, as 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub [u8; 32]);

/// 32 secret bytes, erased on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(pub Zeroizing<[u8; 32]>);

/// A secret string, erased on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(pub Zeroizing<String>);

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(<secret>)")
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<secret>)")
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0.as_slice())
    }
}

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Reads 32 bytes (a CBOR byte string).
struct Bytes32;

impl Visitor<'_> for Bytes32 {
    type Value = Zeroizing<[u8; 32]>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("32 bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        let mut out = Zeroizing::new([0u8; 32]);
        if v.len() != 32 {
            return Err(E::invalid_length(v.len(), &self));
        }
        out.copy_from_slice(v);
        Ok(out)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_bytes(Bytes32).map(|b| Self(*b))
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_bytes(Bytes32).map(Self)
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut text = String::deserialize(d)?;
        let secret = Zeroizing::new(text.clone());
        text.zeroize();
        Ok(Self(secret))
    }
}

/// Where a record is encoded: memory that is erased, including what it
/// leaves behind when it grows.
struct ErasingWriter(Zeroizing<Vec<u8>>);

impl std::io::Write for ErasingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let needed = self.0.len().saturating_add(buf.len());
        if needed > self.0.capacity() {
            let mut grown = Zeroizing::new(Vec::with_capacity(needed.max(self.0.capacity() * 2)));
            grown.extend_from_slice(&self.0);
            // The old buffer is erased as it is dropped.
            self.0 = grown;
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl StateRecord {
    /// An empty state at `now`.
    pub fn new(now: u64) -> Self {
        Self {
            format: RECORD_FORMAT,
            written_at: now,
            keys: Vec::new(),
            log: Vec::new(),
            next_log_seq: 0,
            reset_at: None,
        }
    }

    /// The record as CBOR, in memory erased on drop.
    pub fn to_cbor(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut out = ErasingWriter(Zeroizing::new(Vec::with_capacity(4096)));
        ciborium::into_writer(self, &mut out).map_err(|e| malformed("state record", e))?;
        Ok(out.0)
    }

    /// The record in `cbor` (an opened snapshot: authenticated, so written
    /// by released code). A format newer than this code's is refused: the
    /// enclave waits for its upgrade rather than dropping what it cannot
    /// read.
    pub fn from_cbor(cbor: &[u8]) -> Result<Self, Error> {
        let record: Self = ciborium::from_reader(cbor).map_err(|e| malformed("state record", e))?;
        if record.format > RECORD_FORMAT {
            return Err(Error::Unsupported {
                what: "state record format",
                found: format!("{} (this code reads up to {RECORD_FORMAT})", record.format),
            });
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests;
