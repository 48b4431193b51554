//! The whole store as sealed state keeps it ([`StateRecord`]), and a store
//! rebuilt from it: every key with its relays, apps, grants (uses and rate
//! logs), bunker secrets, owner changes, nsec.app state and test-key
//! expiry, and the decision log with its numbering. The indexes (relays,
//! owners, grant memory) are rebuilt from the keys.
//!
//! Not kept, each bounded: the hourly free allowances of admission and of
//! test keys per requester (after a restore, a requester may take one
//! more hour's allowance), and the ids of nsec.app events applied lately
//! (a replay is then judged by its timestamps, which the kept watermarks
//! order, so it changes nothing).
//!
//! The record is written in a fixed order (keys and apps by public key),
//! so the same store always gives the same bytes.

use nostr::{PublicKey, RelayUrl};
use tracing::warn;
use verifier::event::npub;
use verifier::state::record::{KeyRecord, RECORD_FORMAT};
use verifier::state::StateRecord;

use super::import::read_on;
use super::{KeyStore, Limits, Memory, UserKey};

impl KeyStore {
    /// Everything the store holds, as sealed state keeps it, at `now`.
    pub fn to_record(&self, now: u64) -> StateRecord {
        let mut keys: Vec<(&PublicKey, &UserKey)> = self.keys.iter().collect();
        keys.sort_unstable_by_key(|(k, _)| k.to_bytes());
        StateRecord {
            format: RECORD_FORMAT,
            written_at: now,
            keys: keys
                .into_iter()
                .map(|(_, key)| sorted(key.to_record()))
                .collect(),
            log: self.log.to_records(),
            next_log_seq: self.log.next_seq(),
            reset_at: self.reset_at,
        }
    }

    /// A store with `limits`, its permission and admin relays as given,
    /// holding what `record` keeps. Keys over the limits (the operator
    /// lowered them) are kept all the same: the limits bound what comes
    /// next, they never drop what owners were told is held. A key that
    /// does not read (its secret, its relays, twice in the record) is an
    /// error, and nothing is restored; an app or bunker secret that does
    /// not read is left out, with a warning (it fails closed).
    pub fn from_record(
        limits: Limits,
        perm_relays: Vec<RelayUrl>,
        admin_relay: Option<RelayUrl>,
        record: &StateRecord,
    ) -> Result<Self, String> {
        let mut store = Self::new(limits);
        store.perm_relays = perm_relays;
        store.admin_relay = admin_relay;
        store.reset_at = record.reset_at;
        for k in &record.keys {
            let relays = k
                .relays
                .iter()
                .map(|r| RelayUrl::parse(r).map_err(|e| format!("a key's relay {r:?}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            let list = store.lists.share(relays.clone());
            let (pubkey, key, dropped) = UserKey::from_record(k, list)?;
            if dropped > 0 {
                warn!(
                    key = %npub(&pubkey),
                    dropped,
                    "restore: apps or bunker secrets of this key did not read and were left out"
                );
            }
            if store.keys.contains_key(&pubkey) {
                return Err(format!("the key {pubkey} is in the record twice"));
            }
            store.relays.add(pubkey, &relays);
            if key.expires_at().is_some() {
                store.test_keys += 1;
            } else {
                store
                    .owners
                    .add(pubkey, &read_on(&relays, &store.perm_relays));
            }
            store
                .memory
                .changed(&pubkey, Memory::default(), key.memory());
            store.keys.insert(pubkey, key);
        }
        store.log.restore(&record.log, record.next_log_seq)?;
        Ok(store)
    }
}

/// A key's record with its lists in a fixed order.
fn sorted(mut record: KeyRecord) -> KeyRecord {
    record.apps.sort_unstable_by_key(|a| a.app);
    record.nsec_app.sort_unstable_by_key(|a| a.app);
    record.owner_at.sort_unstable();
    record
}

#[cfg(test)]
mod tests;
