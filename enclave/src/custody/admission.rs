//! Admission control for the shared resources a stranger can take: key
//! slots, test-key slots, relay slots (each relay is a connection) and the
//! memory of grants and pending bunker secrets.
//!
//! Fresh Nostr keys are free, so a per-requester limit is no limit. Each
//! resource instead has a free allowance per hour for everyone together
//! (and only while it is less than half full); past that, a request that
//! takes more of it must carry NIP-13 proof of work on its event, with a
//! difficulty that grows with how full the resource would be:
//!
//! ```text
//! bits = pow_bits + (max_bits - pow_bits) * used_after / max + ceil(log2(taken))
//! ```
//!
//! and never more than `max_bits` (28 by default, the most a client pays,
//! `verifier::rpc::admission::MAX_POW_BITS`). The last slot costs
//! `max_bits`: that is also the price a newcomer pays to take the slot of
//! a key that serves no one when the enclave is full
//! (`super::lifecycle`).
//!
//! With the defaults (16 bits to 28), the first slots past the allowance
//! cost about 65 thousand hashes (milliseconds in Rust, a second in a
//! browser) and the last ones about 270 million (a minute or two of one
//! core), so filling a resource costs an attacker real work that grows as
//! it fills, while a legitimate import still gets in by paying the current
//! price. The wire format of the request is in `verifier::rpc::admission`.

use std::collections::VecDeque;

use verifier::rpc::admission::{pow_required_error, MAX_POW_BITS};

/// A shared resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Imported key slots.
    Keys,
    /// Test-key slots.
    TestKeys,
    /// Distinct relays.
    Relays,
    /// Memory of grants and pending bunker secrets, in KiB.
    Grants,
}

impl Resource {
    fn name(self) -> &'static str {
        match self {
            Self::Keys => "new keys",
            Self::TestKeys => "new test keys",
            Self::Relays => "new relays",
            Self::Grants => "new grants (KiB)",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Keys => 0,
            Self::TestKeys => 1,
            Self::Relays => 2,
            Self::Grants => 3,
        }
    }
}

/// The free allowances and the proof of work asked past them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// New keys per hour, all requesters together, without proof of work.
    pub free_keys_per_hour: usize,
    /// New test keys per hour without proof of work.
    pub free_test_keys_per_hour: usize,
    /// New distinct relays per hour without proof of work.
    pub free_relays_per_hour: usize,
    /// KiB of new grants and bunker secrets per hour without proof of work.
    pub free_grant_kib_per_hour: usize,
    /// The difficulty asked of the first request past an allowance; 0
    /// turns admission control off (a private enclave, or a test).
    pub pow_bits: u8,
    /// The difficulty asked of the last slot of a resource (at most
    /// [`MAX_POW_BITS`], and at least `pow_bits`).
    pub max_bits: u8,
}

impl AdmissionLimits {
    /// No allowances and no proof of work: only the hard limits apply.
    pub fn off() -> Self {
        Self {
            pow_bits: 0,
            ..Self::default()
        }
    }
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        Self {
            free_keys_per_hour: 60,
            free_test_keys_per_hour: 10,
            free_relays_per_hour: 8,
            free_grant_kib_per_hour: 4096,
            pow_bits: 16,
            max_bits: MAX_POW_BITS,
        }
    }
}

/// A request that must carry more proof of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowRequired {
    /// The difficulty asked for.
    pub bits: u8,
    /// Why, for the error reply.
    pub why: String,
}

impl std::fmt::Display for PowRequired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&pow_required_error(self.bits, &self.why))
    }
}

/// Recent allocations of each resource.
#[derive(Debug, Default)]
pub struct Admission {
    limits: AdmissionLimits,
    /// The times of the latest allocations, at most the allowance of each.
    recent: [VecDeque<u64>; 4],
}

const HOUR: u64 = 3600;

