//! What a custodian keeps, per state, and the rules of every change. All
//! of it is in RAM: a custodian that restarts comes back empty, and an
//! empty custodian's silence is never a vote ([`super::quorum`]).
//!
//! The rules, each a refusal here:
//! - only launchers the operator lists are served, each with a quota, so
//!   a stranger cannot make a custodian keep anything;
//! - a requester is an enclave whose instance event verified under the
//!   state's sealed release policy and whose launcher is the state's
//!   ([`Peer`], made by the caller with [`Ledger::policy_for`]);
//! - a state is sealed once; starting over is the operator's explicit act
//!   elsewhere, never a second seal;
//! - a claim takes a newer epoch, and only once the holder of the current
//!   one has been silent for the lease and its margin: a holder that still
//!   renews its lease cannot be fenced by a newcomer;
//! - commits and heartbeats come from the holder of the current epoch
//!   only, commits with a newer version and the current key.
//!
//! Times are the custodian's monotonic milliseconds.

use std::collections::{BTreeSet, HashMap};

use nostr::PublicKey;

use super::message::{Call, Claimed, Reply};
use super::{CLAIM_MARGIN_MS, LEASE_MS};

/// Most an epoch may grow in one claim, so that no claim can use up the
/// epochs (claimers ask for the current one plus one).
pub const MAX_EPOCH_STEP: u64 = 1 << 20;
use crate::event::{npub, Mode};
use crate::release::ReleasePolicy;
use crate::state::record::SecretString;
use crate::state::{KeyId, StateIdentity, StateKey};

/// A requester as the caller verified it: its instance event checked under
/// the state's sealed policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its service key (the instance event's author, who signed the request).
    pub service: PublicKey,
    /// Its launcher (the instance signature's author).
    pub launcher: PublicKey,
    /// The mode its launcher runs it in.
    pub mode: Mode,
    /// When its instance event expires (unix seconds): it is a peer until then.
    pub expires_at: u64,
}

/// How much a custodian keeps, and how long a holder's lease protects it.
#[derive(Debug, Clone, Copy)]
pub struct LedgerLimits {
    /// States over all launchers.
    pub max_states: usize,
    /// States per launcher.
    pub per_launcher: usize,
    /// How long after a holder was last heard of another may claim (ms):
    /// the lease and the margin ([`LEASE_MS`] + [`CLAIM_MARGIN_MS`]). Never
    /// below what holders serve on, or two could serve at once; only tests
    /// shorten it.
    pub claim_after_ms: u64,
}

impl Default for LedgerLimits {
    fn default() -> Self {
        Self {
            max_states: 1000,
            per_launcher: 16,
            claim_after_ms: LEASE_MS + CLAIM_MARGIN_MS,
        }
    }
}

/// What a seal hands a custodian.
#[derive(Debug)]
pub struct Sealed {
    /// The state key.
    pub key: StateKey,
    /// The release policy the state is sealed with.
    pub policy: ReleasePolicy,
    /// The custodian set's launchers.
    pub custodians: Vec<PublicKey>,
    /// The snapshot's version.
    pub version: u64,
    /// The snapshot's hash.
    pub hash: [u8; 32],
}

/// Why a custodian refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The state's launcher is not one this custodian serves.
    NotServed,
    /// The requester's launcher is not the state's.
    WrongLauncher,
    /// A seal of a state already sealed.
    AlreadySealed,
    /// Nothing is held of this state here (never sealed, or this
    /// custodian restarted): not a vote for an empty state.
    NotHeld,
    /// The custodian or the launcher's quota is full.
    Full,
    /// A claim of an epoch not above the current one.
    StaleEpoch {
        /// The current epoch.
        current: u64,
    },
    /// The current holder's lease may still run.
    Leased {
        /// When a claim may succeed.
        retry_in_ms: u64,
    },
    /// A commit or heartbeat from other than the current epoch's holder:
    /// the requester must stop serving.
    Fenced {
        /// The current epoch.
        current: u64,
    },
    /// A commit of a version not above the current one.
    StaleVersion {
        /// The current version.
        current: u64,
    },
    /// A commit under a key that is not the state's current one.
    WrongKey,
    /// The requester runs in another mode than the state was sealed in.
    WrongMode,
    /// The request does not read.
    Malformed(String),
    /// A requester not verified lately must bring this many bits of
    /// proof of work (NIP-13) first.
    PowRequired(u8),
}

