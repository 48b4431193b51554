//! The request/response envelope of NIP-46 and the admin API.
//!
//! Parameters can carry private keys (`import_key`), so they are wiped from
//! memory when dropped and never printed by `Debug`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

/// Largest request event (JSON) an enclave looks at; larger ones are
/// dropped before any decryption.
pub const MAX_REQUEST_EVENT: usize = 128 * 1024;
/// Largest decrypted request.
pub const MAX_REQUEST_JSON: usize = 96 * 1024;
/// Most parameters a request may have (`connect` has four).
pub const MAX_PARAMS: usize = 8;
/// Longest request id echoed back.
pub const MAX_ID_LEN: usize = 128;
/// Longest method name.
pub const MAX_METHOD_LEN: usize = 64;

/// Request parameters: strings, wiped on drop, redacted in `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<Zeroizing<String>>);

impl Params {
    /// Parameters from strings.
    pub fn new<I, S>(params: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self(
            params
                .into_iter()
                .map(|p| Zeroizing::new(p.into()))
                .collect(),
        )
    }

    /// The `i`-th parameter, if present.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.0.get(i).map(|p| p.as_str())
    }

    /// How many parameters there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Params([{} redacted])", self.0.len())
    }
}

/// A request: `{"id", "method", "params": [strings]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Echoed in the response.
    pub id: String,
    /// The method name.
    pub method: String,
    /// Its parameters.
    pub params: Params,
}

/// Why a decrypted request is not a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// Not a request at all: not a JSON object with a string `id`, or an
    /// object without a `method` (a response). Never answered: answering a
    /// response would make two signers (or one signer and itself) answer
    /// each other's answers forever.
    NotARequest(String),
    /// Has an id, but the rest is wrong: answer with this error.
    Invalid {
        /// The request id.
        id: String,
        /// What is wrong, for the error reply.
        reason: String,
    },
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotARequest(reason) => write!(f, "not a request: {reason}"),
            Self::Invalid { reason, .. } => f.write_str(reason),
        }
    }
}

impl std::error::Error for Malformed {}

impl Request {
    /// A request with a random id.
    pub fn new(method: &str, params: Params) -> Self {
        let mut id = [0u8; 16];
        // A failing OS RNG leaves zeros: ids only need to be unique per client.
        let _ = getrandom_fill(&mut id);
        Self {
            id: hex::encode(id),
            method: method.to_owned(),
            params,
        }
    }

    /// Parses a decrypted request. Caps its size, its id, its method and
    /// its parameter count; parameters must be strings.
    pub fn parse(json: &str) -> Result<Self, Malformed> {
        if json.len() > MAX_REQUEST_JSON {
            return Err(Malformed::NotARequest(format!(
                "{} bytes, more than {MAX_REQUEST_JSON}",
                json.len()
            )));
        }
        let value = Wiped(
            serde_json::from_str(json)
                .map_err(|e| Malformed::NotARequest(format!("not JSON: {e}")))?,
        );
        let Some(object) = value.0.as_object() else {
            return Err(Malformed::NotARequest("not a JSON object".into()));
        };
        let id = match object.get("id") {
            Some(Value::String(id)) if id.len() <= MAX_ID_LEN => id.clone(),
            Some(Value::String(_)) => {
                return Err(Malformed::NotARequest(format!(
                    "id longer than {MAX_ID_LEN}"
                )))
            }
            _ => return Err(Malformed::NotARequest("no string id".into())),
        };
        let invalid = |reason: String| Malformed::Invalid {
            id: id.clone(),
            reason,
        };
        let method = match object.get("method") {
            Some(Value::String(m)) if m.len() <= MAX_METHOD_LEN => m.clone(),
            Some(Value::String(_)) => {
                return Err(invalid(format!("method longer than {MAX_METHOD_LEN}")))
            }
            // An id without a method is a response (or nothing): never
            // answered, see `Malformed::NotARequest`.
            None | Some(Value::Null) => {
                return Err(Malformed::NotARequest(
                    "no method: a response, not a request".into(),
                ))
            }
            Some(_) => return Err(invalid("method is not a string".into())),
        };
        let params = match object.get("params") {
            None | Some(Value::Null) => Params::default(),
            Some(Value::Array(items)) if items.len() <= MAX_PARAMS => {
                let mut params = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => params.push(Zeroizing::new(s.clone())),
                        _ => return Err(invalid(format!("param {i} is not a string"))),
                    }
                }
                Params(params)
            }
            Some(Value::Array(_)) => return Err(invalid(format!("more than {MAX_PARAMS} params"))),
            Some(_) => return Err(invalid("params is not an array".into())),
        };
        Ok(Self { id, method, params })
    }

    /// The JSON to encrypt; wiped on drop, as it may hold a private key.
    pub fn to_json(&self) -> Zeroizing<String> {
        let params: Vec<&str> = self.params.0.iter().map(|p| p.as_str()).collect();
        Zeroizing::new(
            serde_json::json!({ "id": self.id, "method": self.method, "params": params })
                .to_string(),
        )
    }
}

/// A parsed JSON value whose strings are wiped when it is dropped.
struct Wiped(Value);

impl Drop for Wiped {
    fn drop(&mut self) {
        wipe_json(&mut self.0);
    }
}

