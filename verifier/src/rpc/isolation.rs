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
//! 2. **Kinds** ([`check_template`]): `sign_event` refuses kinds 24133,
//!    24135 and 24136 (custody) outright. The enclave signs its own protocol messages itself and
//!    never needs an app to, and a kind is the only thing that tells a
//!    protocol message from any other encrypted event.
//! 3. **Plaintexts** ([`check_plaintext`]): a decryption whose plaintext is
//!    a request or response envelope of these protocols, or that contains
//!    the user's own private key, is refused, and so is encrypting such an
//!    envelope. This covers the conversations the enclave cannot name:
//!    the owner's admin requests to *other* enclaves (whose service keys it
//!    does not know), and NIP-46 traffic between the user and its other apps.
//!
//! "Holds the user's private key" means: any [`KEY_RUN`] (16) or more
//! consecutive characters of its hex or its nsec, in any letter case, or
//! 16 consecutive bytes of the raw key ([`holds_key_material`]). A whole
//! key is not needed to be dangerous: each part returned is a part the app
//! need not guess.
//!
//! Rule 3 holds for NIP-44, whose MAC makes a ciphertext impossible to
//! cut or alter: a plaintext is what its sender encrypted, whole. NIP-04
//! has no MAC. An app can cut a NIP-04 ciphertext at any block and choose
//! the IV, which XORs the first block with a mask of its choice (CBC), and
//! even cut a single block out and guess its padding:
//!
//! - A cut that keeps the original blocks after the first returns those
//!   blocks unmasked; a block inside the key is 16 consecutive characters
//!   of it, so the 16-character rule refuses every such cut. What is left
//!   to a query is one masked block and at most 15 characters of the key
//!   around it.
//! - A single block with a chosen IV is masked whole: nothing in the
//!   plaintext can tell it from a short message. One query per block (and a
//!   few guesses of its padding) reads the key 16 characters at a time.
//!
//! So no rule on the plaintext alone protects NIP-04, and the grant closes
//! the second path: `nip04_decrypt` from a peer the grant does not name
//! needs the owner's full access (`crate::grant`, `Refusal::Nip04NeedsPeer`).
//! A scoped app decrypts NIP-04 only from the peers its owner named, so it
//! cannot query the conversations of any other; the 16-character rule then
//! bounds what cuts of those return. The residual, in the README: an app
//! with full access, or granted `nip04_decrypt:PEER`, can read every NIP-04
//! message between the user and that peer, a key once sent over it
//! included. For the enclave's own conversations the peer rule holds
//! whatever the scheme, the admin API (whose requests carry private keys)
//! accepts NIP-44 only ([`ADMIN_NEEDS_NIP44`]), and `nip04_decrypt` fails
//! with one message whatever went wrong.
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
//! The three peer refusals say the same ([`PROTOCOL_PEER`]): an app learns
//! that a peer is off limits, not whether it is a key this enclave holds or
//! another app of this key (what remains learnable is in the README's
//! security section).

use std::fmt;

