//! The relay lists of held keys, each kept once however many keys share
//! it. Most keys listen on the same one or two relays, and a parsed relay
//! URL costs more than 100 bytes: a list shared by reference costs a key
//! one pointer (memory per key bounds how many an enclave holds).

use std::collections::HashSet;
use std::sync::Arc;

use nostr::RelayUrl;

/// One relay list, shared by the keys that listen on exactly these relays
/// in this order.
pub(super) type RelayList = Arc<[RelayUrl]>;

/// Every distinct relay list in use (at most one per held key).
#[derive(Debug, Default)]
pub(super) struct RelayLists {
    lists: HashSet<RelayList>,
}

impl RelayLists {
    /// The shared copy of `relays`, made if no key has it yet.
    pub(super) fn share(&mut self, relays: Vec<RelayUrl>) -> RelayList {
        if let Some(list) = self.lists.get(relays.as_slice()) {
            return Arc::clone(list);
        }
        let list: RelayList = relays.into();
        self.lists.insert(Arc::clone(&list));
        list
    }

    /// A key no longer uses `list`: forgotten once no key does.
    pub(super) fn release(&mut self, list: RelayList) {
        // Ours and the one handed back: nobody else's.
        if Arc::strong_count(&list) <= 2 {
            self.lists.remove(&*list);
        }
    }

    /// How many distinct lists are in use.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lists.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(n: u8) -> RelayUrl {
        RelayUrl::parse(&format!("wss://r{n}.example")).unwrap()
    }

    #[test]
    fn keys_with_the_same_relays_share_one_list_until_the_last_lets_go() {
        let mut lists = RelayLists::default();
        let a = lists.share(vec![relay(1), relay(2)]);
        let b = lists.share(vec![relay(1), relay(2)]);
        let c = lists.share(vec![relay(3)]);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(lists.len(), 2);
        lists.release(a);
        assert_eq!(lists.len(), 2, "b still uses it");
        lists.release(b);
        lists.release(c);
        assert_eq!(lists.len(), 0);
    }
}
