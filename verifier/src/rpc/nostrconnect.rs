//! `nostrconnect://` URIs: a NIP-46 connection the app starts. The app
//! shows `nostrconnect://<client pubkey>?relay=<url>&…&secret=<s>` (and
//! optionally `perms`, `name`, `url`, `image`, or the legacy `metadata=`
//! JSON), waits on its relays, and takes as the signer whoever sends it a
//! `connect` response whose `result` is the secret.
//!
//! Relays follow the rules of [`super::relays`]. The secret and at least
//! one relay are required: without a relay there is nowhere to answer,
//! and without a secret the app cannot tell our answer from anyone's.
//! Everything but the client key, relays and secret is the app's own claim:
//! shown to the owner, and (for `perms`) only ever narrowing a grant.

use crate::grant::{Perms, Policy};
use nostr::{PublicKey, RelayUrl};
use zeroize::Zeroizing;

use super::message::Response;
use super::relays::parse_relay_url;

/// Longest URI read.
pub const MAX_URI: usize = 8192;
/// Longest secret accepted.
pub const MAX_SECRET: usize = 256;
/// Longest name, url or image kept.
pub const MAX_CLAIM: usize = 256;

/// A parsed `nostrconnect://` URI.
#[derive(Clone, PartialEq, Eq)]
pub struct NostrConnect {
    /// The app's client key: where the response goes.
    pub client: PublicKey,
    /// Where the app waits for it.
    pub relays: Vec<RelayUrl>,
    /// What the response must carry.
    pub secret: Zeroizing<String>,
    /// The perms the app asks for (its claim; narrows a grant).
    pub perms: Option<String>,
    /// The app's name, as it says.
    pub name: Option<String>,
    /// The app's web address, as it says.
    pub url: Option<String>,
    /// The app's icon, as it says.
    pub image: Option<String>,
}

