//! The official NIP-44 v2 test vectors (`nip44.vectors.json` of
//! paulmillr/nip44, committed unchanged) run through the code the signer
//! uses for every request, reply and `nip44_*` call: `rpc::nip44`, reached
//! through `rpc::cipher::Conversation` where the signer goes that way.
//!
//! The file is byte for byte the one published with the reference
//! implementation (its sha256 is checked below). This copy was taken from
//! the `monstr` 0.1.9 source distribution on PyPI, which ships it
//! unchanged as `tests/nip44.vectors.json`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use nostr::{Keys, PublicKey, SecretKey};
use serde_json::Value;
use sha2::{Digest, Sha256};
use verifier::rpc::cipher::Conversation;
use verifier::rpc::nip44::{self, ConversationKey, MessageKeys, Nip44Error};

const VECTORS: &str = include_str!("data/nip44.vectors.json");
/// The official file's sha256, as published with the NIP-44 reference code.
const VECTORS_SHA256: &str = "269ed0f69e4c192512cc779e78c555090cebc7c785b609e338a62afc3ce25040";

fn v2() -> Value {
    serde_json::from_str::<Value>(VECTORS).unwrap()["v2"].clone()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} in {v}"))
}

fn cases<'a>(v: &'a Value, path: &[&str]) -> &'a Vec<Value> {
    let mut at = v;
    for p in path {
        at = &at[*p];
    }
    let list = at.as_array().unwrap_or_else(|| panic!("{path:?}"));
    assert!(!list.is_empty(), "{path:?} is empty");
    list
}

fn bytes<const N: usize>(v: &Value, k: &str) -> [u8; N] {
    hex::decode(s(v, k)).unwrap().try_into().unwrap()
}

fn key(v: &Value) -> ConversationKey {
    ConversationKey::from_bytes(bytes(v, "conversation_key"))
}

fn usize_of(v: &Value) -> usize {
    usize::try_from(v.as_u64().unwrap()).unwrap()
}

#[test]
fn the_vectors_file_is_the_official_one() {
    assert_eq!(
        hex::encode(Sha256::digest(VECTORS.as_bytes())),
        VECTORS_SHA256
    );
}

#[test]
fn conversation_keys() {
    let v = v2();
    for c in cases(&v, &["valid", "get_conversation_key"]) {
        let sk = SecretKey::from_hex(s(c, "sec1")).unwrap();
        let pk = PublicKey::from_hex(s(c, "pub2")).unwrap();
        let Conversation::Nip44(k) = Conversation::nip44(&sk, &pk).unwrap() else {
            panic!("not NIP-44")
        };
        assert_eq!(hex::encode(k.as_bytes()), s(c, "conversation_key"), "{c}");
    }
    for c in cases(&v, &["invalid", "get_conversation_key"]) {
        let refused = match (
            SecretKey::from_hex(s(c, "sec1")),
            PublicKey::from_hex(s(c, "pub2")),
        ) {
            (Ok(sk), Ok(pk)) => ConversationKey::derive(&sk, &pk).is_err(),
            _ => true,
        };
        assert!(refused, "{}", s(c, "note"));
    }
}

#[test]
fn message_keys() {
    let v = v2();
    let group = &v["valid"]["get_message_keys"];
    let conversation = key(group);
    for c in cases(group, &["keys"]) {
        let keys = MessageKeys::new(&conversation, &bytes(c, "nonce")).unwrap();
        assert_eq!(hex::encode(keys.chacha_key()), s(c, "chacha_key"), "{c}");
        assert_eq!(
            hex::encode(keys.chacha_nonce()),
            s(c, "chacha_nonce"),
            "{c}"
        );
        assert_eq!(hex::encode(keys.hmac_key()), s(c, "hmac_key"), "{c}");
    }
}

#[test]
fn padded_lengths() {
    let v = v2();
    let conversation = ConversationKey::from_bytes([5; 32]);
    for pair in cases(&v, &["valid", "calc_padded_len"]) {
        let (len, padded) = (usize_of(&pair[0]), usize_of(&pair[1]));
        assert_eq!(nip44::calc_padded_len(len), padded, "{len}");
        if len > nip44::MAX_PLAINTEXT {
            continue;
        }
        // And the payload shows it: version, nonce, 2-byte length prefix,
        // padded plaintext and MAC, in base64.
        let payload = nip44::encrypt(&conversation, &vec![b'a'; len]).unwrap();
        let raw = 1 + 32 + 2 + padded + 32;
        assert_eq!(payload.len(), raw.div_ceil(3) * 4, "{len} pads to {padded}");
    }
}

