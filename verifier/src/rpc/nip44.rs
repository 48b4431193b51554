//! NIP-44 v2: versioned encryption
//! (<https://github.com/nostr-protocol/nips/blob/master/44.md>), the one
//! implementation every request, reply and `nip44_*` call goes through.
//!
//! ```text
//! payload = base64( 0x02 ‖ nonce[32] ‖ ciphertext ‖ mac[32] )
//! ciphertext = ChaCha20(chacha_key, chacha_nonce, len_be16 ‖ plaintext ‖ zeros)
//! mac = HMAC-SHA256(hmac_key, nonce ‖ ciphertext)
//! chacha_key ‖ chacha_nonce ‖ hmac_key = HKDF-Expand(conversation_key, nonce, 76)
//! conversation_key = HKDF-Extract(salt "nip44-v2", ECDH x-coordinate)
//! ```
//!
//! The ECDH is the `nostr` crate's; the rest is composed here from
//! RustCrypto's ChaCha20, HMAC and HKDF, because nostr 0.44's own NIP-44
//! refuses to encrypt plaintexts of 65,409 to 65,535 bytes, which the NIP
//! allows and the official test vectors use, and compares MACs with `!=`.
//! Here the MAC check is constant-time, sizes are checked before base64 is
//! decoded, and every buffer that held a key or a plaintext is wiped.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use nostr::{PublicKey, SecretKey};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// The version byte this module reads and writes.
pub const VERSION: u8 = 2;
/// The shortest plaintext NIP-44 v2 encrypts, in bytes.
pub const MIN_PLAINTEXT: usize = 1;
/// The longest plaintext NIP-44 v2 encrypts, in bytes.
pub const MAX_PLAINTEXT: usize = 65_535;

const NONCE_LEN: usize = 32;
const MAC_LEN: usize = 32;
const PREFIX_LEN: usize = 2;
const MIN_PAYLOAD: usize = 1 + NONCE_LEN + PREFIX_LEN + 32 + MAC_LEN;
const MAX_PAYLOAD: usize = 1 + NONCE_LEN + PREFIX_LEN + 65_536 + MAC_LEN;
/// The shortest base64 payload (a 1-byte plaintext), in characters.
pub const MIN_ENCODED: usize = MIN_PAYLOAD.div_ceil(3) * 4;
/// The longest base64 payload (a 65,535-byte plaintext), in characters.
pub const MAX_ENCODED: usize = MAX_PAYLOAD.div_ceil(3) * 4;

type HmacSha256 = Hmac<Sha256>;

/// Why a payload could not be made or read. Carries no key or plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nip44Error {
    /// The secret key or public key cannot make a conversation key.
    Key,
    /// The payload starts with `#`: an encoding newer than this code.
    UnsupportedEncoding,
    /// The payload (base64, or decoded) is shorter or longer than any v2 payload.
    PayloadLength(usize),
    /// The payload is not base64.
    Base64,
    /// The payload's version byte is not 2.
    UnknownVersion(u8),
    /// The MAC does not match: wrong key, or the payload was altered.
    Mac,
    /// The decrypted length prefix or padding is not what v2 writes.
    Padding,
    /// A plaintext outside 1..=65,535 bytes.
    PlaintextLength(usize),
}

impl fmt::Display for Nip44Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key => f.write_str("no conversation key for these keys"),
            Self::UnsupportedEncoding => f.write_str("unsupported encoding ('#' prefix)"),
            Self::PayloadLength(n) => write!(f, "invalid payload length {n}"),
            Self::Base64 => f.write_str("the payload is not base64"),
            Self::UnknownVersion(v) => write!(f, "unknown version {v}"),
            Self::Mac => f.write_str("invalid MAC"),
            Self::Padding => f.write_str("invalid padding"),
            Self::PlaintextLength(n) => write!(
                f,
                "a plaintext of {n} bytes (NIP-44 takes {MIN_PLAINTEXT} to {MAX_PLAINTEXT})"
            ),
        }
    }
}

