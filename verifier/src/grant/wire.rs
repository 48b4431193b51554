//! Grants and what the enclave reports about them, as JSON on the admin
//! API. A policy travels as one string parameter:
//!
//! ```text
//! {"perms":"sign_event:1,sign_event:1111","ttl":28800,"uses":500,
//!  "rate":"5/10s,10/min,100/h","created_at_window":600}
//! ```
//!
//! `perms` is required. `ttl` (seconds from when the grant starts) and
//! `expires_at` (unix seconds) are exclusive; without either the grant
//! does not expire. A missing `rate` or `created_at_window` takes the
//! default of [`Policy::new`]; `"none"` turns either off. Unknown fields
//! are an error.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::duration::MAX_SECS;
use super::perms::Perms;
use super::rate::Rates;
use super::{Expiry, Policy};

/// Longest policy JSON read.
pub const MAX_POLICY_JSON: usize = 8192;
/// Longest policy JSON read back from sealed state.
pub const MAX_STORED_POLICY_JSON: usize = super::perms::MAX_STORED_PERMS_TEXT + 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyJson {
    perms: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uses: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_at_window: Option<Value>,
}

impl Policy {
    /// The policy's JSON, every condition explicit.
    pub fn to_json(&self) -> String {
        let (expires_at, ttl) = match self.expiry {
            None => (None, None),
            Some(Expiry::At(at)) => (Some(at), None),
            Some(Expiry::After(ttl)) => (None, Some(ttl)),
        };
        let json = PolicyJson {
            perms: self.perms.to_string(),
            expires_at,
            ttl,
            uses: self.uses,
            rate: Some(self.rates.to_string()),
            created_at_window: Some(match self.window {
                Some(w) => Value::from(w),
                None => Value::from("none"),
            }),
        };
        serde_json::to_string(&json).unwrap_or_default()
    }

    /// Parses a policy; the error says what is wrong, for the reply.
    pub fn from_json(text: &str) -> Result<Self, String> {
        Self::from_json_with(text, MAX_POLICY_JSON, Perms::parse)
    }

    /// Reads a policy as this code wrote it ([`Self::to_json`], in sealed
    /// state), whose perms may be longer than an owner may write
    /// ([`Perms::parse_stored`]).
    pub fn from_stored_json(text: &str) -> Result<Self, String> {
        Self::from_json_with(text, MAX_STORED_POLICY_JSON, Perms::parse_stored)
    }

    fn from_json_with(
        text: &str,
        cap: usize,
        perms: fn(&str) -> Result<Perms, String>,
    ) -> Result<Self, String> {
        if text.len() > cap {
            return Err(format!("a policy is at most {cap} bytes"));
        }
        let json: PolicyJson =
            serde_json::from_str(text).map_err(|e| format!("the policy is not valid: {e}"))?;
        let perms = perms(&json.perms)?;
        let mut policy = Self::new(perms);
        policy.expiry = match (json.expires_at, json.ttl) {
            (Some(_), Some(_)) => return Err("a policy has ttl or expires_at, not both".into()),
            (Some(at), None) => Some(Expiry::At(at)),
            (None, Some(ttl)) if (1..=MAX_SECS).contains(&ttl) => Some(Expiry::After(ttl)),
            (None, Some(_)) => return Err("ttl is between 1 s and 10 years".into()),
            (None, None) => None,
        };
        policy.uses = match json.uses {
            Some(0) => return Err("uses is at least 1".into()),
            uses => uses,
        };
        if let Some(rate) = json.rate {
            policy.rates = Rates::parse(&rate)?;
        }
        policy.window = match json.created_at_window {
            None => policy.window,
            Some(Value::String(s)) if s == "none" => None,
            Some(Value::Number(n)) => match n.as_u64().filter(|w| *w <= MAX_SECS) {
                Some(w) => Some(w),
                None => return Err("created_at_window is a number of seconds or \"none\"".into()),
            },
            Some(_) => return Err("created_at_window is a number of seconds or \"none\"".into()),
        };
        Ok(policy)
    }
}