impl Refusal {
    /// A short code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotServed => "not-served",
            Self::WrongLauncher => "wrong-launcher",
            Self::AlreadySealed => "already-sealed",
            Self::NotHeld => "not-held",
            Self::Full => "full",
            Self::StaleEpoch { .. } => "stale-epoch",
            Self::Leased { .. } => "leased",
            Self::Fenced { .. } => "fenced",
            Self::StaleVersion { .. } => "stale-version",
            Self::WrongKey => "wrong-key",
            Self::WrongMode => "wrong-mode",
            Self::Malformed(_) => "malformed",
            Self::PowRequired(_) => "pow-required",
        }
    }

    /// The refusal as a reply.
    pub fn reply(&self) -> Reply {
        let (current_epoch, retry_in_ms) = match self {
            Self::StaleEpoch { current } | Self::Fenced { current } => (Some(*current), None),
            Self::Leased { retry_in_ms } => (None, Some(*retry_in_ms)),
            _ => (None, None),
        };
        Reply::Refused {
            code: self.code().to_owned(),
            reason: self.to_string(),
            current_epoch,
            retry_in_ms,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotServed => f.write_str("this custodian does not keep state for that launcher"),
            Self::WrongLauncher => f.write_str("the requester's launcher is not the state's"),
            Self::AlreadySealed => {
                f.write_str("this state is sealed already: restore it, or abandon it explicitly")
            }
            Self::NotHeld => f.write_str("this custodian holds nothing of this state"),
            Self::Full => f.write_str("this custodian keeps no more states for that launcher"),
            Self::StaleEpoch { current } => {
                write!(f, "epoch {current} is current; claim a newer one")
            }
            Self::Leased { retry_in_ms } => write!(
                f,
                "the enclave serving this state renewed its lease lately; claim again in {} s",
                retry_in_ms.div_ceil(1000)
            ),
            Self::Fenced { current } => write!(
                f,
                "epoch {current} is held by another enclave: stop serving this state"
            ),
            Self::StaleVersion { current } => write!(f, "version {current} is committed already"),
            Self::WrongKey => f.write_str("that key does not seal this state now"),
            Self::WrongMode => f.write_str("the requester runs in another mode than the state's"),
            Self::Malformed(e) => write!(f, "malformed request: {e}"),
            Self::PowRequired(bits) => write!(
                f,
                "a custody request from an enclave not verified lately needs {bits} bits of proof of work (NIP-13)"
            ),
        }
    }
}

/// One state, as a custodian holds it.
struct Held {
    key: StateKey,
    policy: ReleasePolicy,
    mode: Mode,
    custodians: Vec<PublicKey>,
    /// The newest epoch claimed.
    epoch: u64,
    /// The epoch that committed the current version (its snapshot was
    /// sealed in it): a record of a newer epoch wins over a higher version
    /// of an older one, as a ballot does in Paxos.
    commit_epoch: u64,
    version: u64,
    hash: [u8; 32],
    holder: PublicKey,
    /// The holder committed or renewed in its epoch: it may serve, and its
    /// lease must run out before another claims. An unconfirmed holder
    /// never served, and a newer claim pre-empts it at once.
    confirmed: bool,
    /// When the holder last claimed, committed or renewed (ms).
    holder_seen: u64,
}

impl Held {
    /// Makes `version` of `epoch` (with `hash`, and under `key` if given)
    /// current, as its holder asked: within an epoch versions only grow.
    fn advance(
        &mut self,
        epoch: u64,
        version: u64,
        hash: [u8; 32],
        key: Option<StateKey>,
        now: u64,
    ) -> Result<Reply> {
        if epoch == self.commit_epoch && version <= self.version {
            return Err(Refusal::StaleVersion {
                current: self.version,
            });
        }
        if let Some(key) = key {
            self.key = key;
        }
        self.commit_epoch = epoch;
        self.version = version;
        self.hash = hash;
        self.confirmed = true;
        self.holder_seen = now;
        Ok(Reply::Ok { epoch, version })
    }
}