impl std::error::Error for Nip44Error {}

/// The key two parties share, the same from either side. Wiped on drop.
#[derive(Clone)]
pub struct ConversationKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for ConversationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConversationKey(<redacted>)")
    }
}

impl ConversationKey {
    /// The conversation key of `secret` with `peer`.
    pub fn derive(secret: &SecretKey, peer: &PublicKey) -> Result<Self, Nip44Error> {
        let shared = Zeroizing::new(
            nostr::util::generate_shared_key(secret, peer).map_err(|_| Nip44Error::Key)?,
        );
        let (mut prk, _) = Hkdf::<Sha256>::extract(Some(b"nip44-v2"), shared.as_slice());
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&prk);
        (*prk).zeroize();
        Ok(Self(key))
    }

    /// A conversation key given as bytes (test vectors).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The per-message keys a nonce selects. Wiped on drop.
pub struct MessageKeys {
    chacha_key: Zeroizing<[u8; 32]>,
    chacha_nonce: Zeroizing<[u8; 12]>,
    hmac_key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for MessageKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MessageKeys(<redacted>)")
    }
}

impl MessageKeys {
    /// The keys of the message with `nonce` in the conversation `key`.
    pub fn new(key: &ConversationKey, nonce: &[u8; 32]) -> Result<Self, Nip44Error> {
        let mut okm = Zeroizing::new([0u8; 76]);
        // A 32-byte PRK is a valid PRK for SHA-256, and 76 bytes are far
        // below HKDF's limit of 255 blocks: neither call fails in practice,
        // and if one did, no message would be made with unset keys.
        Hkdf::<Sha256>::from_prk(key.as_bytes())
            .map_err(|_| Nip44Error::Key)?
            .expand(nonce, okm.as_mut_slice())
            .map_err(|_| Nip44Error::Key)?;
        let (chacha_key, rest) = okm.split_at(32);
        let (chacha_nonce, hmac_key) = rest.split_at(12);
        let mut keys = Self {
            chacha_key: Zeroizing::new([0; 32]),
            chacha_nonce: Zeroizing::new([0; 12]),
            hmac_key: Zeroizing::new([0; 32]),
        };
        keys.chacha_key.copy_from_slice(chacha_key);
        keys.chacha_nonce.copy_from_slice(chacha_nonce);
        keys.hmac_key.copy_from_slice(hmac_key);
        Ok(keys)
    }

    /// The ChaCha20 key.
    pub fn chacha_key(&self) -> &[u8; 32] {
        &self.chacha_key
    }

    /// The ChaCha20 (IETF, 12-byte) nonce.
    pub fn chacha_nonce(&self) -> &[u8; 12] {
        &self.chacha_nonce
    }

    /// The HMAC-SHA256 key.
    pub fn hmac_key(&self) -> &[u8; 32] {
        &self.hmac_key
    }

    fn apply_keystream(&self, buffer: &mut [u8]) {
        ChaCha20::new(
            self.chacha_key.as_ref().into(),
            self.chacha_nonce.as_ref().into(),
        )
        .apply_keystream(buffer);
    }

    fn mac(&self, nonce: &[u8], ciphertext: &[u8]) -> Result<HmacSha256, Nip44Error> {
        // HMAC takes a key of any length, so this does not fail in practice.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(self.hmac_key.as_slice())
            .map_err(|_| Nip44Error::Key)?;
        mac.update(nonce);
        mac.update(ciphertext);
        Ok(mac)
    }
}

/// The length a plaintext of `len` bytes is padded to (without the 2-byte
/// length prefix): 32 at least, then chunks of 32 up to 256 bytes and of
/// an eighth of the next power of two above that. Saturates instead of
/// overflowing for lengths far beyond what NIP-44 encrypts.
pub fn calc_padded_len(len: usize) -> usize {
    if len <= 32 {
        return 32;
    }
    let Some(next_power) = 1usize.checked_shl(usize::BITS - (len - 1).leading_zeros()) else {
        return usize::MAX;
    };
    let chunk = if next_power <= 256 {
        32
    } else {
        next_power / 8
    };
    chunk.saturating_mul((len - 1) / chunk + 1)
}

