//! App permissions managed from nsec.app: kind 30078 events tagged
//! `["t", "nsec.app/perm"]`, signed by the user's key, their content a
//! NIP-04 message from the key to itself:
//!
//! ```text
//! {appNpub, npub, name, icon, url, timestamp, updateTimestamp,
//!  permUpdateTimestamp, userAgent, token,
//!  perms: [{id, npub, appNpub, perm, value: "1"|"0", timestamp}]}
//! or {appNpub, npub, updateTimestamp, deleted: true}
//! ```
//!
//! with millisecond timestamps and `d` = hex(sha256("nsec.app_" + npub +
//! "_" + appNpub)). They are merged as the original noauth-enclaved does
//! ([`merge`]): a newer `updateTimestamp` replaces the app's info or
//! deletes the app; a newer `permUpdateTimestamp` replaces its whole
//! permission list. Unlike the original, the payload's `npub` must be the
//! event's author and the `d` tag must match, an info-only update keeps
//! the permissions (the original wiped them), and a deleted app is
//! remembered, so a relay replaying an older event cannot bring it back.
//!
//! [`to_policy`] turns the result into a grant of this module's model:
//! the perms whose `value` is "1" (`basic` expanded), minus the exact
//! perms refused with another value; `connect` refused means nothing at
//! all is allowed. nsec.app's grants have no rate limit, use count or
//! `created_at` window, as in the original.

use nostr::{PublicKey, ToBech32};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{Method, Perm, Perms, Policy, Rates};

/// The kind of application data events.
pub const KIND_APP_DATA: u16 = 30078;
/// The `t` tag of nsec.app's permission events.
pub const PERM_TAG: &str = "nsec.app/perm";
/// The relays the original reads permission events from.
pub const DEFAULT_PERM_RELAYS: [&str; 5] = [
    "wss://relay.damus.io",
    "wss://relay.nostr.band/all",
    "wss://nos.lol",
    "wss://relay.primal.net",
    "wss://nostr.mom",
];
/// Longest decrypted payload read.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Most permission entries read from one payload.
pub const MAX_ENTRIES: usize = 256;
/// Longest name, icon or url kept.
const MAX_INFO: usize = 256;

/// The `d` tag of `user`'s permission event for `app`.
pub fn d_tag(user: &PublicKey, app: &PublicKey) -> String {
    let (user, app) = (npub(user), npub(app));
    hex::encode(Sha256::digest(format!("nsec.app_{user}_{app}").as_bytes()))
}

/// Whether an event of `kind` with `tags` is a permission event: kind
/// 30078 with a `t` tag naming `nsec.app/perm` anywhere in it (as the
/// original matches). The signer never signs one for an app.
pub fn is_perm_event<'a>(kind: u16, tags: impl IntoIterator<Item = &'a [String]>) -> bool {
    kind == KIND_APP_DATA
        && tags
            .into_iter()
            .any(|t| t.first().is_some_and(|n| n == "t") && t.iter().skip(1).any(|v| v == PERM_TAG))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPayload {
    app_npub: String,
    npub: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    icon: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    update_timestamp: Option<u64>,
    #[serde(default)]
    perm_update_timestamp: Option<u64>,
    #[serde(default)]
    perms: Option<Vec<RawPerm>>,
    #[serde(default)]
    deleted: Option<bool>,
}

#[derive(Deserialize)]
struct RawPerm {
    perm: String,
    #[serde(default)]
    value: serde_json::Value,
}

/// A permission event's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The app's info and permissions.
    App {
        /// The app's client key.
        app: PublicKey,
        /// Its info (name, icon, url), as nsec.app has it.
        info: Info,
        /// `updateTimestamp`, ms.
        updated: u64,
        /// `permUpdateTimestamp`, ms.
        perms_updated: u64,
        /// Each `perm` and whether its `value` is "1".
        perms: Vec<(String, bool)>,
    },
    /// The app was deleted.
    Deleted {
        /// The app's client key.
        app: PublicKey,
        /// `updateTimestamp`, ms.
        updated: u64,
    },
}

/// What nsec.app says about an app (display only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info {
    /// Its name.
    pub name: Option<String>,
    /// Its icon URL.
    pub icon: Option<String>,
    /// Its web address.
    pub url: Option<String>,
}

impl Info {
    /// As JSON, for `list_apps`.
    pub fn to_json(&self) -> String {
        serde_json::json!({"name": self.name, "icon": self.icon, "url": self.url}).to_string()
    }
}

/// Parses the decrypted content of `user`'s permission event whose `d`
/// tag is `d`. The payload must name `user` and match `d`.
pub fn parse_payload(
    plaintext: &str,
    user: &PublicKey,
    d: Option<&str>,
) -> Result<Payload, String> {
    if plaintext.len() > MAX_PAYLOAD {
        return Err(format!(
            "a permission payload is at most {MAX_PAYLOAD} bytes"
        ));
    }
    let raw: RawPayload =
        serde_json::from_str(plaintext).map_err(|e| format!("not a permission payload: {e}"))?;
    let named = PublicKey::parse(&raw.npub).map_err(|_| "npub is not a public key".to_owned())?;
    if named != *user {
        return Err("the payload names another key than its author".into());
    }
    let app =
        PublicKey::parse(&raw.app_npub).map_err(|_| "appNpub is not a public key".to_owned())?;
    if d != Some(d_tag(user, &app).as_str()) {
        return Err("the d tag is not this app's".into());
    }
    let updated = raw.update_timestamp.ok_or("no updateTimestamp")?;
    if raw.deleted == Some(true) {
        return Ok(Payload::Deleted { app, updated });
    }
    let perms_updated = raw.perm_update_timestamp.ok_or("no permUpdateTimestamp")?;
    let entries = raw.perms.ok_or("no perms")?;
    if entries.len() > MAX_ENTRIES {
        return Err(format!("more than {MAX_ENTRIES} permissions"));
    }
    let perms = entries
        .into_iter()
        .map(|p| (p.perm, p.value.as_str() == Some("1")))
        .collect();
    let cap = |s: Option<String>| {
        s.filter(|s| !s.is_empty()).map(|mut s| {
            let mut end = s.len().min(MAX_INFO);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s
        })
    };
    Ok(Payload::App {
        app,
        info: Info {
            name: cap(raw.name),
            icon: cap(raw.icon),
            url: cap(raw.url),
        },
        updated,
        perms_updated,
        perms,
    })
}

