//! A custody request's call, parsed and handed to the ledger's rules.

use std::collections::BTreeSet;

use nostr::PublicKey;

use super::{bad, Ledger, Peer, Result, Sealed};
use crate::custodian::message::{hex32, key_id, Call, Reply, StateName};
use crate::custodian::MAX_CUSTODIANS;
use crate::release::ReleasePolicy;
use crate::state::StateKey;

impl Ledger {
    /// Answers `call` from `peer` at `now` (ms).
    pub fn handle(&mut self, peer: &Peer, call: &Call, now: u64) -> Reply {
        let result = match call {
            Call::Seal {
                state,
                key,
                key_id: id,
                policy,
                custodians,
                version,
                hash,
            } => self.seal_call(
                peer, state, &key.0, id, policy, custodians, *version, hash, now,
            ),
            Call::Claim { state, epoch } => {
                let identity = state.identity().map_err(bad);
                identity.and_then(|i| self.claim(peer, &i, *epoch, now).map(Reply::Claimed))
            }
            Call::Commit {
                state,
                epoch,
                version,
                hash,
                key_id: id,
            } => state.identity().map_err(bad).and_then(|identity| {
                let hash = hex32(hash, "snapshot hash").map_err(bad)?;
                let id = key_id(id).map_err(bad)?;
                self.commit(peer, &identity, *epoch, *version, *hash, id, now)
            }),
            Call::Rekey {
                state,
                epoch,
                version,
                hash,
                key,
                key_id: id,
            } => state.identity().map_err(bad).and_then(|identity| {
                let hash = hex32(hash, "snapshot hash").map_err(bad)?;
                let key = StateKey::from_parts(
                    hex32(&key.0, "state key").map_err(bad)?,
                    key_id(id).map_err(bad)?,
                );
                self.rekey(peer, &identity, *epoch, *version, *hash, key, now)
            }),
            Call::Heartbeat { state, epoch } => state
                .identity()
                .map_err(bad)
                .and_then(|identity| self.heartbeat(peer, &identity, *epoch, now)),
        };
        result.unwrap_or_else(|r| r.reply())
    }

    #[allow(clippy::too_many_arguments)]
    fn seal_call(
        &mut self,
        peer: &Peer,
        state: &StateName,
        key: &str,
        id: &str,
        policy: &str,
        custodians: &[String],
        version: u64,
        hash: &str,
        now: u64,
    ) -> Result<Reply> {
        let identity = state.identity().map_err(bad)?;
        let key = StateKey::from_parts(
            hex32(key, "state key").map_err(bad)?,
            key_id(id).map_err(bad)?,
        );
        let policy = ReleasePolicy::from_json(policy.as_bytes()).map_err(bad)?;
        if custodians.len() > MAX_CUSTODIANS {
            return Err(bad(format!("more than {MAX_CUSTODIANS} custodians")));
        }
        let custodians = custodians
            .iter()
            .map(|c| PublicKey::from_hex(c).map_err(bad))
            .collect::<Result<Vec<_>>>()?;
        let distinct: BTreeSet<&PublicKey> = custodians.iter().collect();
        if distinct.len() != custodians.len() {
            return Err(bad("a custodian launcher is named twice"));
        }
        if self.own.is_some_and(|own| !distinct.contains(&own)) {
            return Err(bad(
                "the state's custodian set does not name this custodian's launcher",
            ));
        }
        if distinct.contains(identity.launcher()) {
            return Err(bad(
                "the state's own launcher cannot be its custodian: it runs the parent",
            ));
        }
        let hash = *hex32(hash, "snapshot hash").map_err(bad)?;
        let sealed = Sealed {
            key,
            policy,
            custodians,
            version,
            hash,
        };
        self.seal(peer, &identity, sealed, now)
    }
}
