//! Taking a sealed state over at start (`DESIGN.md`, "Restore"), and
//! sealing a new one. Claims come first: an accepted claim fences every
//! older epoch at that custodian, so no commit of the old holder can land
//! after the versions are read. With a quorum of claims, the newest
//! committed snapshot ([`choose`]) is fetched from the parent, checked
//! against its hash and opened; then it is sealed again in the new epoch
//! and committed to a quorum before anything is served, so that this
//! epoch's record outranks anything an older holder wrote.
//!
//! Nothing here starts fresh on its own: when no custodian holds the
//! state, [`RestoreError::NotSealed`] says so, and only the operator's
//! explicit choice makes a new one ([`seal_new`]).

use std::future::Future;
use std::time::{Duration, Instant};

use nostr::PublicKey;
use tracing::{info, warn};
use verifier::custodian::discover::CustodianInstance;
use verifier::custodian::message::{Call, Claimed, Reply, StateName};

pub use super::commit::{commit, seal_new};
use verifier::custodian::quorum::{choose, QuorumError};
use verifier::custodian::quorum_of;
use verifier::release::ReleasePolicy;
use verifier::state::{SealedChunk, SealedSnapshot, SnapshotRef, StateIdentity, StateKey};
use zeroize::Zeroizing;

/// How this enclave reaches its custodians.
pub trait Custodians {
    /// Sends `call` to `custodian` and returns its reply.
    fn call(
        &self,
        custodian: &CustodianInstance,
        call: Call,
    ) -> impl Future<Output = Result<Reply, String>> + Send;

    /// `custodian` did not answer: where it is may be looked up again (a
    /// custodian that restarted has a new service key).
    fn missing(&self, _custodian: &CustodianInstance) {}
}

/// Where the sealed snapshots are kept (the parent).
pub trait Storage {
    /// The chunk count the store names for (`epoch`, `version`), if kept.
    fn count(
        &self,
        identity: &StateIdentity,
        epoch: u64,
        version: u64,
    ) -> impl Future<Output = Result<Option<u32>, String>> + Send;
    /// The chunks of the snapshot `reference` names.
    fn get(
        &self,
        reference: &SnapshotRef,
    ) -> impl Future<Output = Result<Vec<SealedChunk>, String>> + Send;
    /// Stores `snapshot`.
    fn put(&self, snapshot: &SealedSnapshot) -> impl Future<Output = Result<(), String>> + Send;
    /// Marks `reference` committed.
    fn pin(&self, reference: &SnapshotRef) -> impl Future<Output = Result<(), String>> + Send;
}

/// A state this enclave holds now.
pub struct Held {
    /// Its state key.
    pub key: StateKey,
    /// This enclave's epoch.
    pub epoch: u64,
    /// The version committed last.
    pub version: u64,
    /// The release policy it is sealed with.
    pub policy: ReleasePolicy,
    /// The sealed custodian set (launchers): its quorum decides.
    pub set: Vec<PublicKey>,
    /// The state as it was committed (a CBOR state record), erased on drop.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// When the commit a quorum acknowledged last was sent: the lease runs
    /// from here.
    pub lease_from: Instant,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("key", &self.key)
            .field("epoch", &self.epoch)
            .field("version", &self.version)
            .field("set", &self.set.len())
            .finish_non_exhaustive()
    }
}

/// Why a state could not be taken over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreError {
    /// Every custodian that answered holds nothing of this state.
    NotSealed,
    /// Not enough custodians accepted, after every try; why, per round.
    NoQuorum(String),
    /// The custodians disagree, or what they name cannot be read.
    Broken(String),
}

impl std::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotSealed => f.write_str(
                "no custodian holds this state: start with --init-state to make a new one",
            ),
            Self::NoQuorum(e) => write!(f, "no quorum of custodians: {e}"),
            Self::Broken(e) => write!(f, "the state cannot be restored: {e}"),
        }
    }
}

impl std::error::Error for RestoreError {}

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// Rounds of claims before giving up (the caller may start again).
    pub rounds: usize,
    /// The longest wait between rounds.
    pub max_wait: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Self {
            rounds: 30,
            max_wait: Duration::from_secs(45),
        }
    }
}

/// What one round of claims came to.
#[derive(Default)]
struct Round {
    accepted: Vec<(PublicKey, Claimed)>,
    newest_epoch: Option<u64>,
    wait_ms: Option<u64>,
    not_held: usize,
    other: Vec<String>,
}

