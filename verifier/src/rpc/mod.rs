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
//! - [`relays`]: what a relay URL a user hands over must look like;
//! - [`bunker`]: bunker URLs (`bunker://<signer>?relay=…&secret=…`).
//!
//! ```text
//! request   {"id":"…","method":"import_key","params":["<hex>","wss://…"]}
//! response  {"id":"…","result":"ok"}
//!        or {"id":"…","result":"","error":"<message>"}
//! ```

pub mod admin;
pub mod bunker;
pub mod cipher;
pub mod message;
pub mod nip44;
pub mod relays;

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
    let conversation = Conversation::new(scheme, keys.secret_key(), to)?;
    let content = conversation.encrypt(&request.to_json())?;
    EventBuilder::new(Kind::from(kind), content)
        .tag(Tag::public_key(*to))
        .sign_with_keys(keys)
        .map_err(|e| CipherError::new(format!("cannot sign the request: {e}")))
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
