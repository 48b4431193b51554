//! The encryption of requests and responses in an event's content: NIP-44
//! v2, or NIP-04 for clients that still use it (its content ends in
//! `?iv=…`). A response is sealed in the scheme of its request, with the
//! conversation key derived once for both.

use std::fmt;

use nostr::nips::nip04;
use nostr::{PublicKey, SecretKey};
use zeroize::Zeroizing;

use super::message::MAX_REQUEST_JSON;
use super::nip44::{self, ConversationKey};

/// How a content is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// NIP-44 v2 (base64 of version 2, nonce, ciphertext, MAC).
    Nip44,
    /// NIP-04 (`<base64>?iv=<base64>`), deprecated but still sent by some clients.
    Nip04,
}

impl Scheme {
    /// The scheme `content` is in, from its shape.
    pub fn of(content: &str) -> Self {
        if content.contains("?iv=") {
            Self::Nip04
        } else {
            Self::Nip44
        }
    }
}

/// Why a content could not be decrypted or encrypted. Carries no plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipherError(String);

impl fmt::Display for CipherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CipherError {}

impl CipherError {
    /// An error saying `why`.
    pub fn new(why: impl Into<String>) -> Self {
        Self(why.into())
    }
}

fn fail(what: &str, e: impl fmt::Display) -> CipherError {
    CipherError(format!("{what}: {e}"))
}

/// One side of an encrypted conversation with `peer`.
pub enum Conversation<'a> {
    /// NIP-44 v2, with its conversation key.
    Nip44(ConversationKey),
    /// NIP-04.
    Nip04 {
        /// Our secret key.
        secret: &'a SecretKey,
        /// The other side.
        peer: PublicKey,
    },
}

impl fmt::Debug for Conversation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Conversation({:?})", self.scheme())
    }
}

impl<'a> Conversation<'a> {
    /// A NIP-44 conversation between `secret` and `peer`.
    pub fn nip44(secret: &SecretKey, peer: &PublicKey) -> Result<Self, CipherError> {
        ConversationKey::derive(secret, peer)
            .map(Self::Nip44)
            .map_err(|e| fail("NIP-44 conversation key", e))
    }

    /// A conversation in `scheme`.
    pub fn new(
        scheme: Scheme,
        secret: &'a SecretKey,
        peer: &PublicKey,
    ) -> Result<Self, CipherError> {
        match scheme {
            Scheme::Nip44 => Self::nip44(secret, peer),
            Scheme::Nip04 => Ok(Self::Nip04 {
                secret,
                peer: *peer,
            }),
        }
    }

    /// Decrypts `content` sent by `peer` to `secret`, in whichever scheme
    /// it uses, and returns the conversation to answer in.
    pub fn open(
        secret: &'a SecretKey,
        peer: &PublicKey,
        content: &str,
    ) -> Result<(Self, Zeroizing<String>), CipherError> {
        let conversation = Self::new(Scheme::of(content), secret, peer)?;
        let plaintext = conversation.decrypt(content)?;
        Ok((conversation, plaintext))
    }

    /// The scheme of this conversation.
    pub fn scheme(&self) -> Scheme {
        match self {
            Self::Nip44(_) => Scheme::Nip44,
            Self::Nip04 { .. } => Scheme::Nip04,
        }
    }

    /// Decrypts a content from the peer. Bounded: a content that would
    /// decrypt to more than the largest request is refused first.
    pub fn decrypt(&self, content: &str) -> Result<Zeroizing<String>, CipherError> {
        // base64 is 4/3 of the bytes, plus version, nonce, MAC and padding.
        if content.len() > (MAX_REQUEST_JSON + 1024) * 4 / 3 + 256 {
            return Err(CipherError(format!("content of {} bytes", content.len())));
        }
        let bytes = match self {
            Self::Nip44(key) => nip44::decrypt(key, content).map_err(|e| fail("NIP-44", e))?,
            Self::Nip04 { secret, peer } => Zeroizing::new(
                nip04::decrypt_to_bytes(secret, peer, content).map_err(|e| fail("NIP-04", e))?,
            ),
        };
        String::from_utf8(bytes.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| CipherError("the plaintext is not UTF-8".into()))
    }

    /// Encrypts `plaintext` for the peer.
    pub fn encrypt(&self, plaintext: &str) -> Result<String, CipherError> {
        match self {
            Self::Nip44(key) => {
                nip44::encrypt(key, plaintext.as_bytes()).map_err(|e| fail("NIP-44", e))
            }
            Self::Nip04 { secret, peer } => {
                nip04::encrypt(secret, peer, plaintext).map_err(|e| fail("NIP-04", e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::Keys;

    #[test]
    fn answers_in_the_scheme_of_the_request() {
        let (a, b) = (Keys::generate(), Keys::generate());
        for content in [
            Conversation::nip44(a.secret_key(), &b.public_key())
                .unwrap()
                .encrypt("hello")
                .unwrap(),
            nip04::encrypt(a.secret_key(), &b.public_key(), "hello").unwrap(),
        ] {
            let (conversation, plaintext) =
                Conversation::open(b.secret_key(), &a.public_key(), &content).unwrap();
            assert_eq!(plaintext.as_str(), "hello");
            assert_eq!(conversation.scheme(), Scheme::of(&content));
            let reply = conversation.encrypt("back").unwrap();
            let (_, back) = Conversation::open(a.secret_key(), &b.public_key(), &reply).unwrap();
            assert_eq!(back.as_str(), "back");
        }
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let (a, b) = (Keys::generate(), Keys::generate());
        let other = Keys::generate();
        let content = Conversation::nip44(a.secret_key(), &b.public_key())
            .unwrap()
            .encrypt("hello")
            .unwrap();
        assert!(Conversation::open(other.secret_key(), &a.public_key(), &content).is_err());
        assert!(Conversation::open(b.secret_key(), &a.public_key(), "#abc").is_err());
        assert!(Conversation::open(b.secret_key(), &a.public_key(), "").is_err());
        let huge = "A".repeat(1 << 20);
        assert!(Conversation::open(b.secret_key(), &a.public_key(), &huge).is_err());
    }
}
