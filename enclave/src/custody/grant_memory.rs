//! The count of the memory grants hold, over all keys, in two classes by
//! who makes it grow (`super::user_key::Memory`):
//!
//! - **owner** memory (grants given through the admin API, pending bunker
//!   secrets, remembered owner changes) grows only by an admin request,
//!   which pays for it past a free hourly allowance with proof of work
//!   (`super::admission`), as keys and relays do;
//! - **event** memory (nsec.app's grants and the states kept for them)
//!   grows by permission events, which a key's holder can publish as often
//!   as they like and which pay nothing.
//!
//! So event memory may take at most [`EVENT_SHARE`] of the bound, and
//! owners' grants always have the rest: no number of a stranger's events
//! can stop an owner from minting a bunker URL or granting an app. Within
//! its share, event memory is held to a fair share per owned key
//! (`super::nsec_store`): a key under `share / owned keys` may push out
//! the nsec.app grants of the key with the most, so an honest owner's
//! nsec.app updates are not refused because a stranger's keys came first;
//! a stranger's share grows only with the keys they hold, which they paid
//! for. Nothing is counted beyond the bound: what does not fit is refused
//! (fail closed), not kept.

use std::collections::BTreeSet;

use nostr::PublicKey;

/// The grant memory a key counts, by who makes it grow: the owner (admin
/// requests, which pay with proof of work past a free allowance) or
/// events (nsec.app's permission events, which pay nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Grants from admin requests, pending bunker secrets, owner changes.
    pub owner: usize,
    /// Grants from nsec.app and the states kept for them.
    pub event: usize,
}

impl Memory {
    /// Both.
    pub fn total(&self) -> usize {
        self.owner.saturating_add(self.event)
    }
}

/// The part of the grant memory that events may take: one half.
pub const EVENT_SHARE: (usize, usize) = (1, 2);

/// The memory counted, per class and per key.
#[derive(Debug)]
pub(super) struct GrantMemory {
    max: usize,
    counted: Memory,
    /// (event memory, key) of every key with some: the largest is last.
    by_event: BTreeSet<(usize, PublicKey)>,
}

impl GrantMemory {
    /// Nothing counted yet, of at most `max` bytes.
    pub(super) fn new(max: usize) -> Self {
        Self {
            max,
            counted: Memory::default(),
            by_event: BTreeSet::new(),
        }
    }

    /// The bound over both classes.
    pub(super) fn max(&self) -> usize {
        self.max
    }

    /// The most event memory counted.
    pub(super) fn event_max(&self) -> usize {
        self.max / EVENT_SHARE.1 * EVENT_SHARE.0
    }

    /// What is counted.
    pub(super) fn counted(&self) -> Memory {
        self.counted
    }

    /// `key`'s memory went from `before` to `after`.
    pub(super) fn changed(&mut self, key: &PublicKey, before: Memory, after: Memory) {
        self.counted.owner = (self.counted.owner + after.owner).saturating_sub(before.owner);
        self.counted.event = (self.counted.event + after.event).saturating_sub(before.event);
        if before.event != after.event {
            self.by_event.remove(&(before.event, *key));
            if after.event > 0 {
                self.by_event.insert((after.event, *key));
            }
        }
    }

    /// Whether `extra` more owner memory fits.
    pub(super) fn owner_fits(&self, extra: usize) -> bool {
        self.counted.total().saturating_add(extra) <= self.max
    }

    /// Whether `extra` more event memory fits, in its share and overall.
    pub(super) fn event_fits(&self, extra: usize) -> bool {
        self.counted.event.saturating_add(extra) <= self.event_max() && self.owner_fits(extra)
    }

    /// The key with the most event memory, and how much.
    pub(super) fn largest_event(&self) -> Option<(usize, PublicKey)> {
        self.by_event.iter().next_back().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::Keys;

    #[test]
    fn classes_are_counted_apart_and_events_keep_to_their_share() {
        let mut m = GrantMemory::new(1000);
        let (a, b) = (Keys::generate().public_key(), Keys::generate().public_key());
        m.changed(
            &a,
            Memory::default(),
            Memory {
                owner: 100,
                event: 300,
            },
        );
        m.changed(
            &b,
            Memory::default(),
            Memory {
                owner: 0,
                event: 150,
            },
        );
        assert_eq!(
            m.counted(),
            Memory {
                owner: 100,
                event: 450
            }
        );
        assert_eq!(m.largest_event(), Some((300, a)));
        assert!(m.event_fits(50));
        assert!(!m.event_fits(51));
        // Owners have the rest, events or not.
        assert!(m.owner_fits(450));
        assert!(!m.owner_fits(451));
        m.changed(
            &a,
            Memory {
                owner: 100,
                event: 300,
            },
            Memory {
                owner: 100,
                event: 0,
            },
        );
        assert_eq!(m.largest_event(), Some((150, b)));
        assert_eq!(m.counted().event, 150);
    }
}
