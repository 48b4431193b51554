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

/// The newest state among `claims`, the accepted claims of one epoch from
/// distinct custodians of a set of `custodians`.
pub fn choose(claims: Vec<Claimed>, custodians: usize) -> Result<Claimed, QuorumError> {
    let needed = quorum_of(custodians);
    if claims.len() < needed {
        return Err(QuorumError::TooFew {
            accepted: claims.len(),
            needed,
        });
    }
    let mut best: Option<Claimed> = None;
    for claim in claims {
        match &best {
            None => best = Some(claim),
            Some(b) if claim.version > b.version => best = Some(claim),
            Some(b)
                if claim.version == b.version
                    && (claim.hash != b.hash || claim.key_id != b.key_id) =>
            {
                return Err(QuorumError::Conflict(format!(
                    "version {} is {} under key {} and {} under key {}",
                    claim.version, b.hash, b.key_id, claim.hash, claim.key_id
                )));
            }
            Some(_) => {}
        }
    }
    best.ok_or(QuorumError::TooFew {
        accepted: 0,
        needed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(version: u64, hash: &str) -> Claimed {
        Claimed {
            epoch: 2,
            version,
            hash: hash.into(),
            key: crate::state::record::SecretString(zeroize::Zeroizing::new("00".repeat(32))),
            key_id: "11".repeat(16),
            policy: String::new(),
            custodians: vec![],
        }
    }

    #[test]
    fn the_highest_version_of_a_quorum_wins_and_fewer_decide_nothing() {
        assert_eq!(quorum_of(1), 1);
        assert_eq!(quorum_of(3), 2);
        assert_eq!(quorum_of(4), 3);
        let chosen = choose(vec![claim(4, "a"), claim(5, "b")], 3).unwrap();
        assert_eq!(chosen.version, 5);
        assert_eq!(
            choose(vec![claim(5, "b")], 3).unwrap_err(),
            QuorumError::TooFew {
                accepted: 1,
                needed: 2
            }
        );
        assert!(choose(vec![], 0).is_err());
        assert!(matches!(
            choose(vec![claim(5, "a"), claim(5, "b")], 3),
            Err(QuorumError::Conflict(_))
        ));
    }
}