async fn claim_round<C: Custodians>(
    custodians: &C,
    at: &[CustodianInstance],
    state: &StateName,
    epoch: u64,
) -> Round {
    let calls = at.iter().map(|c| async move {
        let call = Call::Claim {
            state: state.clone(),
            epoch,
        };
        (c, custodians.call(c, call).await)
    });
    let mut round = Round::default();
    for (c, reply) in futures_util::future::join_all(calls).await {
        match reply {
            Ok(Reply::Claimed(claimed)) if claimed.epoch == epoch => {
                round.accepted.push((c.launcher, claimed));
            }
            Ok(Reply::Refused {
                code,
                current_epoch,
                retry_in_ms,
                reason,
            }) => match code.as_str() {
                "not-held" => round.not_held += 1,
                "stale-epoch" => {
                    round.newest_epoch = round.newest_epoch.max(current_epoch);
                }
                "leased" => {
                    let wait = retry_in_ms.unwrap_or(1000);
                    round.wait_ms = Some(round.wait_ms.map_or(wait, |w| w.min(wait)));
                }
                _ => round.other.push(format!("{}: {reason}", c.admin_relay)),
            },
            Ok(other) => round
                .other
                .push(format!("{}: unexpected {other:?}", c.admin_relay)),
            Err(e) => round.other.push(format!("{}: {e}", c.admin_relay)),
        }
    }
    round
}

/// Takes over `identity`'s state from `custodians`: `at` are the current
/// enclaves of the launchers the operator named (`configured`). The
/// quorum is the state's own sealed set's, as the custodians report it,
/// whatever the caller passes: a launcher that names fewer custodians, or
/// finds fewer, gets no quorum. Returns the state, already committed again
/// in a new epoch by a quorum of the sealed set.
pub async fn restore<C: Custodians, S: Storage>(
    identity: &StateIdentity,
    custodians: &C,
    at: &[CustodianInstance],
    configured: &[PublicKey],
    storage: &S,
    patience: Patience,
) -> Result<Held, RestoreError> {
    restore_or_abandon(
        identity, custodians, at, configured, storage, patience, None,
    )
    .await
}

/// Like [`restore`], but with `start_over` (the operator's
/// `--abandon-state`) the state taken over is not read: `start_over`
/// replaces it, under a new state key, as the next version in the new
/// epoch. The old snapshots need not exist any more; the claims still
/// fence every older holder and wait out its lease, so nothing serves the
/// old state once this returns.
pub async fn restore_or_abandon<C: Custodians, S: Storage>(
    identity: &StateIdentity,
    custodians: &C,
    at: &[CustodianInstance],
    configured: &[PublicKey],
    storage: &S,
    patience: Patience,
    mut start_over: Option<Zeroizing<Vec<u8>>>,
) -> Result<Held, RestoreError> {
    let state = StateName::of(identity);
    let mut epoch: u64 = 1;
    let mut why = String::from("no round of claims was tried");
    for round_no in 0..patience.rounds {
        let round = claim_round(custodians, at, &state, epoch).await;
        let set = sealed_set(&round.accepted)?;
        if let Some(set) = &set {
            let members: Vec<(PublicKey, Claimed)> = round
                .accepted
                .iter()
                .filter(|(launcher, _)| set.contains(launcher))
                .cloned()
                .collect();
            match choose(&members, set.len(), epoch) {
                Ok(chosen) => {
                    let set = set.clone();
                    return take_over(
                        identity,
                        custodians,
                        at,
                        storage,
                        epoch,
                        set,
                        chosen,
                        start_over.take(),
                    )
                    .await;
                }
                Err(QuorumError::Conflict(e)) => return Err(RestoreError::Broken(e)),
                Err(QuorumError::TooFew { .. }) => {}
            }
        }
        // Every custodian the operator named, found and saying it holds
        // nothing: only then is there no state (a subset proves nothing).
        let everyone = configured
            .iter()
            .all(|l| at.iter().any(|c| c.launcher == *l));
        if everyone && !at.is_empty() && round.not_held == at.len() {
            return Err(RestoreError::NotSealed);
        }
        why = format!(
            "round {}: {} of {} accepted epoch {epoch} (a quorum of the sealed set is {}); {} hold nothing{}",
            round_no + 1,
            round.accepted.len(),
            at.len(),
            set.as_ref()
                .map_or_else(|| "unknown yet".to_owned(), |s| quorum_of(s.len()).to_string()),
            round.not_held,
            if round.other.is_empty() {
                String::new()
            } else {
                format!("; {}", round.other.join("; "))
            }
        );
        let wait = if let Some(newest) = round.newest_epoch.filter(|n| *n >= epoch) {
            epoch = newest
                .checked_add(1)
                .ok_or_else(|| RestoreError::Broken("the epochs are used up".into()))?;
            // Another claimer may be racing: not at once, nor in step.
            Duration::from_millis(50 + u64::from(jitter()))
        } else if let Some(ms) = round.wait_ms {
            // A predecessor's lease runs: wait it out.
            Duration::from_millis(ms)
        } else {
            // Too few answered, or a split vote: back off, a little at random.
            epoch = epoch.saturating_add(1);
            Duration::from_millis(500 + u64::from(jitter()) * 8)
        };
        let wait = wait.min(patience.max_wait);
        warn!("restore: {why}; trying again in {} ms", wait.as_millis());
        tokio::time::sleep(wait).await;
    }
    Err(RestoreError::NoQuorum(why))
}

