//! Messages between the enclave and the parent's metadata server, kept in
//! one place so both ends always agree. Wire-compatible with the original
//! noauth-enclaved (one JSON text message each way over a WebSocket):
//!
//! ```text
//! enclave → parent  {"id":"start","method":"start","params":["<base64 attestation>"]}
//! parent → enclave  {"id":"start","result":"<JSON of StartResult>"}
//!                or {"id":"start","result":"","error":"<message>"}
//! ```
//!
//! Transport defaults (vsock, the parent is CID 3) live here too. The
//! same connection also carries the sealed state the parent stores for
//! the enclave ([`state`]): methods the original does not have.

use nostr::{Event, JsonUtil};
use serde::{Deserialize, Serialize};

use crate::error::{malformed, Error};
use crate::event::parse_event_json;
use crate::release::MAX_RELEASE_SIGNATURES;

pub mod state;

pub use state::{StateRequest, StoredSnapshot, MAX_STATE_MESSAGE};

/// vsock CID of the parent instance, as seen from the enclave.
pub const PARENT_CID: u32 = 3;
/// Default port of the parent's SOCKS5 proxy.
pub const SOCKS_PORT: u32 = 1080;
/// Default port of the parent's metadata server.
pub const METADATA_PORT: u32 = 2080;
/// The method that starts an enclave (the original's only one).
pub const METHOD_START: &str = "start";
/// Most announce relays the parent may hand over; the enclave refuses more.
pub const MAX_ANNOUNCE_RELAYS: usize = 32;
/// Largest `start` request or result (a base64 attestation, or two
/// signature events and a relay list). Messages of the state methods may
/// be larger, up to [`MAX_STATE_MESSAGE`].
pub const MAX_MESSAGE: usize = 64 * 1024;

/// A request to the metadata server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Echoed in the reply.
    pub id: String,
    /// `start`.
    pub method: String,
    /// For `start`: the base64 attestation document.
    pub params: Vec<String>,
}

/// A reply from the metadata server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's id.
    pub id: String,
    /// JSON of [`StartResult`]; empty on error.
    #[serde(default)]
    pub result: String,
    /// Why the request failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `start` returns: the signature events and where to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartResult {
    /// The builder's kind 63795 event (`build.json`).
    pub build: Event,
    /// The launcher's kind 63796 event (`instance.json`).
    pub instance: Event,
    /// Relays the instance event is published to.
    pub announce_relays: Vec<String>,
    /// Whether the parent runs a production instance.
    pub prod: bool,
    /// Maintainers' release signatures (kind 63794) of the image, at most
    /// [`MAX_RELEASE_SIGNATURES`]; absent from the original's answers.
    pub releases: Vec<Event>,
}

#[derive(Serialize, Deserialize)]
struct StartResultWire {
    build: serde_json::Value,
    instance: serde_json::Value,
    #[serde(rename = "instanceAnnounceRelays", default)]
    instance_announce_relays: Vec<String>,
    #[serde(default)]
    prod: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    releases: Vec<serde_json::Value>,
}

impl Request {
    /// A `start` request carrying `attestation` (raw bytes).
    pub fn start(attestation: &[u8]) -> Self {
        use base64::Engine;
        Self {
            id: METHOD_START.to_owned(),
            method: METHOD_START.to_owned(),
            params: vec![base64::engine::general_purpose::STANDARD.encode(attestation)],
        }
    }

    /// Parses a request, capped at [`MAX_STATE_MESSAGE`], and a `start`
    /// request at [`MAX_MESSAGE`].
    pub fn from_json(text: &str) -> Result<Self, Error> {
        check_size(text, MAX_STATE_MESSAGE, "metadata request")?;
        let request: Self =
            serde_json::from_str(text).map_err(|e| malformed("metadata request", e))?;
        if request.method == METHOD_START {
            check_size(text, MAX_MESSAGE, "start request")?;
        }
        Ok(request)
    }
}

impl Reply {
    /// A successful reply to `start`.
    pub fn ok(id: &str, result: &StartResult) -> Self {
        Self::ok_text(id, result.to_json())
    }