/// Encrypts `plaintext` with a nonce from the OS's random source.
pub fn encrypt(key: &ConversationKey, plaintext: &[u8]) -> Result<String, Nip44Error> {
    let mut nonce = Zeroizing::new([0u8; NONCE_LEN]);
    nostr::secp256k1::rand::RngCore::fill_bytes(
        &mut nostr::secp256k1::rand::rngs::OsRng,
        nonce.as_mut_slice(),
    );
    encrypt_with_nonce(key, &nonce, plaintext)
}

/// Encrypts `plaintext` with `nonce`, which must never repeat for this
/// key: for test vectors, which fix it. Use [`encrypt`].
pub fn encrypt_with_nonce(
    key: &ConversationKey,
    nonce: &[u8; 32],
    plaintext: &[u8],
) -> Result<String, Nip44Error> {
    let len = plaintext.len();
    let prefix = match u16::try_from(len) {
        Ok(n) if len >= MIN_PLAINTEXT => n.to_be_bytes(),
        _ => return Err(Nip44Error::PlaintextLength(len)),
    };
    let keys = MessageKeys::new(key, nonce)?;
    let padded_len = PREFIX_LEN + calc_padded_len(len);
    // One buffer, never reallocated: the plaintext is encrypted in place
    // and leaves no copy behind.
    let mut payload = Vec::with_capacity(1 + NONCE_LEN + padded_len + MAC_LEN);
    payload.push(VERSION);
    payload.extend_from_slice(nonce);
    payload.extend_from_slice(&prefix);
    payload.extend_from_slice(plaintext);
    payload.resize(1 + NONCE_LEN + padded_len, 0);
    let (_, ciphertext) = payload.split_at_mut(1 + NONCE_LEN);
    keys.apply_keystream(ciphertext);
    let tag = keys.mac(nonce, ciphertext)?.finalize();
    payload.extend_from_slice(&tag.into_bytes());
    Ok(STANDARD.encode(&payload))
}

/// Decrypts `payload`, refusing any payload that is not v2, not the size
/// of a v2 payload, altered, or padded in a way v2 does not pad.
pub fn decrypt(key: &ConversationKey, payload: &str) -> Result<Zeroizing<Vec<u8>>, Nip44Error> {
    if payload.starts_with('#') {
        return Err(Nip44Error::UnsupportedEncoding);
    }
    if !(MIN_ENCODED..=MAX_ENCODED).contains(&payload.len()) {
        return Err(Nip44Error::PayloadLength(payload.len()));
    }
    let data = STANDARD.decode(payload).map_err(|_| Nip44Error::Base64)?;
    if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&data.len()) {
        return Err(Nip44Error::PayloadLength(data.len()));
    }
    let short = Nip44Error::PayloadLength(data.len());
    let (&version, rest) = data.split_first().ok_or(short)?;
    if version != VERSION {
        return Err(Nip44Error::UnknownVersion(version));
    }
    let (nonce, rest) = rest.split_at_checked(NONCE_LEN).ok_or(short)?;
    let mac_at = rest.len().checked_sub(MAC_LEN).ok_or(short)?;
    let (ciphertext, tag) = rest.split_at_checked(mac_at).ok_or(short)?;
    let nonce: &[u8; 32] = nonce.try_into().map_err(|_| short)?;
    let keys = MessageKeys::new(key, nonce)?;
    keys.mac(nonce, ciphertext)?
        .verify_slice(tag)
        .map_err(|_| Nip44Error::Mac)?;
    let mut padded = Zeroizing::new(ciphertext.to_vec());
    keys.apply_keystream(&mut padded);
    unpad(&padded)
}