#[test]
fn encrypt_and_decrypt_byte_for_byte() {
    let v = v2();
    for c in cases(&v, &["valid", "encrypt_decrypt"]) {
        let sk1 = SecretKey::from_hex(s(c, "sec1")).unwrap();
        let sk2 = SecretKey::from_hex(s(c, "sec2")).unwrap();
        let pk1 = Keys::new(sk1.clone()).public_key();
        let pk2 = Keys::new(sk2.clone()).public_key();
        let derived = ConversationKey::derive(&sk1, &pk2).unwrap();
        assert_eq!(hex::encode(derived.as_bytes()), s(c, "conversation_key"));
        let plaintext = s(c, "plaintext");
        let payload =
            nip44::encrypt_with_nonce(&derived, &bytes(c, "nonce"), plaintext.as_bytes()).unwrap();
        assert_eq!(payload, s(c, "payload"), "{c}");
        // The other side opens it the way the signer opens a request.
        let (_, opened) = Conversation::open(&sk2, &pk1, &payload).unwrap();
        assert_eq!(opened.as_str(), plaintext);
        assert_eq!(
            nip44::decrypt(&key(c), s(c, "payload")).unwrap().as_slice(),
            plaintext.as_bytes()
        );
    }
}

#[test]
fn long_messages() {
    let v = v2();
    for c in cases(&v, &["valid", "encrypt_decrypt_long_msg"]) {
        let plaintext = s(c, "pattern").repeat(usize_of(&c["repeat"]));
        assert_eq!(
            hex::encode(Sha256::digest(plaintext.as_bytes())),
            s(c, "plaintext_sha256")
        );
        let payload =
            nip44::encrypt_with_nonce(&key(c), &bytes(c, "nonce"), plaintext.as_bytes()).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(payload.as_bytes())),
            s(c, "payload_sha256"),
            "{} bytes",
            plaintext.len()
        );
        let conversation = Conversation::Nip44(key(c));
        assert_eq!(conversation.decrypt(&payload).unwrap().as_str(), plaintext);
    }
}

#[test]
fn plaintexts_of_invalid_length_are_refused() {
    let v = v2();
    let conversation = Conversation::Nip44(ConversationKey::from_bytes([7; 32]));
    for len in cases(&v, &["invalid", "encrypt_msg_lengths"]) {
        let len = usize_of(len);
        let plaintext = "a".repeat(len);
        assert_eq!(
            nip44::encrypt(&ConversationKey::from_bytes([7; 32]), plaintext.as_bytes()),
            Err(Nip44Error::PlaintextLength(len))
        );
        assert!(conversation.encrypt(&plaintext).is_err(), "length {len}");
    }
}

/// Each invalid payload is refused, and for the reason its note gives.
#[test]
fn invalid_payloads_are_refused_for_their_reason() {
    let v = v2();
    for c in cases(&v, &["invalid", "decrypt"]) {
        let note = s(c, "note");
        let error = nip44::decrypt(&key(c), s(c, "payload")).unwrap_err();
        let expected = match note {
            "unknown encryption version" => matches!(
                error,
                Nip44Error::UnsupportedEncoding | Nip44Error::UnknownVersion(_)
            ),
            "invalid base64" => error == Nip44Error::Base64,
            "invalid MAC" => error == Nip44Error::Mac,
            "invalid padding" => error == Nip44Error::Padding,
            _ => match (
                note.strip_prefix("unknown encryption version "),
                note.strip_prefix("invalid payload length: "),
            ) {
                (Some(version), _) => error == Nip44Error::UnknownVersion(version.parse().unwrap()),
                (_, Some(_)) => matches!(error, Nip44Error::PayloadLength(_)),
                _ => panic!("a note this test does not know: {note}"),
            },
        };
        assert!(expected, "{note}: refused with {error:?}");
        assert!(Conversation::Nip44(key(c))
            .decrypt(s(c, "payload"))
            .is_err());
    }
}
