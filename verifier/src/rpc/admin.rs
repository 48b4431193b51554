//! The admin API (kind 24135, p-tagged to the service key, signed by the
//! user's key), wire-compatible with the original noauth-enclaved:
//!
//! | method | params | result |
//! |---|---|---|
//! | `ping` | | `pong` |
//! | `has_key` | | `true` or `false` |
//! | `key_status` | | `super::status::KeyStatus` as JSON |
//! | `import_key` | privkey, relays_csv, apps? | `ok` (see below) |
//! | `connect_key` | privkey, app pubkey, relays_csv, policy? | `ok` |
//! | `delete_key` | | `ok` |
//! | `generate_test_key` | relays_csv | bunker URL |
//! | `create_bunker_url` | policy? | bunker URL |
//! | `revoke_app` | app pubkey | `ok` |
//! | `grant` | app pubkey, policy | `ok` |
//! | `list_apps` | cursor? | a page of apps |
//! | `get_log` | cursor? | a page of decisions |
//! | `nostrconnect` | nostrconnect:// URI, policy? | the app's client pubkey |
//!
//! A policy is the JSON of `crate::grant::wire`; without one,
//! `connect_key` and `create_bunker_url` grant full access, as the
//! original did. The app that spends a bunker URL's secret gets that URL's
//! policy, narrowed by the perms it asks for. `grant` sets (or replaces)
//! one app's policy; `list_apps` and `get_log` return a
//! `crate::grant::wire::Page` as JSON, of `AppView`s and `LogEntry`s: pass
//! its `next` as the cursor for the following page. `nostrconnect` takes a
//! URI an app shows (`super::nostrconnect`): the app's client key gets the
//! policy (full access without one), narrowed by the perms in the URI; the
//! key also listens on the URI's relays; and the enclave sends the app the
//! `connect` response it waits for.
//!
//! `import_key` of a key already held updates its relays and, by default
//! (`apps` = `keep`), keeps the apps allowed on it and its pending bunker
//! secrets; its result then says how many (`ok: already held; 2 apps and 1
//! pending bunker secret kept`). `apps` = `drop` revokes them all. A new
//! key's result is `ok`, as in the original. `revoke_app` ends one app's
//! access without touching the key (an extension of the original).
//!
//! The request's signer is who acts: `import_key`/`connect_key` must hand
//! over the signer's own private key, and `has_key`, `delete_key` and
//! `create_bunker_url` act on the signer's key only.

use nostr::{Keys, PublicKey, RelayUrl};

use crate::grant::Policy;

use super::nostrconnect::NostrConnect;

use super::message::{Params, Request};
use super::relays::{parse_relays_csv, relays_csv};

/// Whether a successful admin request of `method` changes what an enclave
/// must keep across a restart (its owner is told "ok" only once that is
/// committed): imports, deletions, grants, revocations, bunker secrets,
/// nostrconnect answers and test keys. Reads change nothing.
pub fn changes_state(method: &str) -> bool {
    matches!(
        method,
        method::IMPORT_KEY
            | method::CONNECT_KEY
            | method::DELETE_KEY
            | method::GENERATE_TEST_KEY
            | method::CREATE_BUNKER_URL
            | method::REVOKE_APP
            | method::GRANT
            | method::NOSTRCONNECT
    )
}

/// Method names.
pub mod method {
    /// Liveness.
    pub const PING: &str = "ping";
    /// Whether the signer's key is held.
    pub const HAS_KEY: &str = "has_key";
    /// The signer's key: held, its apps, and when it would be let go.
    pub const KEY_STATUS: &str = "key_status";
    /// Hand over the signer's key.
    pub const IMPORT_KEY: &str = "import_key";
    /// Hand over the signer's key and grant one app full access.
    pub const CONNECT_KEY: &str = "connect_key";
    /// Delete the signer's key.
    pub const DELETE_KEY: &str = "delete_key";
    /// A fresh throw-away key, returned as a bunker URL.
    pub const GENERATE_TEST_KEY: &str = "generate_test_key";
    /// A bunker URL with a fresh single-use secret for the signer's key.
    pub const CREATE_BUNKER_URL: &str = "create_bunker_url";
    /// End one app's access to the signer's key.
    pub const REVOKE_APP: &str = "revoke_app";
    /// Set one app's policy.
    pub const GRANT: &str = "grant";
    /// The apps on the signer's key, with their policies and uses.
    pub const LIST_APPS: &str = "list_apps";
    /// The decision log of the signer's key.
    pub const GET_LOG: &str = "get_log";
    /// Answer an app's nostrconnect:// URI with the signer's key.
    pub const NOSTRCONNECT: &str = "nostrconnect";
}

