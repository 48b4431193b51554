//! The state methods of the metadata connection: the enclave hands the
//! parent sealed chunks to keep on disk and reads them back. The parent
//! learns nothing from them but their headers, and nothing it returns is
//! trusted: the enclave opens only the snapshot that its custodians name
//! ([`crate::state::SnapshotRef::open`]).
//!
//! ```text
//! {"id":"…","method":"state_put","params":["<base64 sealed chunk>"]}
//!     → "" (stored: in a file of its own, written whole, then renamed)
//! {"id":"…","method":"state_get","params":["<launcher hex>","<name>","<epoch>","<version>","<index>"]}
//!     → "<base64 sealed chunk>"
//! {"id":"…","method":"state_list","params":["<launcher hex>","<name>"]}
//!     → "[{\"epoch\":1,\"version\":7,\"count\":2,\"present\":2}, …]" (newest first)
//! {"id":"…","method":"state_pin","params":["<launcher hex>","<name>","<epoch>","<version>"]}
//!     → "" (this snapshot is the committed one: it is never pruned, until
//!       another is pinned)
//! ```
//!
//! A chunk is written once: a put of other bytes where one is kept is
//! refused, so a committed snapshot cannot be overwritten by a second
//! sealing of the same version.
//!
//! The chunk's header says where it goes (identity, epoch, version, place),
//! so a put carries nothing that could disagree with it.

use base64::Engine;
use nostr::PublicKey;
use serde::{Deserialize, Serialize};

use super::Request;
use crate::error::{malformed, Error};
use crate::state::{SealedChunk, StateIdentity, MAX_SEALED_CHUNK};

/// Stores a sealed chunk.
pub const METHOD_STATE_PUT: &str = "state_put";
/// Reads a stored chunk back.
pub const METHOD_STATE_GET: &str = "state_get";
/// Lists the snapshots stored for a state.
pub const METHOD_STATE_LIST: &str = "state_list";
/// Marks the committed snapshot, which is never pruned.
pub const METHOD_STATE_PIN: &str = "state_pin";
/// Largest message of the state methods: a sealed chunk in base64 and the
/// envelope around it.
pub const MAX_STATE_MESSAGE: usize = MAX_SEALED_CHUNK.div_ceil(3) * 4 + 1024;
/// Most snapshots a `state_list` answer names.
pub const MAX_LISTED: usize = 64;

/// A request of one of the state methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateRequest {
    /// Keep this chunk.
    Put(SealedChunk),
    /// Return chunk `index` of version `version` of epoch `epoch`.
    Get {
        /// Whose state.
        identity: StateIdentity,
        /// The snapshot's epoch.
        epoch: u64,
        /// The snapshot's version.
        version: u64,
        /// The chunk's place.
        index: u32,
    },
    /// Name the snapshots kept of this state.
    List {
        /// Whose state.
        identity: StateIdentity,
    },
    /// Keep this snapshot whatever else is pruned: it is the committed one.
    Pin {
        /// Whose state.
        identity: StateIdentity,
        /// The snapshot's epoch.
        epoch: u64,
        /// The snapshot's version.
        version: u64,
    },
}

/// One snapshot the parent keeps, as `state_list` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSnapshot {
    /// Its epoch.
    pub epoch: u64,
    /// Its version.
    pub version: u64,
    /// How many chunks it has (from their headers).
    pub count: u32,
    /// How many of them the parent holds.
    pub present: u32,
}

impl StateRequest {
    /// The request, with `id`.
    pub fn to_request(&self, id: &str) -> Request {
        let (method, params) = match self {
            Self::Put(chunk) => (METHOD_STATE_PUT, vec![encode(&chunk.bytes)]),
            Self::Get {
                identity,
                epoch,
                version,
                index,
            } => (
                METHOD_STATE_GET,
                vec![
                    identity.launcher().to_hex(),
                    identity.name().to_owned(),
                    epoch.to_string(),
                    version.to_string(),
                    index.to_string(),
                ],
            ),
            Self::List { identity } => (
                METHOD_STATE_LIST,
                vec![identity.launcher().to_hex(), identity.name().to_owned()],
            ),
            Self::Pin {
                identity,
                epoch,
                version,
            } => (
                METHOD_STATE_PIN,
                vec![
                    identity.launcher().to_hex(),
                    identity.name().to_owned(),
                    epoch.to_string(),
                    version.to_string(),
                ],
            ),
        };
        Request {
            id: id.to_owned(),
            method: method.to_owned(),
            params,
        }
    }

    /// The state request `request` is, `None` if it is of another method.
    pub fn from_request(request: &Request) -> Result<Option<Self>, Error> {
        let params = request.params.as_slice();
        Ok(Some(match request.method.as_str() {
            METHOD_STATE_PUT => {
                let [chunk] = params else {
                    return Err(malformed(
                        "state_put",
                        "takes one parameter, the base64 chunk",
                    ));
                };
                Self::Put(chunk_from_result(chunk)?)
            }
            METHOD_STATE_GET => {
                let [launcher, name, epoch, version, index] = params else {
                    return Err(malformed(
                        "state_get",
                        "takes the launcher, the state name, the epoch, the version and the index",
                    ));
                };
                Self::Get {
                    identity: identity(launcher, name)?,
                    epoch: number(epoch, "epoch")?,
                    version: number(version, "version")?,
                    index: u32::try_from(number(index, "index")?)
                        .map_err(|e| malformed("state_get index", e))?,
                }
            }
            METHOD_STATE_LIST => {
                let [launcher, name] = params else {
                    return Err(malformed(
                        "state_list",
                        "takes the launcher and the state name",
                    ));
                };
                Self::List {
                    identity: identity(launcher, name)?,
                }
            }
            METHOD_STATE_PIN => {
                let [launcher, name, epoch, version] = params else {
                    return Err(malformed(
                        "state_pin",
                        "takes the launcher, the state name, the epoch and the version",
                    ));
                };
                Self::Pin {
                    identity: identity(launcher, name)?,
                    epoch: number(epoch, "epoch")?,
                    version: number(version, "version")?,
                }
            }
            _ => return Ok(None),
        }))
    }
}