impl Admission {
    /// An admission controller with `limits`.
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            limits,
            recent: Default::default(),
        }
    }

    fn allowance(&self, resource: Resource) -> usize {
        match resource {
            Resource::Keys => self.limits.free_keys_per_hour,
            Resource::TestKeys => self.limits.free_test_keys_per_hour,
            Resource::Relays => self.limits.free_relays_per_hour,
            Resource::Grants => self.limits.free_grant_kib_per_hour,
        }
    }

    /// How many free allocations of `resource` are left this hour.
    fn free_left(&self, resource: Resource, now: u64) -> usize {
        let in_hour = self
            .recent
            .get(resource.index())
            .map(|times| times.iter().filter(|t| **t + HOUR > now).count())
            .unwrap_or(0);
        self.allowance(resource).saturating_sub(in_hour)
    }

    /// The proof of work needed to take `taken` more of `resource`, of
    /// which `used` of `max` are in use; 0 if it is free.
    pub fn required_bits(
        &self,
        resource: Resource,
        taken: usize,
        used: usize,
        max: usize,
        now: u64,
    ) -> u8 {
        if taken == 0 || self.limits.pow_bits == 0 {
            return 0;
        }
        let after = used.saturating_add(taken);
        let max = max.max(1);
        if taken <= self.free_left(resource, now) && after.saturating_mul(2) <= max {
            return 0;
        }
        let top = self.limits.max_bits.min(MAX_POW_BITS);
        let base = u64::from(self.limits.pow_bits.min(top));
        let span = u64::from(top) - base;
        let fill = span * (after.min(max) as u64) / (max as u64);
        let size = u64::from(usize::BITS - taken.saturating_sub(1).leading_zeros());
        u8::try_from((base + fill + size).min(u64::from(top))).unwrap_or(top)
    }

    /// Checks that `pow` bits pay for `taken` more of `resource`.
    pub fn check(
        &self,
        resource: Resource,
        taken: usize,
        used: usize,
        max: usize,
        pow: u8,
        now: u64,
    ) -> Result<(), PowRequired> {
        let bits = self.required_bits(resource, taken, used, max, now);
        if pow >= bits {
            return Ok(());
        }
        let free = self.allowance(resource);
        Err(PowRequired {
            bits,
            why: format!(
                "{}: the {free} free this hour are taken or the enclave is {}% full",
                resource.name(),
                used.saturating_add(taken).min(max) * 100 / max.max(1)
            ),
        })
    }

    /// Records that `taken` of `resource` were allocated at `now`.
    pub fn record(&mut self, resource: Resource, taken: usize, now: u64) {
        let allowance = self.allowance(resource);
        if let Some(times) = self.recent.get_mut(resource.index()) {
            for _ in 0..taken.min(allowance) {
                times.push_back(now);
            }
            while times.len() > allowance {
                times.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_allowance_then_growing_work() {
        let mut a = Admission::new(AdmissionLimits {
            free_keys_per_hour: 2,
            ..AdmissionLimits::default()
        });
        assert_eq!(a.required_bits(Resource::Keys, 1, 0, 100, 0), 0);
        a.record(Resource::Keys, 1, 0);
        a.record(Resource::Keys, 1, 0);
        assert_eq!(a.required_bits(Resource::Keys, 1, 2, 100, 10), 16);
        assert_eq!(a.required_bits(Resource::Keys, 1, 99, 100, 10), 28);
        assert!(a.required_bits(Resource::Keys, 1, 50, 100, 10) > 16);
        assert!(a.check(Resource::Keys, 1, 2, 100, 15, 10).is_err());
        assert!(a.check(Resource::Keys, 1, 2, 100, 16, 10).is_ok());
        // The allowance comes back after an hour.
        assert_eq!(a.required_bits(Resource::Keys, 1, 2, 100, HOUR + 1), 0);
        // More than half full: never free.
        assert_eq!(a.required_bits(Resource::Keys, 1, 60, 100, HOUR + 1), 23);
        // Taking several costs more.
        assert!(
            a.required_bits(Resource::Relays, 8, 60, 100, 0)
                > a.required_bits(Resource::Relays, 1, 60, 100, 0)
        );
        assert_eq!(a.required_bits(Resource::Relays, 0, 99, 100, 0), 0);
        let off = Admission::new(AdmissionLimits::off());
        assert_eq!(off.required_bits(Resource::Keys, 1, 99, 100, 0), 0);
    }
}