/// What `import_key` does with the apps of a key already held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeptApps {
    /// Keep them (and pending bunker secrets); the reply says how many.
    #[default]
    Keep,
    /// Revoke every app and pending bunker secret.
    Drop,
}

impl KeptApps {
    /// The parameter's wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Drop => "drop",
        }
    }
}

/// `ping`'s result.
pub const PONG: &str = "pong";
/// The result of a change.
pub const OK: &str = "ok";

/// A parsed admin request.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminRequest {
    /// `ping`.
    Ping,
    /// `has_key`.
    HasKey,
    /// `key_status`.
    KeyStatus,
    /// `import_key`.
    ImportKey {
        /// The key (its `Debug` shows only the public key).
        keys: Keys,
        /// Where its NIP-46 requests arrive.
        relays: Vec<RelayUrl>,
        /// What happens to the apps of a key already held.
        apps: KeptApps,
    },
    /// `connect_key`.
    ConnectKey {
        /// The key.
        keys: Keys,
        /// The app given full access.
        app: PublicKey,
        /// Where its NIP-46 requests arrive.
        relays: Vec<RelayUrl>,
        /// What the app may do; `None`: full access.
        policy: Option<Policy>,
    },
    /// `delete_key`.
    DeleteKey,
    /// `generate_test_key`.
    GenerateTestKey {
        /// Where the test key's NIP-46 requests arrive.
        relays: Vec<RelayUrl>,
    },
    /// `create_bunker_url`.
    CreateBunkerUrl {
        /// What the app that spends the URL may do; `None`: full access.
        policy: Option<Policy>,
    },
    /// `revoke_app`.
    RevokeApp {
        /// The app whose access ends.
        app: PublicKey,
    },
    /// `grant`.
    Grant {
        /// The app.
        app: PublicKey,
        /// Its new policy.
        policy: Policy,
    },
    /// `list_apps`.
    ListApps {
        /// Where the page starts.
        cursor: Option<u64>,
    },
    /// `get_log`.
    GetLog {
        /// Where the page starts.
        cursor: Option<u64>,
    },
    /// `nostrconnect`.
    NostrConnect {
        /// The app's URI (its `Debug` hides the secret).
        uri: NostrConnect,
        /// What the app may do; `None`: full access (narrowed by the URI's perms).
        policy: Option<Policy>,
    },
}