/// A chunk as a `state_get` result or `state_put` parameter.
pub fn chunk_to_result(bytes: &[u8]) -> String {
    encode(bytes)
}

/// The chunk in a `state_get` result or `state_put` parameter, capped
/// before it is decoded. Its header is read, not authenticated.
pub fn chunk_from_result(text: &str) -> Result<SealedChunk, Error> {
    let max = MAX_SEALED_CHUNK.div_ceil(3) * 4;
    if text.len() > max {
        return Err(Error::TooLarge {
            what: "base64 state chunk",
            size: text.len(),
            max,
        });
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| malformed("base64 state chunk", e))?;
    SealedChunk::parse(bytes)
}

/// A `state_list` result.
pub fn list_to_result(list: &[StoredSnapshot]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

/// The snapshots a `state_list` result names, at most [`MAX_LISTED`].
pub fn list_from_result(text: &str) -> Result<Vec<StoredSnapshot>, Error> {
    let list: Vec<StoredSnapshot> =
        serde_json::from_str(text).map_err(|e| malformed("state_list result", e))?;
    if list.len() > MAX_LISTED {
        return Err(Error::TooLarge {
            what: "snapshots in a state_list result",
            size: list.len(),
            max: MAX_LISTED,
        });
    }
    Ok(list)
}

fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn identity(launcher: &str, name: &str) -> Result<StateIdentity, Error> {
    let launcher = PublicKey::from_hex(launcher)
        .map_err(|_| malformed("state launcher", "not a hex public key"))?;
    StateIdentity::new(launcher, name)
}

fn number(text: &str, what: &'static str) -> Result<u64, Error> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(what, format!("{text:?} is not a decimal number")));
    }
    text.parse().map_err(|e| malformed(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ChunkHeader, StateKey};

    #[test]
    fn state_requests_round_trip_and_bad_ones_are_refused() {
        let key = StateKey::generate().unwrap();
        let identity = StateIdentity::new(nostr::Keys::generate().public_key(), "main").unwrap();
        let header = ChunkHeader {
            identity: identity.clone(),
            epoch: 2,
            version: 5,
            policy: [0; 32],
            key_id: key.id(),
            index: 0,
            count: 1,
        };
        let chunk = SealedChunk::seal(&key, header, b"state").unwrap();
        let requests = [
            StateRequest::Put(chunk),
            StateRequest::Get {
                identity: identity.clone(),
                epoch: 2,
                version: u64::MAX,
                index: 3,
            },
            StateRequest::List {
                identity: identity.clone(),
            },
            StateRequest::Pin {
                identity,
                epoch: 3,
                version: 9,
            },
        ];
        for request in requests {
            let json = serde_json::to_string(&request.to_request("x")).unwrap();
            assert!(json.len() < MAX_STATE_MESSAGE);
            let parsed = Request::from_json(&json).unwrap();
            assert_eq!(StateRequest::from_request(&parsed).unwrap(), Some(request));
        }
        let hex = nostr::Keys::generate().public_key().to_hex();
        for params in [
            vec![hex.clone(), "main".into(), "1".into(), "2".into()],
            vec![
                hex.clone(),
                "../x".into(),
                "1".into(),
                "2".into(),
                "0".into(),
            ],
            vec![
                hex.clone(),
                "main".into(),
                "-1".into(),
                "2".into(),
                "0".into(),
            ],
            vec![
                hex.clone(),
                "main".into(),
                "+1".into(),
                "2".into(),
                "0".into(),
            ],
            vec![
                hex.clone(),
                "main".into(),
                "1".into(),
                "2".into(),
                "4294967296".into(),
            ],
            vec![
                "npub".into(),
                "main".into(),
                "1".into(),
                "2".into(),
                "0".into(),
            ],
        ] {
            let request = Request {
                id: "x".into(),
                method: METHOD_STATE_GET.into(),
                params,
            };
            assert!(StateRequest::from_request(&request).is_err(), "{request:?}");
        }
        let start = Request::start(b"doc");
        assert_eq!(StateRequest::from_request(&start).unwrap(), None);
        let put = Request {
            id: "x".into(),
            method: METHOD_STATE_PUT.into(),
            params: vec!["A".repeat(MAX_SEALED_CHUNK.div_ceil(3) * 4 + 4)],
        };
        assert!(matches!(
            StateRequest::from_request(&put),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn a_list_is_capped() {
        let one = StoredSnapshot {
            epoch: 1,
            version: 2,
            count: 3,
            present: 3,
        };
        let text = list_to_result(&[one]);
        assert_eq!(list_from_result(&text).unwrap(), vec![one]);
        let long = list_to_result(&vec![one; MAX_LISTED + 1]);
        assert!(list_from_result(&long).is_err());
    }
}
