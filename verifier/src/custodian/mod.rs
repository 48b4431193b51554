//! Custody of sealed state (`DESIGN.md`, key continuity): custodians are
//! enclaves of this code at other launchers that hold, in RAM, a state's
//! key, its epoch and the version and hash of its newest snapshot, and
//! hand them only to an attested enclave whose code the state's sealed
//! release policy approves.
//!
//! - [`message`]: what enclaves and custodians say to each other (kind
//!   24136, NIP-44 between service keys, in the admin API's style);
//! - [`ledger`]: what a custodian keeps and the rules of every change:
//!   one seal per state, claims that fence older epochs only after the
//!   holder's lease ran out, commits only by the holder of the current
//!   epoch, with a newer version and the current key;
//! - [`quorum`]: what a restoring enclave takes from the custodians'
//!   answers.
//!
//! This module is the protocol's rules; the enclave carries the messages.

pub mod discover;
pub mod ledger;
pub mod message;
pub mod peer;
pub mod quorum;

pub use crate::event::KIND_CUSTODY;
/// How long an enclave serves after its last heartbeat or commit that a
/// quorum acknowledged (ms, on its own monotonic clock).
pub const LEASE_MS: u64 = 30_000;
/// What a custodian adds to the lease before it lets another enclave
/// claim the state: for clock drift and messages in flight (ms).
pub const CLAIM_MARGIN_MS: u64 = 10_000;
/// How often the holder renews its lease (ms): three tries per lease.
pub const HEARTBEAT_MS: u64 = LEASE_MS / 3;
/// Most custodians of one state.
pub const MAX_CUSTODIANS: usize = 9;

/// How many of `n` custodians make a quorum: a strict majority, so that
/// any two quorums share a custodian.
pub fn quorum_of(n: usize) -> usize {
    n / 2 + 1
}