    /// A successful reply whose result is `result`.
    pub fn ok_text(id: &str, result: String) -> Self {
        Self {
            id: id.to_owned(),
            result,
            error: None,
        }
    }

    /// A failed reply.
    pub fn error(id: &str, error: impl std::fmt::Display) -> Self {
        Self {
            id: id.to_owned(),
            result: String::new(),
            error: Some(error.to_string()),
        }
    }

    /// Parses a reply, capped at [`MAX_STATE_MESSAGE`] (a `start` result
    /// is capped again at [`MAX_MESSAGE`] when it is read).
    pub fn from_json(text: &str) -> Result<Self, Error> {
        check_size(text, MAX_STATE_MESSAGE, "metadata reply")?;
        serde_json::from_str(text).map_err(|e| malformed("metadata reply", e))
    }

    /// The message as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl StartResult {
    /// Encodes the `result` string.
    pub fn to_json(&self) -> String {
        let wire = StartResultWire {
            build: serde_json::from_str(&self.build.as_json()).unwrap_or_default(),
            instance: serde_json::from_str(&self.instance.as_json()).unwrap_or_default(),
            instance_announce_relays: self.announce_relays.clone(),
            prod: self.prod,
            releases: self
                .releases
                .iter()
                .map(|e| serde_json::from_str(&e.as_json()).unwrap_or_default())
                .collect(),
        };
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Decodes the `result` string. The events are parsed, not verified.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        check_size(text, MAX_MESSAGE, "start result")?;
        let wire: StartResultWire =
            serde_json::from_str(text).map_err(|e| malformed("start result", e))?;
        if wire.releases.len() > MAX_RELEASE_SIGNATURES {
            return Err(Error::TooLarge {
                what: "release signatures in the start result",
                size: wire.releases.len(),
                max: MAX_RELEASE_SIGNATURES,
            });
        }
        let releases = wire
            .releases
            .iter()
            .map(|r| parse_event_json(&r.to_string(), "release signature event"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            build: parse_event_json(&wire.build.to_string(), "build event")?,
            instance: parse_event_json(&wire.instance.to_string(), "instance signature event")?,
            announce_relays: wire.instance_announce_relays,
            prod: wire.prod,
            releases,
        })
    }
}

fn check_size(text: &str, max: usize, what: &'static str) -> Result<(), Error> {
    if text.len() > max {
        return Err(Error::TooLarge {
            what,
            size: text.len(),
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speaks_the_original_wire_format() {
        let req =
            Request::from_json(r#"{"id":"start","method":"start","params":["AAAA"]}"#).unwrap();
        assert_eq!(
            req,
            Request {
                id: "start".into(),
                method: "start".into(),
                params: vec!["AAAA".into()]
            }
        );
        assert_eq!(
            serde_json::to_value(Request::start(&[0, 0, 0])).unwrap(),
            serde_json::json!({"id":"start","method":"start","params":["AAAA"]})
        );
        let err = Reply::error("start", "no");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&err.to_json()).unwrap(),
            serde_json::json!({"id":"start","result":"","error":"no"})
        );
        assert!(Request::from_json(&"x".repeat(MAX_STATE_MESSAGE + 1)).is_err());
        let big_start = serde_json::to_string(&Request::start(&vec![0; MAX_MESSAGE])).unwrap();
        assert!(matches!(
            Request::from_json(&big_start),
            Err(Error::TooLarge {
                what: "start request",
                ..
            })
        ));
    }

    #[test]
    fn start_result_round_trips() {
        let keys = nostr::Keys::generate();
        let event = nostr::EventBuilder::text_note("x")
            .sign_with_keys(&keys)
            .unwrap();
        let result = StartResult {
            build: event.clone(),
            instance: event,
            announce_relays: vec!["wss://relay.example".into()],
            prod: false,
            releases: vec![],
        };
        let json = result.to_json();
        assert!(
            !json.contains("releases"),
            "the original's answer has no releases"
        );
        assert!(json.contains("\"instanceAnnounceRelays\""));
        assert_eq!(StartResult::from_json(&json).unwrap(), result);
    }
}
