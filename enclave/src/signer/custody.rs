//! Custody requests (kind 24136 to the service key): this enclave as a
//! custodian of other enclaves' state keys (`--custody-for`). The rules
//! are the verifier library's ([`verifier::custodian`]); this is their
//! place in the request path.
//!
//! What a stranger can make a custodian spend, and what bounds it:
//! - checking a requester's instance event (an attestation and its
//!   certificate path, a few ms) is done once per requester and policy
//!   and remembered for [`VERIFIED_FOR`], at most [`VERIFIED_KEPT`]
//!   requesters; a requester not remembered must bring `--custody-pow`
//!   bits of proof of work first, so checks cost the asker more than us;
//! - states are kept only for the launchers the operator lists, within
//!   the ledger's quotas;
//! - nothing is checked while the ledger's lock is held.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use nostr::PublicKey;
use tracing::{info, warn};
use verifier::attestation::TrustedRoot;
use verifier::custodian::ledger::{Ledger, LedgerLimits, Peer, Refusal};
use verifier::custodian::message::{Call, CustodyRequest, Reply};
use verifier::custodian::peer::verify_peer;
use verifier::event::npub;
use verifier::rpc::{Request, Response};

use super::{Change, Signer};

/// Requesters remembered as verified.
pub const VERIFIED_KEPT: usize = 256;
/// How long a verified requester is remembered (s), and never past its
/// instance event's expiry.
pub const VERIFIED_FOR: u64 = 600;

/// What a custodian serves and trusts.
#[derive(Debug, Clone)]
pub struct CustodyConfig {
    /// The launchers whose enclaves' state keys it keeps.
    pub serves: Vec<PublicKey>,
    /// How many states.
    pub limits: LedgerLimits,
    /// The root requesters' attestations must chain to.
    pub root: TrustedRoot,
    /// Proof of work asked of a requester not verified lately.
    pub pow_bits: u8,
    /// This enclave's own launcher, which a state's custodian set must
    /// name for this enclave to keep it (`None` in tests that do not care).
    pub own_launcher: Option<PublicKey>,
}

/// A custodian's state: its ledger and whom it verified lately.
pub struct Custodian {
    config: CustodyConfig,
    ledger: Mutex<Ledger>,
    verified: Mutex<Verified>,
    started: Instant,
}

impl std::fmt::Debug for Custodian {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Custodian")
            .field("serves", &self.config.serves.len())
            .finish_non_exhaustive()
    }
}

/// Requesters verified lately: by service key, the policy digest they
/// were verified under, and until when.
#[derive(Default)]
struct Verified {
    peers: HashMap<PublicKey, (Peer, [u8; 32], u64)>,
    order: VecDeque<PublicKey>,
}

impl Verified {
    /// Whether `sender` was verified lately, under any policy.
    fn knows(&self, sender: &PublicKey, now: u64) -> bool {
        self.peers
            .get(sender)
            .is_some_and(|(_, _, until)| *until > now)
    }

    fn get(&self, sender: &PublicKey, digest: &[u8; 32], now: u64) -> Option<Peer> {
        self.peers
            .get(sender)
            .filter(|(_, d, until)| d == digest && *until > now)
            .map(|(p, _, _)| *p)
    }

    fn insert(&mut self, peer: Peer, digest: [u8; 32], until: u64) {
        let sender = peer.service;
        if self.peers.insert(sender, (peer, digest, until)).is_none() {
            self.order.push_back(sender);
        }
        while self.peers.len() > VERIFIED_KEPT {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.peers.remove(&oldest);
        }
    }
}

impl Custodian {
    /// A custodian of `config`, holding nothing yet.
    pub fn new(config: CustodyConfig) -> Self {
        let mut ledger = Ledger::new(config.limits, config.serves.iter().copied());
        if let Some(own) = config.own_launcher {
            ledger = ledger.with_own_launcher(own);
        }
        Self {
            config,
            ledger: Mutex::new(ledger),
            verified: Mutex::new(Verified::default()),
            started: Instant::now(),
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Milliseconds on this custodian's monotonic clock.
    fn clock(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, Verified> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Answers `request` from `sender`, whose event carried `pow` bits.
    /// A sender not verified lately pays its proof of work before anything
    /// it sent is read further.
    pub fn answer(&self, sender: &PublicKey, request: &CustodyRequest, pow: u8, now: u64) -> Reply {
        let paid = pow >= self.config.pow_bits;
        if !paid && !self.verified().knows(sender, now) {
            return self.pow_needed();
        }
        let policy = match self.ledger().policy_for(&request.call) {
            Ok(p) => p,
            Err(refusal) => return refusal.reply(),
        };
        let digest = policy.digest();
        let known = self.verified().get(sender, &digest, now);
        let peer = match known {
            Some(peer) => peer,
            None if !paid => return self.pow_needed(),
            None => match verify_peer(&request.instance, sender, &policy, &self.config.root, now) {
                Ok(peer) => {
                    let until = (now + VERIFIED_FOR).min(peer.expires_at);
                    self.verified().insert(peer, digest, until);
                    peer
                }
                Err(e) => {
                    warn!(requester = %npub(sender), "custody: requester refused: {e}");
                    return Refusal::Malformed(e).reply();
                }
            },
        };
        let reply = self.ledger().handle(&peer, &request.call, self.clock());
        log(&peer, &request.call, &reply);
        reply
    }

    fn pow_needed(&self) -> Reply {
        Refusal::PowRequired(self.config.pow_bits).reply()
    }
}

fn log(peer: &Peer, call: &Call, reply: &Reply) {
    let state = format!("{}/{}", call.state().launcher, call.state().name);
    let who = npub(&peer.service);
    match (call, reply) {
        (Call::Heartbeat { .. } | Call::Commit { .. }, Reply::Ok { .. }) => {}
        (_, Reply::Refused { code, reason, .. }) => {
            info!(%state, requester = %who, %code, "custody: refused: {reason}");
        }
        (Call::Seal { .. }, _) => info!(%state, holder = %who, "custody: state sealed"),
        (Call::Rekey { version, .. }, _) => {
            info!(%state, holder = %who, version, "custody: state key replaced");
        }
        (Call::Claim { .. }, Reply::Claimed(c)) => {
            info!(%state, holder = %who, epoch = c.epoch, version = c.version, "custody: state claimed");
        }
        _ => {}
    }
}

/// Handles a custody request envelope from `sender` for `signer`.
pub fn handle(
    signer: &Signer,
    sender: &PublicKey,
    request: &Request,
    pow: u8,
    now: u64,
) -> (Response, Change) {
    let id = &request.id;
    let Some(custodian) = &signer.custodian else {
        let refused = Refusal::NotServed.reply();
        return (Response::ok(id, refused.to_json()), Change::None);
    };
    let reply = match CustodyRequest::from_rpc(request) {
        Ok(custody) => custodian.answer(sender, &custody, pow, now),
        Err(e) => return (Response::error(id, e.to_string()), Change::None),
    };
    (Response::ok(id, reply.to_json()), Change::None)
}