/// Every state a custodian holds.
pub struct Ledger {
    limits: LedgerLimits,
    serves: BTreeSet<PublicKey>,
    /// This custodian's own launcher: a seal must name it in its set.
    own: Option<PublicKey>,
    states: HashMap<StateIdentity, Held>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("states", &self.states.len())
            .field("serves", &self.serves.len())
            .finish()
    }
}

type Result<T> = std::result::Result<T, Refusal>;

fn bad(e: impl std::fmt::Display) -> Refusal {
    Refusal::Malformed(e.to_string())
}

impl Ledger {
    /// Keeps state for the launchers in `serves` only.
    pub fn new(limits: LedgerLimits, serves: impl IntoIterator<Item = PublicKey>) -> Self {
        Self {
            limits,
            serves: serves.into_iter().collect(),
            own: None,
            states: HashMap::new(),
        }
    }

    /// Keeps only states whose sealed custodian set names `launcher`, this
    /// custodian's own: a state sealed with other custodians is theirs to
    /// keep, and holding it here would let this one vote on it.
    pub fn with_own_launcher(mut self, launcher: PublicKey) -> Self {
        self.own = Some(launcher);
        self
    }

    /// How many states are held.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// The release policy `call`'s requester must be verified under: the
    /// one a seal brings, else the one the state was sealed with.
    pub fn policy_for(&self, call: &Call) -> Result<ReleasePolicy> {
        let identity = call.state().identity().map_err(bad)?;
        if !self.serves.contains(identity.launcher()) {
            return Err(Refusal::NotServed);
        }
        match call {
            Call::Seal { policy, .. } => ReleasePolicy::from_json(policy.as_bytes()).map_err(bad),
            _ => self
                .states
                .get(&identity)
                .map(|h| h.policy.clone())
                .ok_or(Refusal::NotHeld),
        }
    }

    /// Keeps a new state: its first epoch is 1, held by `peer`. Only ever
    /// epoch 1: a custodian that restarted and holds nothing is never
    /// filled again by a holder, since another live instance of the same
    /// launcher may still hold the state, and the launcher would then vote
    /// twice.
    pub fn seal(
        &mut self,
        peer: &Peer,
        identity: &StateIdentity,
        sealed: Sealed,
        now: u64,
    ) -> Result<Reply> {
        let Sealed {
            key,
            policy,
            custodians,
            version,
            hash,
        } = sealed;
        self.check_launcher(peer, identity)?;
        if self.states.contains_key(identity) {
            return Err(Refusal::AlreadySealed);
        }
        let of_launcher = self
            .states
            .keys()
            .filter(|i| i.launcher() == identity.launcher())
            .count();
        if self.states.len() >= self.limits.max_states || of_launcher >= self.limits.per_launcher {
            return Err(Refusal::Full);
        }
        self.states.insert(
            identity.clone(),
            Held {
                key,
                policy,
                mode: peer.mode,
                custodians,
                epoch: 1,
                commit_epoch: 1,
                version,
                hash,
                holder: peer.service,
                confirmed: true,
                holder_seen: now,
            },
        );
        Ok(Reply::Ok { epoch: 1, version })
    }