impl std::fmt::Debug for NostrConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NostrConnect")
            .field("client", &self.client)
            .field("relays", &self.relays)
            .field("secret", &"<redacted>")
            .field("perms", &self.perms)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NostrConnect {
    /// Parses `uri`, allowing at most `max_relays` relays. Errors say what
    /// is wrong and never repeat the secret.
    pub fn parse(uri: &str, max_relays: usize) -> Result<Self, String> {
        if uri.len() > MAX_URI {
            return Err(format!("a nostrconnect:// URI is at most {MAX_URI} bytes"));
        }
        let uri = uri.trim();
        let rest = uri
            .strip_prefix("nostrconnect://")
            .ok_or("not a nostrconnect:// URI")?;
        let (key, query) = rest.split_once('?').unwrap_or((rest, ""));
        let client = PublicKey::from_hex(key.trim_end_matches('/'))
            .map_err(|_| "nostrconnect://: the client key is not 64 hex characters".to_owned())?;
        let mut parsed = Self {
            client,
            relays: Vec::new(),
            secret: Zeroizing::new(String::new()),
            perms: None,
            name: None,
            url: None,
            image: None,
        };
        let params = nostr::Url::parse(&format!("http://x/?{query}"))
            .map_err(|_| "nostrconnect://: the query cannot be read".to_owned())?;
        for (name, value) in params.query_pairs() {
            match name.as_ref() {
                "relay" => {
                    let relay = parse_relay_url(&value)
                        .map_err(|e| format!("nostrconnect://: relay: {e}"))?;
                    if !parsed.relays.contains(&relay) {
                        if parsed.relays.len() == max_relays {
                            return Err(format!("nostrconnect://: more than {max_relays} relays"));
                        }
                        parsed.relays.push(relay);
                    }
                }
                "secret" => {
                    if value.is_empty() {
                        continue;
                    }
                    if !parsed.secret.is_empty() {
                        return Err("nostrconnect://: more than one secret".into());
                    }
                    if value.len() > MAX_SECRET {
                        return Err(format!(
                            "nostrconnect://: the secret is longer than {MAX_SECRET} bytes"
                        ));
                    }
                    parsed.secret = Zeroizing::new(value.into_owned());
                }
                "perms" if value.len() > crate::grant::perms::MAX_PERMS_TEXT => {
                    return Err(format!(
                        "nostrconnect://: perms is longer than {} bytes",
                        crate::grant::perms::MAX_PERMS_TEXT
                    ))
                }
                "perms" => parsed.perms = Some(value.into_owned()),
                "name" => parsed.name = claim(&value),
                "url" => parsed.url = claim(&value),
                "image" => parsed.image = claim(&value),
                "metadata" => parsed.legacy_metadata(&value),
                _ => {}
            }
        }
        if parsed.relays.is_empty() {
            return Err(
                "nostrconnect://: no relay= (where the app waits for the signer's answer)".into(),
            );
        }
        if parsed.secret.is_empty() {
            return Err(
                "nostrconnect://: no secret= (the app needs it to know the answer is the signer's)"
                    .into(),
            );
        }
        Ok(parsed)
    }

    /// The legacy `metadata={"name","url","description","icons":[…],"perms"}`.
    fn legacy_metadata(&mut self, json: &str) {
        if json.len() > 4096 {
            return;
        }
        let Ok(serde_json::Value::Object(meta)) = serde_json::from_str(json) else {
            return;
        };
        let text = |k: &str| meta.get(k).and_then(|v| v.as_str()).and_then(claim);
        self.name = self.name.take().or_else(|| text("name"));
        self.url = self.url.take().or_else(|| text("url"));
        let icon = meta
            .get("icons")
            .and_then(|v| v.as_array())
            .and_then(|a| a.first())
            .and_then(|v| v.as_str())
            .and_then(claim);
        self.image = self.image.take().or(icon);
        if self.perms.is_none() {
            self.perms = match meta.get("perms") {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Array(a)) => Some(
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                _ => None,
            };
        }
    }

    /// The URI again (what [`Self::parse`] reads back).
    pub fn to_uri(&self) -> Zeroizing<String> {
        let Ok(mut url) = nostr::Url::parse(&format!("nostrconnect://{}", self.client.to_hex()))
        else {
            return Zeroizing::new(String::new());
        };
        {
            let mut q = url.query_pairs_mut();
            for relay in &self.relays {
                q.append_pair("relay", relay.as_str_without_trailing_slash());
            }
            q.append_pair("secret", &self.secret);
            for (name, value) in [
                ("perms", &self.perms),
                ("name", &self.name),
                ("url", &self.url),
                ("image", &self.image),
            ] {
                if let Some(value) = value {
                    q.append_pair(name, value);
                }
            }
        }
        Zeroizing::new(url.to_string())
    }

    /// What the app asks for in the URI's `perms`, read leniently (what
    /// cannot be read is not asked for).
    pub fn asked(&self) -> Option<Perms> {
        self.perms.as_deref().and_then(Perms::parse_requested)
    }

    /// The owner's grant for this app, before the URI's perms narrow it:
    /// `owner`'s policy as given, or without one, what the app asks for as
    /// a scoped grant (the default rate limits and `created_at` window;
    /// and, not being full access, NIP-04 decryption only from peers it
    /// names), or full access if it asks for nothing in particular.
    pub fn owner_policy(&self, owner: Option<&Policy>) -> Policy {
        if let Some(policy) = owner {
            return policy.clone();
        }
        match self.asked() {
            Some(asked @ Perms::Listed(_)) => Policy::new(Perms::Full.narrow(Some(&asked))),
            _ => Policy::full(),
        }
    }

    /// What the app gets: [`Self::owner_policy`] narrowed by the URI's perms.
    pub fn granted(&self, owner: Option<&Policy>) -> Policy {
        let mut policy = self.owner_policy(owner);
        policy.perms = policy.perms.narrow(self.asked().as_ref());
        policy
    }

    /// What the app says about itself, as JSON, for display.
    pub fn claims(&self) -> String {
        serde_json::json!({"name": self.name, "url": self.url, "image": self.image}).to_string()
    }

    /// The NIP-46 `connect` response the app waits for.
    pub fn response(&self) -> Response {
        let request_like = super::Request::new("connect", super::Params::default());
        Response::ok(&request_like.id, self.secret.as_str())
    }
}

/// A claim, capped and trimmed (after the cut too, so that the URI it
/// prints reads back the same: found by fuzzing), or nothing if empty.
fn claim(value: &str) -> Option<String> {
    let value = value.trim();
    let mut end = value.len().min(MAX_CLAIM);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let value = value.get(..end)?.trim_end();
    (!value.is_empty()).then(|| value.to_owned())
}

#[cfg(test)]
mod tests;
