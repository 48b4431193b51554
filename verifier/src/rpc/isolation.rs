//! The isolation rule: **a key the enclave uses for its own protocols is
//! never a peer in an app's request.**
//!
//! The enclave speaks two protocols, both as NIP-44/NIP-04 encrypted
//! events: the admin API (kind 24135, between a user key and the service
//! key) and NIP-46 (kind 24133, between a held key and its apps). An app
//! that may use a user key could otherwise turn the signer's methods
//! against those conversations, because a conversation key is symmetric:
//!
//! - `nip44_decrypt [service key, <the owner's captured import_key>]`
//!   returns the owner's private key;
//! - `nip44_encrypt [service key, <an admin request>]` plus `sign_event` of
//!   a kind 24135 event makes the owner's admin request (`connect_key` for
//!   another app, `delete_key`);
//! - the same against another held key, or against the conversation of
//!   another app, reads or forges their NIP-46 traffic.
//!
//! So, for every NIP-46 method an app calls:
//!
//! 1. **Peers** ([`check_peer`]): `nip04_*`/`nip44_*` refuse a peer that is
//!    the service key, any other key the enclave holds, or an app allowed on
//!    this key (their conversation is that app's NIP-46 channel). The user's
//!    own key is allowed: encrypting to oneself is how private lists and
//!    nsec.app's permission events work, and the enclave never answers an
//!    event its own keys authored.
//! 2. **Kinds** ([`check_template`]): `sign_event` refuses kinds 24133 and
//!    24135 outright. The enclave signs its own protocol messages itself and
//!    never needs an app to, and a kind is the only thing that tells a
//!    protocol message from any other encrypted event.
//! 3. **Plaintexts** ([`check_plaintext`]): a decryption whose plaintext is
//!    a request or response envelope of these protocols, or that contains
//!    the user's own private key, is refused, and so is encrypting such an
//!    envelope. This covers the conversations the enclave cannot name:
//!    the owner's admin requests to *other* enclaves (whose service keys it
//!    does not know), and NIP-46 traffic between the user and its other apps.
//!
//! Rule 3 holds for NIP-44, whose MAC makes a ciphertext impossible to
//! alter. NIP-04 has no MAC: an app can cut a NIP-04 ciphertext into blocks
//! and have each decrypted on its own (CBC with a chosen IV), so no
//! fragment looks like an envelope or a whole key. For NIP-04 the peer rule
//! is what protects the enclave's own conversations, and so the admin API
//! (whose requests carry private keys) accepts NIP-44 only
//! ([`ADMIN_NEEDS_NIP44`]) and `nip04_decrypt` fails with one message
//! whatever went wrong, so it is not a padding oracle.
//!
//! And the rule read the other way ([`check_app`]): the owner's
//! `connect_key`, `grant` and `nostrconnect`, and nsec.app's permission
//! events, cannot make the service key or the user's own key an app: the
//! enclave would send NIP-46 events to it and count its conversations as
//! an app's (found by fuzzing the signer with a `nostrconnect://` URI naming
//! the service key). Another held key is not refused: it never makes NIP-46
//! requests (they are dropped), so as an app it can do nothing, and a
//! refusal would tell anyone who asks which keys this enclave holds.
//!
//! Every refusal is an error reply that says why ([`Refusal`]'s `Display`).

use std::fmt;

use nostr::{PublicKey, SecretKey, ToBech32};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::event::{KIND_ADMIN, KIND_NIP46};

/// Why an app's request was refused by the isolation rule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The peer is the enclave's service key.
    ServiceKeyPeer,
    /// The peer is another key held by this enclave.
    HeldKeyPeer,
    /// The peer is an app allowed on this key.
    AppPeer,
    /// `sign_event` of one of the signer's own protocol kinds.
    ProtocolKind(u16),
    /// `sign_event` of an nsec.app permission event (kind 30078 tagged
    /// `nsec.app/perm`): an app must not rewrite its own rights.
    PermissionEvent,
    /// The plaintext is an admin-API or NIP-46 message.
    ProtocolMessage,
    /// The plaintext holds the user's private key.
    SecretKey,
    /// The app's key is the enclave's service key.
    ServiceKeyApp,
    /// The app's key is the user's own.
    OwnKeyApp,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServiceKeyPeer => f.write_str(
                "forbidden: the peer is this enclave's service key, whose conversations are the owner's admin channel",
            ),
            Self::HeldKeyPeer => f.write_str(
                "forbidden: the peer is another key held by this enclave; apps may not use its conversations",
            ),
            Self::ServiceKeyApp => f.write_str(
                "forbidden: the app's key is this enclave's service key; an app is never one of the enclave's own keys",
            ),
            Self::OwnKeyApp => f.write_str(
                "forbidden: the app's key is the user's own key; an app is never one of the enclave's own keys",
            ),
            Self::AppPeer => f.write_str(
                "forbidden: the peer is an app connected to this key; its conversation is that app's NIP-46 channel",
            ),
            Self::ProtocolKind(kind) => write!(
                f,
                "forbidden: kind {kind} is the signer's own protocol (24133 NIP-46, 24135 admin API); apps may not have it signed"
            ),
            Self::PermissionEvent => f.write_str(
                "forbidden: this is an nsec.app permission event (kind 30078, t nsec.app/perm); apps may not have their rights signed",
            ),
            Self::ProtocolMessage => f.write_str(
                "forbidden: this plaintext is a NIP-46 or admin-API message; the signer does not open or make its own protocol traffic for apps",
            ),
            Self::SecretKey => f.write_str("forbidden: the plaintext holds this signer's private key"),
        }
    }
}