/// Where an app's grant came from.
pub mod source {
    /// A bunker URL's secret, spent by the app's `connect`.
    pub const BUNKER_URL: &str = "bunker-url";
    /// The owner's `connect_key`.
    pub const CONNECT_KEY: &str = "connect_key";
    /// The owner's `grant`.
    pub const GRANT: &str = "grant";
    /// The owner's answer to an app's nostrconnect:// URI.
    pub const NOSTRCONNECT: &str = "nostrconnect";
    /// nsec.app's permission events (kind 30078).
    pub const NSEC_APP: &str = "nsec.app";
    /// Every source.
    pub const ALL: [&str; 5] = [BUNKER_URL, CONNECT_KEY, GRANT, NOSTRCONNECT, NSEC_APP];
}

/// One app on a key, as `list_apps` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppView {
    /// The app's client public key, hex.
    pub app: String,
    /// Where its grant came from ([`source`]).
    pub source: String,
    /// The policy in force (its expiry absolute), as JSON.
    pub policy: String,
    /// Signing and decryption requests allowed so far.
    pub used: u64,
    /// When the grant started (unix seconds).
    pub since: u64,
    /// When the app last made a request, and which method.
    pub last_request: Option<(u64, String)>,
    /// What the app says about itself in `connect` (name, url, image):
    /// its own claims, shown, never used for decisions.
    pub claims: Option<String>,
}

/// One app as `verifier key apps --json` prints it: [`AppView`] with its
/// policy and claims as JSON objects rather than strings holding JSON
/// (until issue 24 it printed `AppView` itself, with strings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppReport {
    /// The app's client public key, hex.
    pub app: String,
    /// Where its grant came from ([`source`]).
    pub source: String,
    /// The policy in force (its expiry absolute); a string if the enclave
    /// sent one that is not JSON.
    pub policy: Value,
    /// Signing and decryption requests allowed so far.
    pub used: u64,
    /// When the grant started (unix seconds).
    pub since: u64,
    /// When the app last made a request, and which method.
    pub last_request: Option<(u64, String)>,
    /// What the app says about itself: an object if it is JSON, else the
    /// text.
    pub claims: Option<Value>,
}

impl From<&AppView> for AppReport {
    fn from(view: &AppView) -> Self {
        let json = |text: &str| {
            serde_json::from_str::<Value>(text)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| Value::String(text.to_owned()))
        };
        Self {
            app: view.app.clone(),
            source: view.source.clone(),
            policy: json(&view.policy),
            used: view.used,
            since: view.since,
            last_request: view.last_request.clone(),
            claims: view.claims.as_deref().map(json),
        }
    }
}

/// One decision, as `get_log` reports it: never parameters, plaintexts
/// or ciphertexts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the key's log (increasing).
    pub seq: u64,
    /// Unix seconds (of the last, for a run of the same decision).
    pub time: u64,
    /// How many times in a row the app made this same request with this
    /// same outcome.
    #[serde(default = "one")]
    pub count: u32,
    /// The app's client public key, hex.
    pub app: String,
    /// The method.
    pub method: String,
    /// For `sign_event`: the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<u16>,
    /// `allowed` or `refused`.
    pub decision: String,
    /// For a refusal: its code and message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn one() -> u32 {
    1
}

/// One page of a list too long for one reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The cursor to pass for the next page, if there is one.
    pub next: Option<u64>,
}

/// Bytes of JSON a page may hold: even with every character escaped once
/// more in the response, its sealed reply stays under 64 KiB, the event
/// limit of common relays.
pub const PAGE_BYTES: usize = 16_000;

impl<T: Serialize> Page<T> {
    /// Fills a page from `items` (each with its cursor) until
    /// [`PAGE_BYTES`]; `next` is the cursor of the first left out.
    pub fn fill(items: impl IntoIterator<Item = (u64, T)>) -> Self {
        let mut page = Self {
            items: Vec::new(),
            next: None,
        };
        let mut bytes = 0;
        for (cursor, item) in items {
            let size = serde_json::to_string(&item)
                .map(|s| s.len() + 1)
                .unwrap_or(0);
            if bytes + size > PAGE_BYTES && !page.items.is_empty() {
                page.next = Some(cursor);
                break;
            }
            bytes += size;
            page.items.push(item);
        }
        page
    }

    /// The page as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{\"items\":[],\"next\":null}".into())
    }
}
