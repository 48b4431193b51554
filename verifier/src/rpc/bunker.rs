//! Bunker URLs, `bunker://<remote signer pubkey>?relay=<url>&…&secret=<s>`,
//! as NIP-46 apps expect them. In enclaved the remote signer key is the
//! user's own key. Secrets are single-use and random.

use nostr::nips::nip46::NostrConnectURI;
use nostr::{PublicKey, RelayUrl};
use zeroize::Zeroizing;

/// Bytes of randomness in a secret (hex-encoded in the URL).
pub const SECRET_BYTES: usize = 16;

/// The bunker URL of `signer` on `relays`, with `secret` if given.
pub fn bunker_url(
    signer: &PublicKey,
    relays: &[RelayUrl],
    secret: Option<&str>,
) -> Zeroizing<String> {
    Zeroizing::new(
        NostrConnectURI::Bunker {
            remote_signer_public_key: *signer,
            relays: relays.to_vec(),
            secret: secret.map(str::to_owned),
        }
        .to_string(),
    )
}

/// A bunker URL's parts.
#[derive(Clone, PartialEq, Eq)]
pub struct Bunker {
    /// The key the app talks to (here the user's key).
    pub signer: PublicKey,
    /// Where to reach it.
    pub relays: Vec<RelayUrl>,
    /// The single-use connect secret, if any.
    pub secret: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Bunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bunker")
            .field("signer", &self.signer)
            .field("relays", &self.relays)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Parses a `bunker://` URL.
pub fn parse_bunker_url(url: &str) -> Result<Bunker, String> {
    match NostrConnectURI::parse(url) {
        Ok(NostrConnectURI::Bunker {
            remote_signer_public_key,
            relays,
            secret,
        }) => {
            for relay in &relays {
                super::relays::check_normal_form(relay).map_err(|e| format!("relay {e}"))?;
            }
            let bunker = Bunker {
                signer: remote_signer_public_key,
                relays,
                secret: secret.map(Zeroizing::new),
            };
            // What is printed from it must read back the same (fuzzing
            // found secrets with NULs that printed, then read back cut).
            let printed = bunker_url(
                &bunker.signer,
                &bunker.relays,
                bunker.secret.as_deref().map(|s| s.as_str()),
            );
            let same = match NostrConnectURI::parse(printed.as_str()) {
                Ok(NostrConnectURI::Bunker {
                    remote_signer_public_key,
                    relays,
                    secret,
                }) => {
                    let secret = secret.map(Zeroizing::new);
                    remote_signer_public_key == bunker.signer
                        && relays == bunker.relays
                        && secret == bunker.secret
                }
                _ => false,
            };
            if same {
                Ok(bunker)
            } else {
                Err("not a bunker URL that reads back the same once printed (its secret or a relay has characters it cannot carry)".into())
            }
        }
        Ok(NostrConnectURI::Client { .. }) => Err("a nostrconnect:// URL, not a bunker URL".into()),
        Err(e) => Err(format!("not a bunker URL: {e}")),
    }
}

/// A fresh random secret.
pub fn new_secret() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; SECRET_BYTES]);
    nostr::secp256k1::rand::RngCore::fill_bytes(
        &mut nostr::secp256k1::rand::rngs::OsRng,
        bytes.as_mut(),
    );
    Zeroizing::new(hex::encode(bytes.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::Keys;

    #[test]
    fn a_relay_over_the_length_cap_is_refused() {
        // Bunker URLs have no length cap of their own: their relays are
        // held to the one of every other relay list.
        let signer = Keys::generate().public_key();
        let relay = format!("wss://r.example/{}", "a".repeat(600));
        let url = format!("bunker://{}?relay={relay}", signer.to_hex());
        let err = parse_bunker_url(&url).unwrap_err();
        assert!(err.contains("once normalized"), "{err}");
    }

    #[test]
    fn a_url_that_does_not_read_back_the_same_is_refused() {
        // Found by fuzzing: NULs in the secret printed as they are, and the
        // printed URL read back without them.
        let signer = Keys::generate().public_key();
        let url = format!(
            "bunker://{}?relay=wss://r.example&secret=abc\u{0}\u{0}&relay=wss://s.example",
            signer.to_hex()
        );
        assert!(parse_bunker_url(&url).is_err());
        let url = format!(
            "bunker://{}?relay=wss://r.example&secret=abc",
            signer.to_hex()
        );
        assert!(parse_bunker_url(&url).is_ok());
    }

    #[test]
    fn round_trips() {
        let signer = Keys::generate().public_key();
        let relays = vec![RelayUrl::parse("ws://127.0.0.1:7000").unwrap()];
        let secret = new_secret();
        assert_eq!(secret.len(), 2 * SECRET_BYTES);
        let url = bunker_url(&signer, &relays, Some(&secret));
        assert!(url.starts_with(&format!(
            "bunker://{}?relay=ws://127.0.0.1:7000&secret=",
            signer.to_hex()
        )));
        let parsed = parse_bunker_url(&url).unwrap();
        assert_eq!(parsed.signer, signer);
        assert_eq!(parsed.relays, relays);
        assert_eq!(
            parsed.secret.as_deref().map(String::as_str),
            Some(secret.as_str())
        );
        assert!(!format!("{parsed:?}").contains(secret.as_str()));
        assert!(parse_bunker_url("https://x").is_err());
    }
}