fn unpad(padded: &[u8]) -> Result<Zeroizing<Vec<u8>>, Nip44Error> {
    let (prefix, rest) = padded
        .split_first_chunk::<PREFIX_LEN>()
        .ok_or(Nip44Error::Padding)?;
    let len = usize::from(u16::from_be_bytes(*prefix));
    if len < MIN_PLAINTEXT || rest.len() != calc_padded_len(len) {
        return Err(Nip44Error::Padding);
    }
    let plaintext = rest.get(..len).ok_or(Nip44Error::Padding)?;
    Ok(Zeroizing::new(plaintext.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::Keys;

    #[test]
    fn both_sides_share_a_key_and_read_each_other() {
        let (a, b) = (Keys::generate(), Keys::generate());
        let ab = ConversationKey::derive(a.secret_key(), &b.public_key()).unwrap();
        let ba = ConversationKey::derive(b.secret_key(), &a.public_key()).unwrap();
        assert_eq!(ab.as_bytes(), ba.as_bytes());
        for len in [1, 32, 33, 65_408, 65_409, MAX_PLAINTEXT] {
            let text = vec![b'x'; len];
            let payload = encrypt(&ab, &text).unwrap();
            assert!((MIN_ENCODED..=MAX_ENCODED).contains(&payload.len()));
            assert_eq!(decrypt(&ba, &payload).unwrap().as_slice(), text.as_slice());
        }
    }

    #[test]
    fn reads_and_is_read_by_rust_nostr() {
        use nostr::nips::nip44 as theirs;
        let (a, b) = (Keys::generate(), Keys::generate());
        let ours = ConversationKey::derive(a.secret_key(), &b.public_key()).unwrap();
        // rust-nostr stops at 65,408 bytes.
        for len in [1, 31, 32, 33, 255, 256, 257, 1000, 40_000, 65_408] {
            let text = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let mine = encrypt(&ours, text.as_bytes()).unwrap();
            let read = theirs::decrypt(b.secret_key(), &a.public_key(), &mine).unwrap();
            assert_eq!(read, text, "{len}");
            let sent = theirs::encrypt(b.secret_key(), &a.public_key(), &text, theirs::Version::V2)
                .unwrap();
            assert_eq!(decrypt(&ours, &sent).unwrap().as_slice(), text.as_bytes());
        }
    }

    #[test]
    fn refuses_lengths_outside_the_nip() {
        let key = ConversationKey::from_bytes([3; 32]);
        for len in [0, MAX_PLAINTEXT + 1] {
            assert_eq!(
                encrypt(&key, &vec![b'x'; len]),
                Err(Nip44Error::PlaintextLength(len))
            );
        }
        assert_eq!(calc_padded_len(usize::MAX), usize::MAX);
        assert_eq!(
            decrypt(&key, &"A".repeat(MAX_ENCODED + 4)),
            Err(Nip44Error::PayloadLength(MAX_ENCODED + 4))
        );
    }

    #[test]
    fn a_changed_byte_fails_the_mac() {
        let key = ConversationKey::from_bytes([9; 32]);
        let payload = encrypt(&key, b"hello").unwrap();
        let mut raw = STANDARD.decode(&payload).unwrap();
        for at in [1, 40, raw.len() - 1] {
            raw[at] ^= 1;
            assert_eq!(
                decrypt(&key, &STANDARD.encode(&raw)),
                Err(Nip44Error::Mac),
                "{at}"
            );
            raw[at] ^= 1;
        }
        let other = ConversationKey::from_bytes([8; 32]);
        assert_eq!(decrypt(&other, &payload), Err(Nip44Error::Mac));
    }

    #[test]
    fn keys_stay_out_of_debug_output() {
        let key = ConversationKey::from_bytes([0xab; 32]);
        let keys = MessageKeys::new(&key, &[1; 32]).unwrap();
        assert_eq!(
            format!("{key:?} {keys:?}"),
            "ConversationKey(<redacted>) MessageKeys(<redacted>)"
        );
    }
}