/// What the signer keeps of one app's permission events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppState {
    /// Its info.
    pub info: Info,
    /// The newest `updateTimestamp` applied, ms.
    pub updated: u64,
    /// The newest `permUpdateTimestamp` applied, ms.
    pub perms_updated: u64,
    /// Its permissions.
    pub perms: Vec<(String, bool)>,
    /// Deleted at `updated`: kept so that a replay of an older event
    /// cannot bring the app back.
    pub deleted: bool,
}

/// What a merge changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merged {
    /// Nothing: the event is not newer.
    Unchanged,
    /// The app's info only.
    Info,
    /// Its permissions (and maybe its info), or it is new.
    Perms,
    /// The app was deleted.
    Deleted,
}

/// Merges `payload` into what is known of its app (`state`).
pub fn merge(state: &mut Option<AppState>, payload: Payload) -> Merged {
    let (updated, perms_updated) = match &payload {
        Payload::App {
            updated,
            perms_updated,
            ..
        } => (*updated, *perms_updated),
        Payload::Deleted { updated, .. } => (*updated, 0),
    };
    let Some(known) = state.as_mut() else {
        return match payload {
            // Remembered, so an older event seen later cannot grant it.
            Payload::Deleted { .. } => {
                *state = Some(AppState {
                    info: Info::default(),
                    updated,
                    perms_updated: 0,
                    perms: Vec::new(),
                    deleted: true,
                });
                Merged::Deleted
            }
            Payload::App { info, perms, .. } => {
                *state = Some(AppState {
                    info,
                    updated,
                    perms_updated,
                    perms,
                    deleted: false,
                });
                Merged::Perms
            }
        };
    };
    match payload {
        Payload::Deleted { .. } if known.updated < updated => {
            *known = AppState {
                info: Info::default(),
                updated,
                perms_updated: known.perms_updated,
                perms: Vec::new(),
                deleted: true,
            };
            Merged::Deleted
        }
        Payload::Deleted { .. } => Merged::Unchanged,
        // Added again after a deletion: only by a newer event.
        Payload::App { info, perms, .. } if known.deleted => {
            if known.updated < updated {
                *known = AppState {
                    info,
                    updated,
                    perms_updated,
                    perms,
                    deleted: false,
                };
                Merged::Perms
            } else {
                Merged::Unchanged
            }
        }
        Payload::App { info, perms, .. } => {
            let mut merged = Merged::Unchanged;
            if known.updated < updated {
                known.info = info;
                known.updated = updated;
                merged = Merged::Info;
            }
            if known.perms_updated < perms_updated {
                known.perms = perms;
                known.perms_updated = perms_updated;
                merged = Merged::Perms;
            }
            merged
        }
    }
}

/// The grant nsec.app's permissions make; `None` when `connect` is
/// refused (the app may do nothing at all).
pub fn to_policy(state: &AppState) -> Option<Policy> {
    if state.deleted
        || state
            .perms
            .iter()
            .any(|(p, allow)| p == "connect" && !allow)
    {
        return None;
    }
    // Each entry read strictly, one at a time: nsec.app builds a perm from
    // the app's own template (`sign_event:<whatever its kind is>`), so
    // anything but an exact method name, `basic` or `sign_event:` with a
    // decimal kind is the app's invention and grants nothing.
    let read = |perm: &str| -> Vec<Perm> {
        match perm {
            // `connect` is the session, always allowed here once granted.
            "basic" => super::perms::basic()
                .into_iter()
                .filter(|p| *p != Perm::Method(Method::Connect))
                .collect(),
            "get_public_key" | "nip04_encrypt" | "nip04_decrypt" | "nip44_encrypt"
            | "nip44_decrypt" => Method::from_name(perm)
                .map(Perm::Method)
                .into_iter()
                .collect(),
            _ => perm
                .strip_prefix("sign_event:")
                .filter(|k| !k.is_empty() && k.len() <= 5 && k.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|k| k.parse::<u16>().ok())
                .map(|k| Perm::Kinds(k, k))
                .into_iter()
                .collect(),
        }
    };
    // An exact refusal beats a set that includes it, as in the original.
    let refused: Vec<Perm> = state
        .perms
        .iter()
        .filter(|(p, allow)| !allow && p != "basic")
        .flat_map(|(p, _)| read(p))
        .collect();
    let allowed: Vec<Perm> = state
        .perms
        .iter()
        .filter(|(_, allow)| *allow)
        .flat_map(|(p, _)| read(p))
        .filter(|p| !refused.contains(p))
        .collect();
    let mut policy = Policy::new(Perms::from_list(allowed));
    policy.rates = Rates::none();
    policy.window = None;
    Some(policy)
}

fn npub(p: &PublicKey) -> String {
    p.to_bech32().unwrap_or_default()
}

#[cfg(test)]
mod tests;
