//! # parent
//!
//! The untrusted process on the EC2 host. It hands the enclave the builder's
//! and launcher's signature events (the metadata server) and proxies its
//! TCP traffic to relays (SOCKS5, with an egress policy). It is untrusted: the enclave
//! re-checks everything it is given, so a lying parent can only stop it.
//! Still, the parent checks what it serves with the `verifier` library, so
//! an operator learns of a wrong `build.json` or `instance.json` at once.

#![forbid(unsafe_code)]

pub mod dev_stack;
pub mod egress;
pub mod imds;
pub mod metadata;
pub mod outbox;
pub mod runtime;
pub mod sign;
pub mod signature_files;
pub mod signing;
pub mod socks;
pub mod state_store;
pub mod transport;

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
