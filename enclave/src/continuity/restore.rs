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
                    return take_over(
                        identity,
                        custodians,
                        at,
                        storage,
                        epoch,
                        set.clone(),
                        chosen,
                    )
                    .await
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

/// Fetches and opens `chosen`, seals it again in `epoch` and commits that
/// to a quorum.
async fn take_over<C: Custodians, S: Storage>(
    identity: &StateIdentity,
    custodians: &C,
    at: &[CustodianInstance],
    storage: &S,
    epoch: u64,
    set: Vec<PublicKey>,
    chosen: Claimed,
) -> Result<Held, RestoreError> {
    let broken = |e: String| RestoreError::Broken(e);
    let key = chosen.state_key().map_err(|e| broken(e.to_string()))?;
    let policy =
        ReleasePolicy::from_json(chosen.policy.as_bytes()).map_err(|e| broken(e.to_string()))?;
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
        .open(&key, &chunks)
        .map_err(|e| broken(e.to_string()))?;
    // Chosen, so kept until the new epoch's snapshot is pinned instead.
    storage.pin(&reference).await.map_err(broken)?;
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
    commit(identity, custodians, at, storage, &mut held, false).await?;
    info!(%identity, epoch, version, "restore: the state is ours");
    Ok(held)
}

/// Seals `held`'s plaintext as its version in its epoch, stores it and
/// commits it to a quorum of its sealed set, then pins it at the parent.
/// With `rekey`, it is sealed under a new state key that replaces the old
/// one at the custodians (after a deletion: older snapshots, which hold
/// the deleted key, can then no longer be opened); `held` takes the new
/// key only once a quorum took it.
pub async fn commit<C: Custodians, S: Storage>(
    identity: &StateIdentity,
    custodians: &C,
    at: &[CustodianInstance],
    storage: &S,
    held: &mut Held,
    rekey: bool,
) -> Result<SnapshotRef, RestoreError> {
    let broken = |e: String| RestoreError::Broken(e);
    let new_key = if rekey {
        Some(StateKey::generate().map_err(|e| broken(e.to_string()))?)
    } else {
        None
    };
    let key = new_key.as_ref().unwrap_or(&held.key);
    let sealed = SealedSnapshot::seal(
        key,
        identity,
        held.epoch,
        held.version,
        held.policy.digest(),
        &held.plaintext,
    )
    .map_err(|e| broken(e.to_string()))?;
    storage.put(&sealed).await.map_err(broken)?;
    let state = StateName::of(identity);
    let hash = hex::encode(sealed.reference.hash);
    let call = if rekey {
        Call::Rekey {
            state,
            epoch: held.epoch,
            version: held.version,
            hash,
            key: verifier::state::record::SecretString(Zeroizing::new(hex::encode(key.bytes()))),
            key_id: key.id().to_string(),
        }
    } else {
        Call::Commit {
            state,
            epoch: held.epoch,
            version: held.version,
            hash,
            key_id: key.id().to_string(),
        }
    };
    let sent = Instant::now();
    let acks = quorum_calls(custodians, at, &held.set, call, false).await;
    if acks.ok < quorum_of(held.set.len()) {
        return Err(RestoreError::NoQuorum(format!(
            "{} of the {} custodians of the set recorded version {} (a quorum is {}): {}",
            acks.ok,
            held.set.len(),
            held.version,
            quorum_of(held.set.len()),
            acks.why.join("; ")
        )));
    }
    if let Some(key) = new_key {
        info!(%identity, version = held.version, "the state key is replaced");
        held.key = key;
    }
    held.lease_from = sent;
    storage.pin(&sealed.reference).await.map_err(broken)?;
    Ok(sealed.reference)
}

