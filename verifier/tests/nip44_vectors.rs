//! NIP-44 v2 test vectors (paulmillr/nip44's `nip44.vectors.json`, as
//! shipped in rust-nostr's `nostr` crate) run through the code path the
//! signer uses for every request and reply: `rpc::cipher::Conversation`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use base64::Engine;
use nostr::nips::nip44::v2::ConversationKey;
use nostr::secp256k1::rand::{CryptoRng, RngCore};
use nostr::{PublicKey, SecretKey};
use serde_json::Value;
use sha2::{Digest, Sha256};
use verifier::rpc::cipher::{nip44_decrypt, Conversation};

const VECTORS: &str = include_str!("data/nip44.vectors.json");
/// The committed file, so a changed copy is noticed.
const VECTORS_SHA256: &str = "3e17011c8ffd78e7e3d2d9ddb279bd3c75681a5da29271e8e1c85defe56bee59";

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
    at.as_array().unwrap_or_else(|| panic!("{path:?}"))
}

/// Hands out a fixed nonce, as the vectors require.
struct FixedNonce([u8; 32]);

impl RngCore for FixedNonce {
    fn next_u32(&mut self) -> u32 {
        unimplemented!()
    }
    fn next_u64(&mut self) -> u64 {
        unimplemented!()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.copy_from_slice(&self.0[..dest.len()]);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), nostr::secp256k1::rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for FixedNonce {}

fn nonce(v: &Value) -> FixedNonce {
    FixedNonce(hex::decode(s(v, "nonce")).unwrap().try_into().unwrap())
}

fn key(v: &Value) -> ConversationKey {
    ConversationKey::from_slice(&hex::decode(s(v, "conversation_key")).unwrap()).unwrap()
}

fn payload_of(v: &Value) -> &str {
    v.get("payload")
        .or_else(|| v.get("ciphertext"))
        .and_then(Value::as_str)
        .unwrap()
}

#[test]
fn the_vectors_file_is_the_committed_one() {
    assert_eq!(
        hex::encode(Sha256::digest(VECTORS.as_bytes())),
        VECTORS_SHA256
    );
}

#[test]
fn conversation_keys() {
    let v = v2();
    let list = cases(&v, &["valid", "get_conversation_key"]);
    assert!(!list.is_empty());
    for c in list {
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
            (Ok(sk), Ok(pk)) => Conversation::nip44(&sk, &pk).is_err(),
            _ => true,
        };
        assert!(refused, "{c}");
    }
}

#[test]
fn encrypt_and_decrypt_byte_for_byte() {
    let v = v2();
    let list = cases(&v, &["valid", "encrypt_decrypt"]);
    assert!(!list.is_empty());
    for c in list {
        let sk1 = SecretKey::from_hex(s(c, "sec1")).unwrap();
        let sk2 = SecretKey::from_hex(s(c, "sec2")).unwrap();
        let pk2 = nostr::Keys::new(sk2.clone()).public_key();
        let pk1 = nostr::Keys::new(sk1.clone()).public_key();
        let ours = Conversation::nip44(&sk1, &pk2).unwrap();
        let payload = ours
            .encrypt_with_rng(&mut nonce(c), s(c, "plaintext"))
            .unwrap();
        assert_eq!(payload, payload_of(c), "{c}");
        // The other side opens it the way the signer opens requests.
        let (_, plaintext) = Conversation::open(&sk2, &pk1, &payload).unwrap();
        assert_eq!(plaintext.as_str(), s(c, "plaintext"));
        assert_eq!(
            nip44_decrypt(&key(c), &payload).unwrap(),
            s(c, "plaintext").as_bytes()
        );
    }
}

#[test]
fn long_messages() {
    let v = v2();
    for c in cases(&v, &["valid", "encrypt_decrypt_long_msg"]) {
        let unit = c
            .get("pattern")
            .or_else(|| c.get("letter"))
            .and_then(Value::as_str)
            .unwrap();
        let plaintext = unit.repeat(usize::try_from(c["repeat"].as_u64().unwrap()).unwrap());
        let conversation = Conversation::Nip44(key(c));
        if let Some(sum) = c.get("plaintext_sha256").and_then(Value::as_str) {
            assert_eq!(hex::encode(Sha256::digest(plaintext.as_bytes())), sum);
        }
        match c.get("payload_sha256").and_then(Value::as_str) {
            Some(sum) => {
                let payload = conversation
                    .encrypt_with_rng(&mut nonce(c), &plaintext)
                    .unwrap();
                assert_eq!(hex::encode(Sha256::digest(payload.as_bytes())), sum);
                assert_eq!(
                    nip44_decrypt(&key(c), &payload).unwrap(),
                    plaintext.as_bytes()
                );
            }
            // This copy lists a message longer than NIP-44's 65535-byte
            // limit with no checksum: it must be refused.
            None => {
                assert!(plaintext.len() > 65535);
                assert!(conversation
                    .encrypt_with_rng(&mut nonce(c), &plaintext)
                    .is_err());
            }
        }
    }
}

#[test]
fn invalid_lengths_and_payloads_are_refused() {
    let v = v2();
    let conversation = Conversation::Nip44(ConversationKey::new([7; 32]));
    for len in cases(&v, &["invalid", "encrypt_msg_lengths"]) {
        let len = usize::try_from(len.as_u64().unwrap()).unwrap();
        assert!(
            conversation.encrypt(&"a".repeat(len)).is_err(),
            "length {len}"
        );
    }
    let list = cases(&v, &["invalid", "decrypt"]);
    assert!(!list.is_empty());
    for c in list {
        assert!(
            nip44_decrypt(&key(c), payload_of(c)).is_err(),
            "{}",
            s(c, "note")
        );
        assert!(Conversation::Nip44(key(c)).decrypt(payload_of(c)).is_err());
    }
    for len in cases(&v, &["invalid", "decrypt_msg_lengths"]) {
        let len = usize::try_from(len.as_u64().unwrap()).unwrap();
        // Version 2 and then zeros, so only the length can be what is refused.
        let mut payload =
            base64::engine::general_purpose::STANDARD.encode(vec![2u8; len.div_ceil(4) * 3]);
        payload.truncate(len);
        let refused = conversation.decrypt(&payload);
        assert!(refused.is_err(), "length {len}");
        if len >= 4 {
            let e = refused.unwrap_err().to_string();
            assert!(
                !e.contains("version"),
                "length {len} was refused for its version: {e}"
            );
        }
    }
}

#[test]
fn padding_lengths_show_in_the_payload() {
    let v = v2();
    let list = cases(&v, &["valid", "calc_padded_len"]);
    assert!(!list.is_empty());
    let conversation = Conversation::Nip44(ConversationKey::new([5; 32]));
    for pair in list {
        let (len, padded) = (
            pair[0].as_u64().unwrap() as usize,
            pair[1].as_u64().unwrap() as usize,
        );
        if len > 65535 {
            continue; // beyond what NIP-44 v2 encrypts
        }
        let payload = conversation.encrypt(&"a".repeat(len)).unwrap();
        // version, nonce, 2-byte length prefix, padded plaintext, MAC; base64.
        let raw = 1 + 32 + 2 + padded + 32;
        assert_eq!(payload.len(), raw.div_ceil(3) * 4, "{len} pads to {padded}");
    }
}
