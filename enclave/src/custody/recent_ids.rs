//! Event ids seen lately, at most a fixed number: the oldest is forgotten
//! first. Forgetting costs only work (a replay is decrypted and merged
//! again, and changes nothing), never correctness.

use std::collections::{HashSet, VecDeque};

/// The last `cap` ids remembered.
#[derive(Debug)]
pub(super) struct RecentIds {
    cap: usize,
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl RecentIds {
    /// Remembers at most `cap` ids.
    pub(super) fn new(cap: usize) -> Self {
        Self {
            cap,
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `id` is remembered.
    pub(super) fn contains(&self, id: &[u8; 32]) -> bool {
        self.set.contains(id)
    }

    /// Remembers `id`, forgetting the oldest past the cap.
    pub(super) fn insert(&mut self, id: [u8; 32]) {
        if self.cap == 0 || !self.set.insert(id) {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_ones_only() {
        let mut ids = RecentIds::new(2);
        ids.insert([1; 32]);
        ids.insert([2; 32]);
        ids.insert([2; 32]);
        assert!(ids.contains(&[1; 32]));
        ids.insert([3; 32]);
        assert!(!ids.contains(&[1; 32]));
        assert!(ids.contains(&[2; 32]) && ids.contains(&[3; 32]));
    }
}
