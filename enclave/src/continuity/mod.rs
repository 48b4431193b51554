//! Key continuity, the enclave's own side: asking custodians to seal,
//! claim, commit and renew its state (`DESIGN.md`). The rules are the
//! verifier library's ([`verifier::custodian`]); the custodian's side of
//! the same messages is [`crate::signer::custody`].

pub mod client;
pub mod commit;
pub mod lease;
pub mod persist;
pub mod restore;
pub mod startup;
pub mod transport;
