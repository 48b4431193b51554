//! The messages users and apps exchange with an enclave, kept here so the
//! enclave (server) and `verifier key` (client) always agree:
//!
//! - [`message`]: the JSON request/response envelope, shared by the admin
//!   API (kind 24135) and NIP-46 (kind 24133), with its size caps;
//! - [`cipher`]: the encryption of that envelope in an event's content
//!   (NIP-44 v2, and NIP-04 for old clients), answered in the scheme used;
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
pub mod relays;

pub use message::{Params, Request, Response};
