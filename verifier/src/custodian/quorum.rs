//! What a restoring enclave takes from its custodians' answers to a claim.
//!
//! Claims come before anything is read, and each accepted claim fences
//! every older epoch at that custodian. Every version an owner was told
//! "ok" about was committed by a quorum, and any two quorums share a
//! custodian, so among a quorum of accepted claims the highest version is
//! at least the last one acknowledged. Fewer than a quorum decides
//! nothing: the enclave waits and tries again, and never starts fresh
//! because custodians said nothing (a restarted custodian holds nothing,
//! which is not a vote).

use std::collections::BTreeSet;

use nostr::PublicKey;

use super::message::Claimed;
use super::quorum_of;

/// Why no state can be taken yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuorumError {
    /// Too few custodians accepted the claim.
    TooFew {
        /// How many did.
        accepted: usize,
        /// How many must.
        needed: usize,
    },
    /// Two custodians name different snapshots as the same version: the
    /// state cannot be trusted to either.
    Conflict(String),
}

impl std::fmt::Display for QuorumError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooFew { accepted, needed } => write!(
                f,
                "{accepted} custodians accepted the claim, {needed} must: waiting for more"
            ),
            Self::Conflict(e) => write!(f, "custodians disagree: {e}"),
        }
    }
}

impl std::error::Error for QuorumError {}

/// The newest state among `claims`, the accepted claims of `epoch`, one
/// per custodian, from a set of `custodians`. Newest is by the epoch that
/// committed a version first, then by the version: what a fenced holder
/// wrote past the last acknowledged state, at the custodians it still
/// reached, carries an older commit epoch than what its successor
/// committed since, and loses to it.
pub fn choose(
    claims: &[(PublicKey, Claimed)],
    custodians: usize,
    epoch: u64,
) -> Result<Claimed, QuorumError> {
    let needed = quorum_of(custodians);
    let mut seen: BTreeSet<&PublicKey> = BTreeSet::new();
    let mut best: Option<&Claimed> = None;
    for (custodian, claim) in claims {
        if claim.epoch != epoch || !seen.insert(custodian) {
            continue;
        }
        // One state has one policy and custodian set (until reseals
        // exist): a custodian that names others holds another state under
        // this name, and nothing can be trusted to either. Its key changes
        // with a rekey (a deletion), so custodians that missed the newest
        // commit name an older key with their older version; one version
        // under two keys is a conflict (below).
        if let Some(first) = best {
            if (&claim.policy, &claim.custodians) != (&first.policy, &first.custodians) {
                return Err(QuorumError::Conflict(format!(
                    "custodians name two states (keys {} and {}, with different release policies or custodian sets)",
                    first.key_id, claim.key_id
                )));
            }
        }
        let rank = |c: &Claimed| (c.commit_epoch, c.version);
        match best {
            None => best = Some(claim),
            Some(b) if rank(claim) > rank(b) => best = Some(claim),
            Some(b)
                if rank(claim) == rank(b) && (claim.hash != b.hash || claim.key_id != b.key_id) =>
            {
                return Err(QuorumError::Conflict(format!(
                    "version {} of epoch {} is {} under key {} and {} under key {}",
                    claim.version, claim.commit_epoch, b.hash, b.key_id, claim.hash, claim.key_id
                )));
            }
            Some(_) => {}
        }
    }
    match best {
        Some(b) if seen.len() >= needed => Ok(b.clone()),
        _ => Err(QuorumError::TooFew {
            accepted: seen.len(),
            needed,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(commit_epoch: u64, version: u64, hash: &str) -> (PublicKey, Claimed) {
        let claimed = Claimed {
            epoch: 7,
            commit_epoch,
            version,
            hash: hash.into(),
            key: crate::state::record::SecretString(zeroize::Zeroizing::new("00".repeat(32))),
            key_id: "11".repeat(16),
            policy: String::new(),
            custodians: vec![],
        };
        (nostr::Keys::generate().public_key(), claimed)
    }

    #[test]
    fn a_rekeyed_version_wins_over_an_older_one_under_the_old_key() {
        let (a, old) = claim(1, 4, "a");
        let (b, mut new) = claim(1, 5, "b");
        new.key_id = "22".repeat(16);
        let chosen = choose(&[(a, old.clone()), (b, new.clone())], 3, 7).unwrap();
        assert_eq!(
            (chosen.version, chosen.key_id.clone()),
            (5, new.key_id.clone())
        );
        // The same version under two keys is two states.
        let (c, mut twin) = claim(1, 5, "b");
        twin.key_id = "33".repeat(16);
        assert!(choose(&[(b, new), (c, twin)], 3, 7).is_err());
    }

    #[test]
    fn the_newest_of_a_quorum_wins_and_fewer_decide_nothing() {
        assert_eq!(quorum_of(1), 1);
        assert_eq!(quorum_of(3), 2);
        assert_eq!(quorum_of(4), 3);
        let chosen = choose(&[claim(1, 4, "a"), claim(1, 5, "b")], 3, 7).unwrap();
        assert_eq!(chosen.version, 5);
        // A newer commit epoch wins over a higher version of an older one.
        let chosen = choose(&[claim(1, 15, "old branch"), claim(2, 11, "new")], 3, 7).unwrap();
        assert_eq!((chosen.commit_epoch, chosen.version), (2, 11));
        assert_eq!(
            choose(&[claim(1, 5, "b")], 3, 7).unwrap_err(),
            QuorumError::TooFew {
                accepted: 1,
                needed: 2
            }
        );
        assert!(choose(&[], 0, 7).is_err());
        assert!(matches!(
            choose(&[claim(1, 5, "a"), claim(1, 5, "b")], 3, 7),
            Err(QuorumError::Conflict(_))
        ));
        // Another policy or custodian set under the same name, whatever
        // its rank, is another state.
        let (who, mut other_policy) = claim(2, 1, "x");
        other_policy.policy = "{}".into();
        assert!(matches!(
            choose(&[claim(1, 5, "a"), (who, other_policy)], 3, 7),
            Err(QuorumError::Conflict(_))
        ));
        let (who, mut other_set) = claim(2, 1, "x");
        other_set.custodians = vec!["00".repeat(32)];
        assert!(matches!(
            choose(&[claim(1, 5, "a"), (who, other_set)], 3, 7),
            Err(QuorumError::Conflict(_))
        ));
        // One custodian counts once, and only for the epoch asked.
        let (who, one) = claim(1, 5, "a");
        assert!(choose(&[(who, one.clone()), (who, one.clone())], 3, 7).is_err());
        let mut other_epoch = claim(1, 5, "a");
        other_epoch.1.epoch = 6;
        assert!(choose(&[(who, one), other_epoch], 3, 7).is_err());
    }
}