    /// `peer` takes the state in `epoch`: the answer carries what the
    /// custodian holds. The holder itself may claim again (a retry, maybe
    /// of a newer epoch after a partial claim) without waiting; a claim
    /// never renews a lease.
    pub fn claim(
        &mut self,
        peer: &Peer,
        identity: &StateIdentity,
        epoch: u64,
        now: u64,
    ) -> Result<Claimed> {
        self.check_launcher(peer, identity)?;
        let held = self.states.get_mut(identity).ok_or(Refusal::NotHeld)?;
        if peer.mode != held.mode {
            return Err(Refusal::WrongMode);
        }
        let newer = epoch > held.epoch;
        if newer && epoch - held.epoch > MAX_EPOCH_STEP {
            return Err(Refusal::Malformed(format!(
                "epoch {epoch} jumps more than {MAX_EPOCH_STEP} past the current {}",
                held.epoch
            )));
        }
        if peer.service == held.holder {
            if newer {
                held.epoch = epoch;
                held.confirmed = false;
            }
        } else {
            if !newer {
                return Err(Refusal::StaleEpoch {
                    current: held.epoch,
                });
            }
            let free_at = held.holder_seen.saturating_add(self.limits.claim_after_ms);
            if held.confirmed && now < free_at {
                return Err(Refusal::Leased {
                    retry_in_ms: free_at - now,
                });
            }
            held.epoch = epoch;
            held.holder = peer.service;
            held.confirmed = false;
            held.holder_seen = now;
        }
        Ok(Claimed {
            epoch: held.epoch,
            commit_epoch: held.commit_epoch,
            version: held.version,
            hash: hex::encode(held.hash),
            key: SecretString(zeroize::Zeroizing::new(hex::encode(held.key.bytes()))),
            key_id: held.key.id().to_string(),
            policy: held.policy.to_json(),
            custodians: held.custodians.iter().map(PublicKey::to_hex).collect(),
        })
    }

    /// Snapshot `version` with `hash`, sealed in `epoch` under `key_id`,
    /// is current. Within an epoch versions only grow; a commit of a newer
    /// epoch than the record's replaces it whatever its version (its holder
    /// restored from a quorum, so it holds the newest acknowledged state;
    /// what an older holder wrote past that was never acknowledged).
    #[allow(clippy::too_many_arguments)]
    pub fn commit(
        &mut self,
        peer: &Peer,
        identity: &StateIdentity,
        epoch: u64,
        version: u64,
        hash: [u8; 32],
        key_id: KeyId,
        now: u64,
    ) -> Result<Reply> {
        let held = self.holder(peer, identity, epoch)?;
        if key_id != held.key.id() {
            return Err(Refusal::WrongKey);
        }
        held.advance(epoch, version, hash, None, now)
    }

    /// Makes `version`, sealed under `key`, current and forgets the old
    /// key: a commit that replaces the key, by the holder only.
    #[allow(clippy::too_many_arguments)]
    pub fn rekey(
        &mut self,
        peer: &Peer,
        identity: &StateIdentity,
        epoch: u64,
        version: u64,
        hash: [u8; 32],
        key: StateKey,
        now: u64,
    ) -> Result<Reply> {
        let held = self.holder(peer, identity, epoch)?;
        // A rekey changes the key: one key id never names two keys.
        if key.id() == held.key.id() && key.bytes() != held.key.bytes() {
            return Err(Refusal::WrongKey);
        }
        held.advance(epoch, version, hash, Some(key), now)
    }

    /// Renews the lease of `epoch`.
    pub fn heartbeat(
        &mut self,
        peer: &Peer,
        identity: &StateIdentity,
        epoch: u64,
        now: u64,
    ) -> Result<Reply> {
        let held = self.holder(peer, identity, epoch)?;
        held.confirmed = true;
        held.holder_seen = now;
        Ok(Reply::Ok {
            epoch,
            version: held.version,
        })
    }

    fn holder(&mut self, peer: &Peer, identity: &StateIdentity, epoch: u64) -> Result<&mut Held> {
        self.check_launcher(peer, identity)?;
        let held = self.states.get_mut(identity).ok_or(Refusal::NotHeld)?;
        if epoch != held.epoch || peer.service != held.holder {
            return Err(Refusal::Fenced {
                current: held.epoch,
            });
        }
        Ok(held)
    }

    fn check_launcher(&self, peer: &Peer, identity: &StateIdentity) -> Result<()> {
        if !self.serves.contains(identity.launcher()) {
            return Err(Refusal::NotServed);
        }
        if peer.launcher != *identity.launcher() {
            return Err(Refusal::WrongLauncher);
        }
        Ok(())
    }

    /// Who holds each state now, for the operator's log.
    pub fn holders(&self) -> Vec<(String, u64, String)> {
        self.states
            .iter()
            .map(|(i, h)| (i.to_string(), h.epoch, npub(&h.holder)))
            .collect()
    }
}

mod calls;
#[cfg(test)]
mod tests;
