//! Custody messages, as JSON inside NIP-44 (kind
//! [`super::KIND_CUSTODY`]) between service keys. Every request carries
//! the requester's current instance event, which the custodian verifies
//! (attestation, launcher, release under the state's sealed policy)
//! before it reads anything else:
//!
//! ```text
//! {"instance":"<63793 event JSON>","call":{"method":"claim","state":{…},"epoch":4}}
//! → {"result":"claimed","epoch":4,"version":17,"hash":"…","key":"…","key_id":"…",…}
//! → {"result":"refused","code":"leased","reason":"…","retry_in_ms":12000}
//! ```

use nostr::PublicKey;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{malformed, Error};
use crate::state::record::SecretString;
use crate::state::{KeyId, StateIdentity, StateKey};

/// The method of the request envelope (`crate::rpc::Request`) that
/// carries a custody request as its one parameter; the response's result
/// is the [`Reply`].
pub const METHOD_CUSTODY: &str = "custody";

/// Largest custody message read (an instance event with its attestation
/// and release signatures, a release policy and a custodian list).
pub const MAX_CUSTODY_MESSAGE: usize = 64 * 1024;

/// Whose state, on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateName {
    /// The launcher's public key, hex.
    pub launcher: String,
    /// The state name.
    pub name: String,
}

/// A custody request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodyRequest {
    /// The requester's current instance event (JSON).
    pub instance: String,
    /// What it asks.
    pub call: Call,
}

/// What a requester asks of a custodian.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Call {
    /// Keep a new state (the operator's `--init-state`).
    Seal {
        /// Whose.
        state: StateName,
        /// The state key, hex (erased on drop, never printed).
        key: SecretString,
        /// Its id, hex.
        key_id: String,
        /// The release policy the state is sealed with (its JSON).
        policy: String,
        /// The custodian set: the launchers whose enclaves keep the state
        /// key, hex. Launchers, not service keys: a custodian's service key
        /// changes at every restart, its launcher does not.
        custodians: Vec<String>,
        /// The first snapshot's version and hash (hex).
        version: u64,
        /// The first snapshot's hash, hex.
        hash: String,
    },
    /// Take over the state in `epoch`, fencing every older one.
    Claim {
        /// Whose.
        state: StateName,
        /// The new epoch.
        epoch: u64,
    },
    /// Snapshot `version` with `hash` is durable: make it current.
    Commit {
        /// Whose.
        state: StateName,
        /// The requester's epoch.
        epoch: u64,
        /// The new version.
        version: u64,
        /// Its hash, hex.
        hash: String,
        /// The key that seals it, hex.
        key_id: String,
    },
    /// Snapshot `version` with `hash`, sealed under a new state key, is
    /// durable: make it current and forget the old key, so that older
    /// snapshots (which may hold a deleted user key) can no longer be
    /// opened through this custodian. Only from the holder, as a commit.
    Rekey {
        /// Whose.
        state: StateName,
        /// The requester's epoch.
        epoch: u64,
        /// The new version.
        version: u64,
        /// Its hash, hex.
        hash: String,
        /// The new state key, hex (erased on drop, never printed).
        key: SecretString,
        /// Its id, hex.
        key_id: String,
    },
    /// Renew the lease of `epoch`.
    Heartbeat {
        /// Whose.
        state: StateName,
        /// The requester's epoch.
        epoch: u64,
    },
}

/// A custodian's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// A claim was accepted: what the custodian holds of the state.
    Claimed(Claimed),
    /// A seal, commit or heartbeat was recorded; the state is now at
    /// `epoch` and `version`.
    Ok {
        /// The current epoch.
        epoch: u64,
        /// The current version.
        version: u64,
    },
    /// Refused.
    Refused {
        /// A short code ([`super::ledger::Refusal::code`]).
        code: String,
        /// Why, in words.
        reason: String,
        /// The custodian's current epoch, when the requester's is older.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        current_epoch: Option<u64>,
        /// When a claim may be tried again (ms), when a lease still runs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_in_ms: Option<u64>,
    },
}