/// Seals a new state (the operator's `--init-state`): a fresh key, the
/// `plaintext` as version 1 of epoch 1, kept by a quorum of `custodians`.
pub async fn seal_new<C: Custodians, S: Storage>(
    identity: &StateIdentity,
    custodians: &C,
    at: &[CustodianInstance],
    set: &[PublicKey],
    storage: &S,
    policy: ReleasePolicy,
    plaintext: Zeroizing<Vec<u8>>,
) -> Result<Held, RestoreError> {
    let broken = |e: String| RestoreError::Broken(e);
    let key = StateKey::generate().map_err(|e| broken(e.to_string()))?;
    let sealed = SealedSnapshot::seal(&key, identity, 1, 1, policy.digest(), &plaintext)
        .map_err(|e| broken(e.to_string()))?;
    storage.put(&sealed).await.map_err(broken)?;
    let call = Call::Seal {
        state: StateName::of(identity),
        key: verifier::state::record::SecretString(Zeroizing::new(hex::encode(key.bytes()))),
        key_id: key.id().to_string(),
        policy: policy.to_json(),
        custodians: set.iter().map(PublicKey::to_hex).collect(),
        version: 1,
        hash: hex::encode(sealed.reference.hash),
    };
    let sent = Instant::now();
    let acks = quorum_calls(custodians, at, set, call, true).await;
    if acks.already_sealed {
        return Err(RestoreError::Broken(format!(
            "a custodian holds this state already, so a new one would start over a live one: restore it, or abandon it explicitly ({})",
            acks.why.join("; ")
        )));
    }
    if set.is_empty() || acks.ok < quorum_of(set.len()) {
        return Err(RestoreError::NoQuorum(format!(
            "{} of the {} custodians of the set sealed the new state (a quorum is {}): {}",
            acks.ok,
            set.len(),
            quorum_of(set.len()),
            acks.why.join("; ")
        )));
    }
    storage.pin(&sealed.reference).await.map_err(broken)?;
    info!(%identity, "a new state is sealed");
    Ok(Held {
        key,
        epoch: 1,
        version: 1,
        policy,
        set: set.to_vec(),
        plaintext,
        lease_from: sent,
    })
}

/// What custodians answered to a seal or commit.
struct Acks {
    /// `Ok`s from distinct custodians of the set.
    ok: usize,
    /// A custodian holds the state already (to a seal).
    already_sealed: bool,
    /// Why the others did not.
    why: Vec<String>,
}

/// Sends `call` to every custodian; counts the `Ok`s of distinct members
/// of `set` only.
async fn quorum_calls<C: Custodians>(
    custodians: &C,
    at: &[CustodianInstance],
    set: &[PublicKey],
    call: Call,
    wait_all: bool,
) -> Acks {
    let mut replies: futures_util::stream::FuturesUnordered<_> = at
        .iter()
        .map(|c| {
            let call = call.clone();
            async move { (c, custodians.call(c, call).await) }
        })
        .collect();
    let mut members: Vec<PublicKey> = Vec::new();
    let mut acks = Acks {
        ok: 0,
        already_sealed: false,
        why: Vec::new(),
    };
    while let Some((c, reply)) = futures_util::StreamExt::next(&mut replies).await {
        match reply {
            Ok(Reply::Ok { .. }) if set.contains(&c.launcher) && !members.contains(&c.launcher) => {
                members.push(c.launcher);
                acks.ok += 1;
            }
            Ok(Reply::Ok { .. }) => acks.why.push(format!("{}: not of the set", c.admin_relay)),
            Ok(Reply::Refused { code, reason, .. }) => {
                acks.already_sealed |= code == "already-sealed";
                acks.why.push(format!("{}: {reason}", c.admin_relay));
            }
            Ok(other) => acks
                .why
                .push(format!("{}: unexpected {other:?}", c.admin_relay)),
            Err(e) => acks.why.push(format!("{}: {e}", c.admin_relay)),
        }
        // A commit needs a quorum, not everyone: one that is down (its call
        // waits for its timeout) holds no owner's change up.
        if !wait_all && acks.ok >= quorum_of(set.len()) {
            break;
        }
    }
    acks
}

/// A little jitter, so that racing claimers do not keep meeting (the
/// clock's nanoseconds: no secret depends on it).
fn jitter() -> u8 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos % 251) as u8
}