/// The sealed custodian set the accepted claims report, if any; they must
/// all report the same.
fn sealed_set(accepted: &[(PublicKey, Claimed)]) -> Result<Option<Vec<PublicKey>>, RestoreError> {
    let Some((_, first)) = accepted.first() else {
        return Ok(None);
    };
    if accepted
        .iter()
        .any(|(_, c)| c.custodians != first.custodians)
    {
        return Err(RestoreError::Broken(
            "custodians report different custodian sets for this state".into(),
        ));
    }
    let set = first
        .custodians
        .iter()
        .map(|c| {
            PublicKey::from_hex(c)
                .map_err(|e| RestoreError::Broken(format!("a custodian in the set: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if set.is_empty() {
        return Err(RestoreError::Broken(
            "the sealed custodian set is empty".into(),
        ));
    }
    Ok(Some(set))
}

/// Fetches and opens `chosen` (or, abandoning it, takes `start_over`
/// instead, unread), seals it again in `epoch` as its next version under a
/// new key and commits that to a quorum.
#[allow(clippy::too_many_arguments)]
async fn take_over<C: Custodians, S: Storage>(
    identity: &StateIdentity,
    custodians: &C,
    at: &[CustodianInstance],
    storage: &S,
    epoch: u64,
    set: Vec<PublicKey>,
    chosen: Claimed,
    start_over: Option<Zeroizing<Vec<u8>>>,
) -> Result<Held, RestoreError> {
    let broken = |e: String| RestoreError::Broken(e);
    let key = chosen.state_key().map_err(|e| broken(e.to_string()))?;
    let policy =
        ReleasePolicy::from_json(chosen.policy.as_bytes()).map_err(|e| broken(e.to_string()))?;
    let abandoned = start_over.is_some();
    let plaintext = match start_over {
        Some(plaintext) => plaintext,
        None => open_chosen(identity, storage, &chosen, &key, &policy).await?,
    };
    let version = chosen
        .version
        .checked_add(1)
        .ok_or_else(|| broken("the versions are used up".into()))?;
    let mut held = Held {
        key,
        epoch,
        version,
        policy,
        set,
        plaintext,
        lease_from: Instant::now(),
    };
    // Under a new key: one that a stale holder's rekey left at a minority
    // of custodians, or that a custodian missed, counts no more.
    commit(identity, custodians, at, storage, &mut held, true).await?;
    if abandoned {
        warn!(%identity, epoch, version, "the old state is abandoned, unread: this enclave starts over with no keys");
    } else {
        info!(%identity, epoch, version, "restore: the state is ours");
    }
    Ok(held)
}

/// The snapshot `chosen` names, from the parent, checked by its hash and
/// opened with `key`; pinned, so kept until the new epoch's is.
async fn open_chosen<S: Storage>(
    identity: &StateIdentity,
    storage: &S,
    chosen: &Claimed,
    key: &StateKey,
    policy: &ReleasePolicy,
) -> Result<Zeroizing<Vec<u8>>, RestoreError> {
    let broken = |e: String| RestoreError::Broken(e);
    let hash = chosen.snapshot_hash().map_err(|e| broken(e.to_string()))?;
    let count = storage
        .count(identity, chosen.commit_epoch, chosen.version)
        .await
        .map_err(broken)?
        .ok_or_else(|| {
            broken(format!(
                "the parent keeps no snapshot {}.{}, which the custodians name as the newest",
                chosen.commit_epoch, chosen.version
            ))
        })?;
    let reference = SnapshotRef {
        identity: identity.clone(),
        epoch: chosen.commit_epoch,
        version: chosen.version,
        policy: policy.digest(),
        key_id: key.id(),
        count,
        hash,
    };
    let chunks = storage.get(&reference).await.map_err(broken)?;
    let plaintext = reference
        .open(key, &chunks)
        .map_err(|e| broken(e.to_string()))?;
    storage.pin(&reference).await.map_err(broken)?;
    Ok(plaintext)
}

/// A little jitter, so that racing claimers do not keep meeting (the
/// clock's nanoseconds: no secret depends on it).
fn jitter() -> u8 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos % 251) as u8
}