impl std::error::Error for Refusal {}

/// What the enclave uses for its own protocols, as the rule needs to see it.
pub trait ProtocolKeys {
    /// Whether `key` is the service key.
    fn is_service_key(&self, key: &PublicKey) -> bool;
    /// Whether `key` is held by the enclave (test keys included).
    fn is_held_key(&self, key: &PublicKey) -> bool;
    /// Whether `app` is an app allowed on the held key `user`.
    fn is_app_of(&self, user: &PublicKey, app: &PublicKey) -> bool;
}

/// The error reply of an admin request sealed with NIP-04.
pub const ADMIN_NEEDS_NIP44: &str =
    "the admin API takes NIP-44 only: NIP-04 ciphertexts can be altered in transit";

/// The one error of a failed `nip04_decrypt`, whatever the cause.
pub const NIP04_DECRYPT_FAILED: &str = "nip04_decrypt: cannot decrypt this ciphertext";

/// Rule 1: may the user `user` encrypt to or decrypt from `peer`?
pub fn check_peer(
    keys: &impl ProtocolKeys,
    user: &PublicKey,
    peer: &PublicKey,
) -> Result<(), Refusal> {
    if keys.is_service_key(peer) {
        return Err(Refusal::ServiceKeyPeer);
    }
    if peer == user {
        return Ok(());
    }
    if keys.is_held_key(peer) {
        return Err(Refusal::HeldKeyPeer);
    }
    if keys.is_app_of(user, peer) {
        return Err(Refusal::AppPeer);
    }
    Ok(())
}

/// The rule read the other way: may `app` become an app of `user`?
pub fn check_app(
    keys: &impl ProtocolKeys,
    user: &PublicKey,
    app: &PublicKey,
) -> Result<(), Refusal> {
    if keys.is_service_key(app) {
        return Err(Refusal::ServiceKeyApp);
    }
    if app == user {
        return Err(Refusal::OwnKeyApp);
    }
    Ok(())
}

/// Rule 2: may an app have an event of `kind` signed?
pub fn check_template(kind: u16) -> Result<(), Refusal> {
    if kind == KIND_NIP46 || kind == KIND_ADMIN {
        return Err(Refusal::ProtocolKind(kind));
    }
    Ok(())
}

/// Rule 2, with the template's tags: nor a permission event the signer
/// reads its grants from (`crate::grant::nsecapp`).
pub fn check_event<'a>(
    kind: u16,
    tags: impl IntoIterator<Item = &'a [String]>,
) -> Result<(), Refusal> {
    check_template(kind)?;
    if crate::grant::nsecapp::is_perm_event(kind, tags) {
        return Err(Refusal::PermissionEvent);
    }
    Ok(())
}

/// Rule 3 for decryption: may `plaintext`, decrypted with `secret`, be
/// returned to an app?
pub fn check_plaintext(secret: &SecretKey, plaintext: &str) -> Result<(), Refusal> {
    if is_protocol_message(plaintext) {
        return Err(Refusal::ProtocolMessage);
    }
    if holds_secret(secret, plaintext) {
        return Err(Refusal::SecretKey);
    }
    Ok(())
}

/// Rule 3 for encryption: may an app have `plaintext` encrypted?
pub fn check_outgoing(plaintext: &str) -> Result<(), Refusal> {
    if is_protocol_message(plaintext) {
        return Err(Refusal::ProtocolMessage);
    }
    Ok(())
}