/// Wipes every string in a parsed JSON value (object keys are left: they
/// are field names, not secrets).
pub(crate) fn wipe_json(v: &mut Value) {
    match v {
        Value::String(s) => zeroize::Zeroize::zeroize(s),
        Value::Array(items) => items.iter_mut().for_each(wipe_json),
        Value::Object(map) => map.values_mut().for_each(wipe_json),
        _ => {}
    }
}

fn getrandom_fill(buf: &mut [u8]) -> Result<(), ()> {
    use nostr::secp256k1::rand::RngCore;
    nostr::secp256k1::rand::rngs::OsRng
        .try_fill_bytes(buf)
        .map_err(|_| ())
}

/// A response: `{"id", "result"}` or `{"id", "result": "", "error"}`.
///
/// A result can be a decrypted plaintext (`nip44_decrypt`) or a bunker
/// URL with its secret, so both strings are wiped on drop and `Debug`
/// shows only their lengths.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The request's id.
    pub id: String,
    /// The result; never empty on success (clients wait on empty results).
    #[serde(default)]
    pub result: String,
    /// Set when the request failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("id", &self.id)
            .field("result", &format_args!("<{} bytes>", self.result.len()))
            .field("error", &self.error.as_ref().map(String::len))
            .finish()
    }
}

impl Drop for Response {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.result);
        if let Some(e) = self.error.as_mut() {
            zeroize::Zeroize::zeroize(e);
        }
    }
}

impl Response {
    /// A successful response.
    pub fn ok(id: &str, result: impl Into<String>) -> Self {
        Self {
            id: id.to_owned(),
            result: result.into(),
            error: None,
        }
    }

    /// A failed response.
    pub fn error(id: &str, error: impl Into<String>) -> Self {
        Self {
            id: id.to_owned(),
            result: String::new(),
            error: Some(error.into()),
        }
    }

    /// Whether this is an error response.
    pub fn is_error(&self) -> bool {
        self.error.as_deref().is_some_and(|e| !e.is_empty())
    }

    /// The JSON to encrypt; wiped on drop.
    pub fn to_json(&self) -> Zeroizing<String> {
        // Serializing strings into JSON cannot fail.
        Zeroizing::new(serde_json::to_string(self).unwrap_or_default())
    }

    /// Parses a decrypted response.
    pub fn parse(json: &str) -> Result<Self, String> {
        if json.len() > MAX_REQUEST_JSON {
            return Err(format!("response of {} bytes", json.len()));
        }
        serde_json::from_str(json).map_err(|e| format!("not a response: {e}"))
    }

    /// The result, or the error as `Err`.
    pub fn into_result(mut self) -> Result<String, String> {
        match self.error.take() {
            Some(e) if !e.is_empty() => Err(e),
            _ => Ok(std::mem::take(&mut self.result)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_redacts() {
        let r = Request::parse(r#"{"id":"1","method":"import_key","params":["secret","wss://r"]}"#)
            .unwrap();
        assert_eq!(r.method, "import_key");
        assert_eq!(r.params.get(0), Some("secret"));
        assert!(!format!("{r:?}").contains("secret"));
        assert_eq!(Request::parse(&r.to_json()).unwrap(), r);
    }

    #[test]
    fn missing_params_are_empty() {
        let r = Request::parse(r#"{"id":"1","method":"ping"}"#).unwrap();
        assert!(r.params.is_empty());
    }

    #[test]
    fn refusals_say_whether_to_answer() {
        assert!(matches!(
            Request::parse("nope"),
            Err(Malformed::NotARequest(_))
        ));
        assert!(matches!(
            Request::parse("[1]"),
            Err(Malformed::NotARequest(_))
        ));
        assert!(matches!(
            Request::parse(r#"{"id":1,"method":"ping"}"#),
            Err(Malformed::NotARequest(_))
        ));
        // A response (an id, no method) is not a request: never answered.
        for response in [
            r#"{"id":"7","params":[]}"#,
            r#"{"id":"7","result":"pong"}"#,
            r#"{"id":"7","result":"","error":"no"}"#,
        ] {
            assert!(
                matches!(Request::parse(response), Err(Malformed::NotARequest(_))),
                "{response}"
            );
        }
        for bad in [
            r#"{"id":"7","method":7}"#,
            r#"{"id":"7","method":"ping","params":[1]}"#,
            r#"{"id":"7","method":"ping","params":"x"}"#,
            r#"{"id":"7","method":"ping","params":["","","","","","","","",""]}"#,
        ] {
            match Request::parse(bad) {
                Err(Malformed::Invalid { id, .. }) => assert_eq!(id, "7"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let long = format!(
            r#"{{"id":"{}","method":"ping"}}"#,
            "x".repeat(MAX_ID_LEN + 1)
        );
        assert!(matches!(
            Request::parse(&long),
            Err(Malformed::NotARequest(_))
        ));
    }

    #[test]
    fn responses_round_trip() {
        let ok = Response::ok("1", "pong");
        assert_eq!(ok.to_json().as_str(), r#"{"id":"1","result":"pong"}"#);
        let err = Response::error("1", "no");
        assert_eq!(
            err.to_json().as_str(),
            r#"{"id":"1","result":"","error":"no"}"#
        );
        assert!(!format!("{ok:?}").contains("pong"));
        assert_eq!(
            Response::parse(&err.to_json()).unwrap().into_result(),
            Err("no".into())
        );
        assert_eq!(
            Response::parse(&ok.to_json()).unwrap().into_result(),
            Ok("pong".into())
        );
    }
}
