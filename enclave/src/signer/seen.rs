//! Request events seen recently, so one request delivered by several
//! relays (or again after a reconnect) is handled once. Bounded in time
//! (requests older than the window are refused before they get here) and
//! in size.

use std::collections::{HashSet, VecDeque};

use nostr::EventId;

/// Recently seen event ids.
#[derive(Debug)]
pub struct Seen {
    window: u64,
    max: usize,
    ids: HashSet<EventId>,
    order: VecDeque<(u64, EventId)>,
}

impl Seen {
    /// Remembers ids for `window` seconds, at most `max` of them.
    pub fn new(window: u64, max: usize) -> Self {
        Self {
            window,
            max: max.max(1),
            ids: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Records `id` seen at `now`; false if it was seen already.
    pub fn first_time(&mut self, id: EventId, now: u64) -> bool {
        while let Some((at, old)) = self.order.front() {
            if *at + self.window > now && self.order.len() < self.max {
                break;
            }
            self.ids.remove(old);
            self.order.pop_front();
        }
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back((now, id));
        true
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// None are remembered.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> EventId {
        EventId::from_byte_array([n; 32])
    }

    #[test]
    fn dedupes_within_the_window_and_stays_bounded() {
        let mut seen = Seen::new(10, 3);
        assert!(seen.first_time(id(1), 0));
        assert!(!seen.first_time(id(1), 5));
        assert!(seen.first_time(id(2), 5));
        assert!(seen.first_time(id(3), 5));
        assert!(seen.first_time(id(4), 5));
        assert_eq!(seen.len(), 3);
        assert!(
            seen.first_time(id(1), 6),
            "the oldest was dropped at the cap"
        );
        assert!(seen.first_time(id(9), 100));
        assert_eq!(seen.len(), 1);
    }
}