use nostr::{PublicKey, SecretKey, ToBech32};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::event::{KIND_ADMIN, KIND_CUSTODY, KIND_NIP46};

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
            // One text for the three: the app learns that a peer is off
            // limits, not whether it is a key this enclave holds or another
            // app of this key.
            Self::ServiceKeyPeer | Self::HeldKeyPeer | Self::AppPeer => f.write_str(PROTOCOL_PEER),
            Self::ServiceKeyApp => f.write_str(
                "forbidden: the app's key is this enclave's service key; an app is never one of the enclave's own keys",
            ),
            Self::OwnKeyApp => f.write_str(
                "forbidden: the app's key is the user's own key; an app is never one of the enclave's own keys",
            ),
            Self::ProtocolKind(kind) => write!(
                f,
                "forbidden: kind {kind} is the signer's own protocol (24133 NIP-46, 24135 admin API, 24136 custody); apps may not have it signed"
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

/// The refusal of a peer that is one of the enclave's protocol keys,
/// whichever it is.
pub const PROTOCOL_PEER: &str = "forbidden: the peer is one of this signer's protocol keys (its service key, a key it holds, or an app of this key); apps may not use their conversations";

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
    if kind == KIND_NIP46 || kind == KIND_ADMIN || kind == KIND_CUSTODY {
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
    if holds_key_material(secret, plaintext) {
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

/// Shortest run of a key's hex, nsec or bytes that a plaintext returned to
/// an app may not hold.
pub const KEY_RUN: usize = 16;

/// Whether `text` holds [`KEY_RUN`] or more consecutive characters of
/// `secret`'s hex or nsec, in any letter case, or [`KEY_RUN`] consecutive
/// bytes of the raw key.
///
/// One pass per form, with little work per byte: a window is looked up
/// among the key's runs only if its 16 characters are all of the form's
/// alphabet and its first two bytes begin some run (BENCHMARKS.md).
pub fn holds_key_material(secret: &SecretKey, text: &str) -> bool {
    let lower = Zeroizing::new(text.to_ascii_lowercase());
    let hex = Zeroizing::new(secret.to_secret_hex());
    let nsec = Zeroizing::new(secret.to_bech32().unwrap_or_default());
    let raw = Zeroizing::new(secret.to_secret_bytes());
    // bech32's data characters, and the `1` of `nsec1`: all but b, i, o.
    let bech32 =
        |b: u8| (b.is_ascii_lowercase() && !matches!(b, b'b' | b'i' | b'o')) || b.is_ascii_digit();
    holds_run(lower.as_bytes(), hex.as_bytes(), |b| b.is_ascii_hexdigit())
        || holds_run(lower.as_bytes(), nsec.as_bytes(), bech32)
        || holds_run(text.as_bytes(), raw.as_slice(), |_| true)
}

/// Whether `haystack` holds a run of [`KEY_RUN`] bytes of `key`, whose
/// bytes are all in `alphabet`.
fn holds_run(haystack: &[u8], key: &[u8], alphabet: impl Fn(u8) -> bool) -> bool {
    // Every run of the key, sorted, and which two bytes begin one: both
    // traces of the key, wiped when dropped.
    let mut runs: Zeroizing<Vec<[u8; KEY_RUN]>> = Zeroizing::new(
        key.windows(KEY_RUN)
            .filter_map(|w| <[u8; KEY_RUN]>::try_from(w).ok())
            .collect(),
    );
    runs.sort_unstable();
    let mut starts: Zeroizing<Vec<u64>> = Zeroizing::new(vec![0; 1024]);
    let pair = |w: &[u8]| match w {
        [a, b, ..] => usize::from(*a) << 8 | usize::from(*b),
        _ => 0,
    };
    for run in runs.iter() {
        let at = pair(run);
        if let Some(word) = starts.get_mut(at / 64) {
            *word |= 1 << (at % 64);
        }
    }
    let mut streak = 0usize;
    for (end, byte) in haystack.iter().enumerate() {
        if !alphabet(*byte) {
            streak = 0;
            continue;
        }
        streak += 1;
        if streak < KEY_RUN {
            continue;
        }
        let Some(window) = haystack.get(end + 1 - KEY_RUN..=end) else {
            continue;
        };
        let at = pair(window);
        let begins = starts
            .get(at / 64)
            .is_some_and(|word| word & (1 << (at % 64)) != 0);
        if begins && runs.binary_search_by(|r| r.as_slice().cmp(window)).is_ok() {
            return true;
        }
    }
    false
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
        assert!(check_template(24136).is_err());
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

    #[test]
    fn sixteen_characters_of_the_key_are_refused_anywhere() {
        let keys = Keys::generate();
        let hex = keys.secret_key().to_secret_hex();
        let nsec = keys.secret_key().to_bech32().unwrap();
        for start in [0, 1, 17, 31, 48] {
            let run = &hex[start..start + 16];
            let text = format!("masked junk then {run} and more");
            assert_eq!(
                check_plaintext(keys.secret_key(), &text),
                Err(Refusal::SecretKey),
                "{start}"
            );
            let upper = format!("x{}y", run.to_ascii_uppercase());
            assert!(holds_key_material(keys.secret_key(), &upper));
        }
        for start in [0, 5, 20, 47] {
            let run = &nsec[start..start + 16];
            assert!(holds_key_material(keys.secret_key(), &format!("..{run}..")));
            let mixed: String = run
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            assert!(holds_key_material(keys.secret_key(), &mixed));
        }
        // The raw bytes, where they happen to be valid UTF-8: build a key
        // whose bytes are ASCII to check it.
        let ascii = SecretKey::from_slice(b"0123456789abcdefghijklmnopqrstuv").unwrap();
        assert!(holds_key_material(&ascii, "prefix 89abcdefghijklmn suffix"));
        assert!(!holds_key_material(&ascii, "89abcdefghijklm"));
        // Fifteen characters are not a run; other text never is.
        assert!(!holds_key_material(keys.secret_key(), &hex[3..18]));
        assert!(!holds_key_material(
            keys.secret_key(),
            "a DM about nothing in particular at all"
        ));
    }
}
