//! Request events seen recently, so one request delivered by several
//! relays (or again after a reconnect, or replayed by a hostile relay) is
//! handled once.
//!
//! Requests are accepted only while their `created_at` is inside the
//! acceptance window, so an id only has to be remembered until its
//! `created_at` leaves it. The cache is bounded, and that is where replays
//! could slip in: a relay that injects many cheap signed events could push
//! a captured request out and then replay it. So nothing is ever simply
//! forgotten inside the window: up to `max` ids are kept exactly, and when
//! that is full the one with the oldest `created_at` moves into a Bloom
//! filter for its minute of `created_at` ([`Overflow`]). An event found in
//! either is refused. A Bloom filter has no false negatives, so a replay
//! inside the window is never handled, whatever was injected before it. Its
//! false positives (a new request wrongly refused) depend on how many ids a
//! flood puts into one minute's filter (4 MiB, 6 hashes): 1 in 50,000 at a
//! million, 1 in 1,300 at two million, 2% at four million. Two cores verify
//! signatures at about two million a minute, so a flood that fast costs
//! about one new request in a thousand for the minutes it is dated in. A
//! flood of forward- or back-dated events fills those minutes' filters and
//! does not touch the current one.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;

use nostr::EventId;

/// Why an event is not new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotNew {
    /// It was handled already.
    Duplicate,
    /// It may have been handled already: it is in the overflow filters.
    MaybeReplayed,
}

/// Seconds of `created_at` per overflow filter.
const BUCKET_SECS: u64 = 60;
/// Bits per overflow filter (4 MiB).
const FILTER_BITS: usize = 1 << 25;
/// Bit positions per id.
const HASHES: u64 = 6;

/// Recently seen event ids, by `created_at`.
#[derive(Debug)]
pub struct Seen {
    max_age: u64,
    max: usize,
    ids: BTreeSet<(u64, EventId)>,
    overflow: Overflow,
}

impl Seen {
    /// Remembers ids while `created_at` is within `max_age` seconds of
    /// now, `max` of them exactly and the rest in overflow filters.
    pub fn new(max_age: u64, max: usize) -> Self {
        Self {
            max_age,
            max: max.max(1),
            ids: BTreeSet::new(),
            overflow: Overflow::default(),
        }
    }

    /// Records the event `id` made at `created_at`, seen at `now`; `Err`
    /// if it must not be handled.
    pub fn first_time(&mut self, id: EventId, created_at: u64, now: u64) -> Result<(), NotNew> {
        // Out of the window: refused as stale before they get here.
        let oldest = now.saturating_sub(self.max_age);
        while let Some((at, _)) = self.ids.first() {
            if *at >= oldest {
                break;
            }
            self.ids.pop_first();
        }
        self.overflow.expire(oldest);
        if self.ids.contains(&(created_at, id)) {
            return Err(NotNew::Duplicate);
        }
        if self.overflow.contains(&id, created_at) {
            return Err(NotNew::MaybeReplayed);
        }
        self.ids.insert((created_at, id));
        if self.ids.len() > self.max {
            if let Some((at, old)) = self.ids.pop_first() {
                self.overflow.insert(&old, at);
            }
        }
        Ok(())
    }

    /// How many ids are remembered exactly.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// None are remembered.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.overflow.filters.is_empty()
    }

    /// How many ids went into the overflow filters (0 unless flooded).
    pub fn overflowed(&self) -> u64 {
        self.overflow.inserted
    }
}

/// Bloom filters of the ids pushed out of the exact set, one per minute of
/// `created_at`, allocated only when needed and dropped when the minute
/// leaves the window. Hashed with a per-process random key, so nobody can
/// aim ids at chosen bits.
#[derive(Debug, Default)]
struct Overflow {
    hasher: RandomState,
    filters: BTreeMap<u64, Vec<u64>>,
    inserted: u64,
}

impl Overflow {
    fn positions(&self, id: &EventId) -> impl Iterator<Item = usize> {
        let h1 = self.hasher.hash_one((0u8, id.as_bytes()));
        let h2 = self.hasher.hash_one((1u8, id.as_bytes())) | 1;
        (0..HASHES).map(move |i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % (FILTER_BITS as u64);
            usize::try_from(bit).unwrap_or(0)
        })
    }

    fn insert(&mut self, id: &EventId, created_at: u64) {
        let positions: Vec<usize> = self.positions(id).collect();
        let filter = self
            .filters
            .entry(created_at / BUCKET_SECS)
            .or_insert_with(|| vec![0u64; FILTER_BITS / 64]);
        for bit in positions {
            if let Some(word) = filter.get_mut(bit / 64) {
                *word |= 1 << (bit % 64);
            }
        }
        self.inserted += 1;
    }

    fn contains(&self, id: &EventId, created_at: u64) -> bool {
        let Some(filter) = self.filters.get(&(created_at / BUCKET_SECS)) else {
            return false;
        };
        self.positions(id).all(|bit| {
            filter
                .get(bit / 64)
                .is_some_and(|word| word & (1 << (bit % 64)) != 0)
        })
    }

    /// Drops the filters of minutes that ended before `oldest`.
    fn expire(&mut self, oldest: u64) {
        while let Some((&bucket, _)) = self.filters.first_key_value() {
            if (bucket + 1) * BUCKET_SECS > oldest {
                break;
            }
            self.filters.pop_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> EventId {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        EventId::from_byte_array(bytes)
    }

    #[test]
    fn dedupes_within_the_window_and_stays_bounded() {
        let mut seen = Seen::new(10, 3);
        assert_eq!(seen.first_time(id(1), 0, 0), Ok(()));
        assert_eq!(seen.first_time(id(1), 0, 5), Err(NotNew::Duplicate));
        assert!(seen.first_time(id(2), 5, 5).is_ok());
        assert!(seen.first_time(id(3), 5, 5).is_ok());
        assert!(seen.first_time(id(4), 6, 6).is_ok());
        assert_eq!(seen.len(), 3);
        // The oldest was pushed out at the cap: still refused.
        assert_eq!(seen.first_time(id(1), 0, 6), Err(NotNew::MaybeReplayed));
        assert_eq!(seen.overflowed(), 1);
        // Out of the window everything is dropped.
        assert!(seen.first_time(id(9), 200, 200).is_ok());
        assert_eq!(seen.len(), 1);
        assert!(seen.overflow.filters.is_empty());
    }

    #[test]
    fn a_flood_never_lets_a_replay_through() {
        let mut seen = Seen::new(300, 1_000);
        let captured = id(u32::MAX);
        assert!(seen.first_time(captured, 1000, 1000).is_ok());
        // 20,000 injected events: in the same second, forward- and back-dated.
        for n in 0..20_000u32 {
            let at = [1000, 1290, 720][n as usize % 3];
            let _ = seen.first_time(id(n), at, 1001);
        }
        assert!(seen.len() <= 1_000);
        assert!(seen.first_time(captured, 1000, 1002).is_err());
        // Fresh requests are still handled.
        for n in 0..100 {
            assert!(seen.first_time(id(1_000_000 + n), 1002, 1002).is_ok());
        }
    }
}