/// What a custodian holds of a state, handed to the enclave that claimed it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claimed {
    /// The epoch the claim took.
    pub epoch: u64,
    /// The epoch that committed the newest version, and in which its
    /// snapshot was sealed.
    pub commit_epoch: u64,
    /// The newest committed version.
    pub version: u64,
    /// Its snapshot hash, hex.
    pub hash: String,
    /// The state key, hex (erased on drop, never printed).
    pub key: SecretString,
    /// Its id, hex.
    pub key_id: String,
    /// The sealed release policy (JSON).
    pub policy: String,
    /// The sealed custodian set, hex launcher keys.
    pub custodians: Vec<String>,
}

impl std::fmt::Debug for Claimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claimed")
            .field("epoch", &self.epoch)
            .field("commit_epoch", &self.commit_epoch)
            .field("version", &self.version)
            .field("hash", &self.hash)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl StateName {
    /// The wire form of `identity`.
    pub fn of(identity: &StateIdentity) -> Self {
        Self {
            launcher: identity.launcher().to_hex(),
            name: identity.name().to_owned(),
        }
    }

    /// The identity it names.
    pub fn identity(&self) -> Result<StateIdentity, Error> {
        let launcher = PublicKey::from_hex(&self.launcher)
            .map_err(|_| malformed("state launcher", "not a hex public key"))?;
        StateIdentity::new(launcher, &self.name)
    }
}

impl Call {
    /// The state it is about.
    pub fn state(&self) -> &StateName {
        match self {
            Self::Seal { state, .. }
            | Self::Claim { state, .. }
            | Self::Commit { state, .. }
            | Self::Rekey { state, .. }
            | Self::Heartbeat { state, .. } => state,
        }
    }
}

impl CustodyRequest {
    /// Parses a request, capped at [`MAX_CUSTODY_MESSAGE`].
    pub fn from_json(text: &str) -> Result<Self, Error> {
        cap(text, "custody request")?;
        serde_json::from_str(text).map_err(|e| malformed("custody request", e))
    }

    /// The request as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl CustodyRequest {
    /// The request in the envelope custody messages travel in.
    pub fn to_rpc(&self) -> crate::rpc::Request {
        crate::rpc::Request::new(METHOD_CUSTODY, crate::rpc::Params::new([self.to_json()]))
    }

    /// The custody request an envelope carries.
    pub fn from_rpc(request: &crate::rpc::Request) -> Result<Self, Error> {
        if request.method != METHOD_CUSTODY {
            return Err(Error::Unsupported {
                what: "custody method",
                found: request.method.clone(),
            });
        }
        match (request.params.len(), request.params.get(0)) {
            (1, Some(json)) => Self::from_json(json),
            _ => Err(malformed("custody request", "takes one parameter")),
        }
    }
}

impl Reply {
    /// Parses a reply, capped at [`MAX_CUSTODY_MESSAGE`].
    pub fn from_json(text: &str) -> Result<Self, Error> {
        cap(text, "custody reply")?;
        serde_json::from_str(text).map_err(|e| malformed("custody reply", e))
    }

    /// The reply as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Claimed {
    /// The state key it carries.
    pub fn state_key(&self) -> Result<StateKey, Error> {
        Ok(StateKey::from_parts(
            hex32(&self.key.0, "state key")?,
            key_id(&self.key_id)?,
        ))
    }

    /// The snapshot hash it names.
    pub fn snapshot_hash(&self) -> Result<[u8; 32], Error> {
        Ok(*hex32(&self.hash, "snapshot hash")?)
    }
}

/// A key id from hex.
pub fn key_id(text: &str) -> Result<KeyId, Error> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(text, &mut id).map_err(|e| malformed("state key id", e))?;
    Ok(KeyId(id))
}

/// 32 bytes from hex, in memory erased on drop.
pub fn hex32(text: &str, what: &'static str) -> Result<Zeroizing<[u8; 32]>, Error> {
    let mut out = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text, out.as_mut_slice()).map_err(|e| malformed(what, e))?;
    Ok(out)
}

fn cap(text: &str, what: &'static str) -> Result<(), Error> {
    if text.len() > MAX_CUSTODY_MESSAGE {
        return Err(Error::TooLarge {
            what,
            size: text.len(),
            max: MAX_CUSTODY_MESSAGE,
        });
    }
    Ok(())
}