/// Whether `text` is a request (`{id, method, params: [strings]}`) or a
/// response (`{id, result[, error]}`) of NIP-46 or the admin API.
pub fn is_protocol_message(text: &str) -> bool {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        return false;
    }
    let Ok(value) = serde_json::from_str::<Value>(trimmed) else {
        return false;
    };
    let value = Wiped(value);
    let Some(object) = value.0.as_object() else {
        return false;
    };
    if !matches!(object.get("id"), Some(Value::String(_))) {
        return false;
    }
    let request = matches!(object.get("method"), Some(Value::String(_)))
        && match object.get("params") {
            None | Some(Value::Null) => true,
            Some(Value::Array(items)) => items.iter().all(Value::is_string),
            Some(_) => false,
        };
    let response = matches!(object.get("result"), Some(Value::String(_)))
        || matches!(object.get("error"), Some(Value::String(_)));
    request || response
}

/// Whether `text` contains `secret` as hex or nsec, in any letter case.
fn holds_secret(secret: &SecretKey, text: &str) -> bool {
    let lower = Zeroizing::new(text.to_ascii_lowercase());
    let hex = Zeroizing::new(secret.to_secret_hex());
    if lower.contains(hex.as_str()) {
        return true;
    }
    match secret.to_bech32() {
        Ok(nsec) => lower.contains(Zeroizing::new(nsec).as_str()),
        Err(_) => false,
    }
}

/// A parsed JSON value whose strings are wiped when it is dropped.
struct Wiped(Value);

impl Drop for Wiped {
    fn drop(&mut self) {
        super::message::wipe_json(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::Keys;

    struct Held(Vec<PublicKey>, PublicKey, Vec<PublicKey>);

    impl ProtocolKeys for Held {
        fn is_service_key(&self, key: &PublicKey) -> bool {
            *key == self.1
        }
        fn is_held_key(&self, key: &PublicKey) -> bool {
            self.0.contains(key)
        }
        fn is_app_of(&self, _user: &PublicKey, app: &PublicKey) -> bool {
            self.2.contains(app)
        }
    }

    #[test]
    fn peers_that_are_protocol_keys_are_refused() {
        let (user, other, service, stranger) = (
            Keys::generate().public_key(),
            Keys::generate().public_key(),
            Keys::generate().public_key(),
            Keys::generate().public_key(),
        );
        let app = Keys::generate().public_key();
        let held = Held(vec![user, other], service, vec![app]);
        assert_eq!(check_peer(&held, &user, &app), Err(Refusal::AppPeer));
        assert_eq!(
            check_peer(&held, &user, &service),
            Err(Refusal::ServiceKeyPeer)
        );
        assert_eq!(check_peer(&held, &user, &other), Err(Refusal::HeldKeyPeer));
        assert_eq!(check_peer(&held, &user, &user), Ok(()));
        assert_eq!(check_peer(&held, &user, &stranger), Ok(()));
    }

    #[test]
    fn protocol_kinds_are_never_signed_for_apps() {
        assert!(check_template(24133).is_err());
        assert!(check_template(24135).is_err());
        assert!(check_template(1).is_ok());
        assert!(check_template(24134).is_ok());
    }

    #[test]
    fn protocol_envelopes_are_recognised() {
        for yes in [
            r#"{"id":"1","method":"import_key","params":["aa","wss://r"]}"#,
            r#" {"id":"x","method":"ping"}"#,
            r#"{"id":"1","result":"ok"}"#,
            r#"{"id":"1","result":"","error":"no"}"#,
        ] {
            assert!(is_protocol_message(yes), "{yes}");
        }
        for no in [
            "hello",
            r#"{"method":"pay_invoice","params":{"invoice":"lnbc"}}"#,
            r#"{"result_type":"pay_invoice","result":{}}"#,
            r#"{"id":1,"method":"ping"}"#,
            r#"{"id":"1","method":"m","params":{"a":1}}"#,
            "[1,2]",
        ] {
            assert!(!is_protocol_message(no), "{no}");
        }
    }

    #[test]
    fn the_users_secret_is_never_returned() {
        let keys = Keys::generate();
        let hex = keys.secret_key().to_secret_hex();
        let nsec = keys.secret_key().to_bech32().unwrap();
        for text in [
            format!("my key is {hex}"),
            hex.to_ascii_uppercase(),
            format!("backup: {nsec}"),
            nsec.to_ascii_uppercase(),
        ] {
            assert_eq!(
                check_plaintext(keys.secret_key(), &text),
                Err(Refusal::SecretKey)
            );
        }
        assert_eq!(check_plaintext(keys.secret_key(), "a DM"), Ok(()));
    }
}
