//! # verifier
//!
//! The trust rules of enclaved, in one place. A client runs the `verifier`
//! binary before handing a key to an enclave; the enclave and the parent call
//! this library to check their own inputs, so the three never disagree.
//!
//! - [`pcr`]: PCR math (`pcr_digest`, PCR4 of an EC2 instance, PCR8 of an
//!   image signing certificate) and nitro-cli's `pcrs.json`;
//! - [`attestation`]: AWS Nitro attestation documents (COSE_Sign1, ES384,
//!   certificate path to a pinned root at a given time);
//! - [`event`]: the Nostr event kinds and the formats of the build signature
//!   (63795), instance signature (63796) and instance event (63793);
//! - [`signing_cert`]: the builder's self-signed image signing certificate;
//! - [`protocol`]: messages between the enclave and the parent;
//! - [`release`]: release signatures (63794) and the release policy;
//! - [`state`]: sealed snapshots of an enclave's state (key continuity);
//! - [`custodian`]: who holds a state's key, and the rules of claims and commits;
//! - [`grant`]: what an app connected to a key may do (perms, expiry,
//!   uses, rate limits) and the decision on each request;
//! - [`rpc`]: the admin API and NIP-46 envelope, its encryption, bunker URLs;
//! - [`verify`]: verification of an instance event into a [`verify::Report`]
//!   that names every check;
//! - [`discover`]: the newest valid instance per service key among fetched events.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod attestation;
pub mod cache;
pub mod custodian;
pub mod discover;
pub mod error;
pub mod event;
pub mod grant;
pub mod pcr;
pub mod protocol;
pub mod release;
pub mod rpc;
pub mod signing_cert;
pub mod state;
pub mod verify;

pub use crate::error::Error;