impl AdminRequest {
    /// The method name.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Ping => method::PING,
            Self::HasKey => method::HAS_KEY,
            Self::KeyStatus => method::KEY_STATUS,
            Self::ImportKey { .. } => method::IMPORT_KEY,
            Self::ConnectKey { .. } => method::CONNECT_KEY,
            Self::DeleteKey => method::DELETE_KEY,
            Self::GenerateTestKey { .. } => method::GENERATE_TEST_KEY,
            Self::CreateBunkerUrl { .. } => method::CREATE_BUNKER_URL,
            Self::RevokeApp { .. } => method::REVOKE_APP,
            Self::Grant { .. } => method::GRANT,
            Self::ListApps { .. } => method::LIST_APPS,
            Self::GetLog { .. } => method::GET_LOG,
            Self::NostrConnect { .. } => method::NOSTRCONNECT,
        }
    }

    /// The request to send (with a fresh id).
    pub fn to_request(&self) -> Request {
        let secret = |keys: &Keys| keys.secret_key().to_secret_hex();
        let params = match self {
            Self::Ping
            | Self::HasKey
            | Self::KeyStatus
            | Self::DeleteKey
            | Self::CreateBunkerUrl { policy: None }
            | Self::ListApps { cursor: None }
            | Self::GetLog { cursor: None } => Params::default(),
            Self::CreateBunkerUrl { policy: Some(p) } => Params::new([p.to_json()]),
            Self::ListApps { cursor: Some(c) } | Self::GetLog { cursor: Some(c) } => {
                Params::new([c.to_string()])
            }
            Self::Grant { app, policy } => Params::new([app.to_hex(), policy.to_json()]),
            Self::NostrConnect { uri, policy } => {
                let uri = uri.to_uri();
                match policy {
                    Some(p) => Params::new([uri.as_str().to_owned(), p.to_json()]),
                    None => Params::new([uri.as_str().to_owned()]),
                }
            }
            Self::ImportKey {
                keys,
                relays,
                apps: KeptApps::Keep,
            } => Params::new([secret(keys), relays_csv(relays)]),
            Self::ImportKey { keys, relays, apps } => {
                Params::new([secret(keys), relays_csv(relays), apps.as_str().to_owned()])
            }
            Self::ConnectKey {
                keys,
                app,
                relays,
                policy: None,
            } => Params::new([secret(keys), app.to_hex(), relays_csv(relays)]),
            Self::ConnectKey {
                keys,
                app,
                relays,
                policy: Some(p),
            } => Params::new([secret(keys), app.to_hex(), relays_csv(relays), p.to_json()]),
            Self::GenerateTestKey { relays } => Params::new([relays_csv(relays)]),
            Self::RevokeApp { app } => Params::new([app.to_hex()]),
        };
        Request::new(self.method(), params)
    }

    /// Parses `request`, allowing at most `max_relays` relays. The error
    /// is the message for the error reply; it never repeats a parameter.
    pub fn parse(request: &Request, max_relays: usize) -> Result<Self, String> {
        let p = &request.params;
        let param = |i: usize, name: &str| {
            p.get(i)
                .ok_or_else(|| format!("{}: missing parameter {name}", request.method))
        };
        let keys = |i: usize| {
            Keys::parse(param(i, "privkey")?).map_err(|_| {
                format!(
                    "{}: the private key is not valid hex or nsec",
                    request.method
                )
            })
        };
        let relays = |i: usize| {
            parse_relays_csv(param(i, "relays")?, max_relays)
                .map_err(|e| format!("{}: {e}", request.method))
        };
        let app = |i: usize| {
            PublicKey::parse(param(i, "app pubkey")?).map_err(|_| {
                format!(
                    "{}: the app pubkey is not valid hex or npub",
                    request.method
                )
            })
        };
        let policy = |i: usize| match p.get(i) {
            None | Some("") => Ok(None),
            Some(json) => Policy::from_json(json)
                .map(Some)
                .map_err(|e| format!("{}: {e}", request.method)),
        };
        let cursor = |i: usize| match p.get(i) {
            None | Some("") => Ok(None),
            Some(c) => c
                .parse()
                .map(Some)
                .map_err(|_| format!("{}: the cursor is not a number", request.method)),
        };
        Ok(match request.method.as_str() {
            method::PING => Self::Ping,
            method::HAS_KEY => Self::HasKey,
            method::KEY_STATUS => Self::KeyStatus,
            method::IMPORT_KEY => Self::ImportKey {
                keys: keys(0)?,
                relays: relays(1)?,
                apps: match p.get(2) {
                    None | Some("") | Some("keep") => KeptApps::Keep,
                    Some("drop") => KeptApps::Drop,
                    Some(_) => {
                        return Err(
                            "import_key: the third parameter is \"keep\" or \"drop\" (the apps of a key already held)"
                                .into(),
                        )
                    }
                },
            },
            method::CONNECT_KEY => Self::ConnectKey {
                keys: keys(0)?,
                app: app(1)?,
                relays: relays(2)?,
                policy: policy(3)?,
            },
            method::REVOKE_APP => Self::RevokeApp { app: app(0)? },
            method::GRANT => Self::Grant {
                app: app(0)?,
                policy: policy(1)?.ok_or("grant: missing parameter policy")?,
            },
            method::LIST_APPS => Self::ListApps { cursor: cursor(0)? },
            method::GET_LOG => Self::GetLog { cursor: cursor(0)? },
            method::NOSTRCONNECT => Self::NostrConnect {
                uri: NostrConnect::parse(param(0, "uri")?, max_relays)
                    .map_err(|e| format!("nostrconnect: {e}"))?,
                policy: policy(1)?,
            },
            method::DELETE_KEY => Self::DeleteKey,
            method::GENERATE_TEST_KEY => Self::GenerateTestKey { relays: relays(0)? },
            method::CREATE_BUNKER_URL => Self::CreateBunkerUrl {
                policy: policy(0)?,
            },
            other => return Err(format!("unknown method {other:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_without_showing_keys() {
        let keys = Keys::generate();
        let relays = vec![RelayUrl::parse("wss://r.example").unwrap()];
        let app = Keys::generate().public_key();
        let scoped = Policy::new(crate::grant::Perms::parse("sign_event:1").unwrap());
        for request in [
            AdminRequest::Ping,
            AdminRequest::HasKey,
            AdminRequest::ImportKey {
                keys: keys.clone(),
                relays: relays.clone(),
                apps: KeptApps::Keep,
            },
            AdminRequest::ImportKey {
                keys: keys.clone(),
                relays: relays.clone(),
                apps: KeptApps::Drop,
            },
            AdminRequest::RevokeApp { app },
            AdminRequest::ConnectKey {
                keys: keys.clone(),
                app,
                relays: relays.clone(),
                policy: None,
            },
            AdminRequest::ConnectKey {
                keys: keys.clone(),
                app,
                relays: relays.clone(),
                policy: Some(scoped.clone()),
            },
            AdminRequest::DeleteKey,
            AdminRequest::GenerateTestKey {
                relays: relays.clone(),
            },
            AdminRequest::CreateBunkerUrl { policy: None },
            AdminRequest::CreateBunkerUrl {
                policy: Some(scoped.clone()),
            },
            AdminRequest::Grant {
                app,
                policy: scoped.clone(),
            },
            AdminRequest::ListApps { cursor: None },
            AdminRequest::ListApps { cursor: Some(7) },
            AdminRequest::GetLog { cursor: None },
            AdminRequest::GetLog { cursor: Some(0) },
            AdminRequest::NostrConnect {
                uri: NostrConnect::parse(
                    &format!("nostrconnect://{}?relay=wss://r.example&secret=zz-secret-zz&perms=sign_event%3A1", app.to_hex()),
                    4,
                )
                .unwrap(),
                policy: Some(scoped.clone()),
            },
        ] {
            let wire = request.to_request();
            let json = wire.to_json();
            let parsed = AdminRequest::parse(&Request::parse(&json).unwrap(), 4).unwrap();
            assert_eq!(parsed, request);
            let secret = keys.secret_key().to_secret_hex();
            assert!(!format!("{request:?}{wire:?}").contains(&secret));
        }
    }

    #[test]
    fn errors_name_the_problem_not_the_key() {
        let req = |method: &str, params: &[&str]| Request {
            id: "1".into(),
            method: method.into(),
            params: Params::new(params.iter().copied()),
        };
        let e =
            AdminRequest::parse(&req("import_key", &["zz-secret-zz", "wss://r"]), 4).unwrap_err();
        assert!(
            e.contains("not valid") && !e.contains("zz-secret-zz"),
            "{e}"
        );
        let k = Keys::generate().secret_key().to_secret_hex();
        assert!(AdminRequest::parse(&req("import_key", &[&k]), 4)
            .unwrap_err()
            .contains("missing"));
        assert!(AdminRequest::parse(&req("import_key", &[&k, "https://x"]), 4).is_err());
        assert!(AdminRequest::parse(&req("connect_key", &[&k, "nope", "wss://r"]), 4).is_err());
        let app = Keys::generate().public_key().to_hex();
        assert!(AdminRequest::parse(&req("grant", &[&app]), 4)
            .unwrap_err()
            .contains("missing parameter policy"));
        assert!(
            AdminRequest::parse(&req("grant", &[&app, r#"{"perms":"sign_event"}"#]), 4)
                .unwrap_err()
                .starts_with("grant: sign_event needs its kinds")
        );
        assert!(AdminRequest::parse(&req("get_log", &["x"]), 4).is_err());
        assert!(AdminRequest::parse(&req("sign_event", &[]), 4)
            .unwrap_err()
            .contains("unknown method"));
    }
}
