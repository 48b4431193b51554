//! The messages users and apps exchange with an enclave, kept here so the
//! enclave (server) and `verifier key` (client) always agree:
//!
//! - [`message`]: the JSON request/response envelope, shared by the admin
//!   API (kind 24135) and NIP-46 (kind 24133), with its size caps;
//! - [`cipher`]: the encryption of that envelope in an event's content
//!   (NIP-44 v2, and NIP-04 for old clients), answered in the scheme used;
//! - [`nip44`]: NIP-44 v2 itself, for that envelope and for the
//!   `nip44_encrypt`/`nip44_decrypt` calls the signer serves;
//! - [`admin`]: the admin API's methods and their parameters;
//! - [`admission`]: the proof of work an enclave may ask for before it
//!   spends a shared resource (a key slot, a relay) on a stranger, and
//!   [`pow`], which mines it on every core;
//! - [`isolation`]: the rule that the enclave's own protocol keys are never
//!   a peer in an app's request;
//! - [`relays`]: what a relay URL a user hands over must look like;
//! - [`bunker`]: bunker URLs (`bunker://<signer>?relay=…&secret=…`);
//! - [`nostrconnect`]: `nostrconnect://` URIs, the connections apps start;
//! - [`status`]: what `key_status` says of a key, and when it would go.
//!
//! ```text
//! request   {"id":"…","method":"import_key","params":["<hex>","wss://…"]}
//! response  {"id":"…","result":"ok"}
//!        or {"id":"…","result":"","error":"<message>"}
//! ```

pub mod admin;
pub mod admission;
pub mod bunker;
pub mod cipher;
pub mod isolation;
pub mod message;
pub mod nip44;
pub mod nostrconnect;
pub mod pow;
pub mod relays;
pub mod status;

pub use message::{Params, Request, Response};

use nostr::{Event, EventBuilder, Keys, Kind, PublicKey, Tag};

use cipher::{CipherError, Conversation, Scheme};

/// A request event of `kind` from `keys` to `to`, its content `request`
/// sealed in `scheme`.
pub fn seal_request(
    keys: &Keys,
    to: &PublicKey,
    kind: u16,
    request: &Request,
    scheme: Scheme,
) -> Result<Event, CipherError> {
    seal_request_with_pow(keys, to, kind, request, scheme, 0)
}

/// Like [`seal_request`], with `pow` bits of NIP-13 proof of work on the
/// event id (see [`admission`]).
pub fn seal_request_with_pow(
    keys: &Keys,
    to: &PublicKey,
    kind: u16,
    request: &Request,
    scheme: Scheme,
    pow: u8,
) -> Result<Event, CipherError> {
    let conversation = Conversation::new(scheme, keys.secret_key(), to)?;
    let content = conversation.encrypt(&request.to_json())?;
    let failed =
        |e: &dyn std::fmt::Display| CipherError::new(format!("cannot sign the request: {e}"));
    if pow == 0 {
        return EventBuilder::new(Kind::from(kind), content)
            .tag(Tag::public_key(*to))
            .sign_with_keys(keys)
            .map_err(|e| failed(&e));
    }
    let tags = vec![Tag::public_key(*to)];
    pow::mine(keys.public_key(), Kind::from(kind), tags, &content, pow, 0)
        .sign_with_keys(keys)
        .map_err(|e| failed(&e))
}

/// The response in `event`, sent to `keys`: its signature checked, its
/// content decrypted and parsed.
pub fn open_response(keys: &Keys, event: &Event) -> Result<Response, String> {
    event
        .verify()
        .map_err(|e| format!("the reply's signature does not verify: {e}"))?;
    let (_, plaintext) = Conversation::open(keys.secret_key(), &event.pubkey, &event.content)
        .map_err(|e| format!("cannot decrypt the reply: {e}"))?;
    Response::parse(&plaintext)
}
