use super::*;
use crate::custodian::message::CustodyRequest;

struct World {
    ledger: Ledger,
    identity: StateIdentity,
    launcher: PublicKey,
    key: StateKey,
    policy: ReleasePolicy,
}

fn policy() -> ReleasePolicy {
    let maintainer = nostr::Keys::generate().public_key().to_hex();
    let json = serde_json::json!({
        "repository": "https://example.org/enclaved",
        "maintainers": [maintainer],
        "threshold": 1,
        "min_version": "1.0.0",
    });
    ReleasePolicy::from_json(json.to_string().as_bytes()).unwrap()
}

fn peer(launcher: PublicKey) -> Peer {
    Peer {
        service: nostr::Keys::generate().public_key(),
        launcher,
        mode: Mode::Prod,
    }
}

fn world(limits: LedgerLimits) -> World {
    let launcher = nostr::Keys::generate().public_key();
    World {
        ledger: Ledger::new(limits, [launcher]),
        identity: StateIdentity::new(launcher, "main").unwrap(),
        launcher,
        key: StateKey::generate().unwrap(),
        policy: policy(),
    }
}

impl World {
    fn seal(&mut self, by: &Peer, now: u64) -> Result<Reply> {
        let (key, policy) = (self.key.clone(), self.policy.clone());
        self.ledger
            .seal(by, &self.identity, key, policy, vec![], 1, [1; 32], now)
    }
}

const FREE: u64 = LEASE_MS + CLAIM_MARGIN_MS;

#[test]
fn a_state_is_sealed_once_and_only_for_served_launchers() {
    let mut w = world(LedgerLimits::default());
    let first = peer(w.launcher);
    assert_eq!(
        w.seal(&first, 0),
        Ok(Reply::Ok {
            epoch: 1,
            version: 1
        })
    );
    assert_eq!(w.seal(&peer(w.launcher), 0), Err(Refusal::AlreadySealed));
    // Someone else's launcher, for this launcher's state.
    let stranger = peer(nostr::Keys::generate().public_key());
    assert_eq!(
        w.ledger.claim(&stranger, &w.identity, 9, FREE),
        Err(Refusal::WrongLauncher)
    );
    // A launcher this custodian does not serve.
    let other = StateIdentity::new(stranger.launcher, "main").unwrap();
    let refused = w.ledger.seal(
        &stranger,
        &other,
        w.key.clone(),
        w.policy.clone(),
        vec![],
        1,
        [0; 32],
        0,
    );
    assert_eq!(refused, Err(Refusal::NotServed));
    assert_eq!(w.ledger.len(), 1);
}

#[test]
fn quotas_bound_what_a_launcher_makes_a_custodian_keep() {
    let mut w = world(LedgerLimits {
        max_states: 10,
        per_launcher: 2,
    });
    let p = peer(w.launcher);
    for name in ["a", "b"] {
        w.identity = StateIdentity::new(w.launcher, name).unwrap();
        w.seal(&p, 0).unwrap();
    }
    w.identity = StateIdentity::new(w.launcher, "c").unwrap();
    assert_eq!(w.seal(&p, 0), Err(Refusal::Full));
}

#[test]
fn a_claim_waits_out_the_holders_lease_then_fences_it() {
    let mut w = world(LedgerLimits::default());
    let old = peer(w.launcher);
    w.seal(&old, 0).unwrap();
    w.ledger.heartbeat(&old, &w.identity, 1, 5_000).unwrap();
    let new = peer(w.launcher);
    assert_eq!(
        w.ledger.claim(&new, &w.identity, 2, 6_000).unwrap_err(),
        Refusal::Leased {
            retry_in_ms: 5_000 + FREE - 6_000
        }
    );
    assert_eq!(
        w.ledger
            .claim(&new, &w.identity, 1, 5_000 + FREE)
            .unwrap_err(),
        Refusal::StaleEpoch { current: 1 }
    );
    let claimed = w.ledger.claim(&new, &w.identity, 2, 5_000 + FREE).unwrap();
    assert_eq!((claimed.epoch, claimed.version), (2, 1));
    assert_eq!(claimed.state_key().unwrap().bytes(), w.key.bytes());
    assert!(!format!("{claimed:?}").contains(&hex::encode(w.key.bytes())));
    // The old enclave is fenced: it can neither commit nor renew.
    let t = 5_000 + FREE + 1;
    assert_eq!(
        w.ledger
            .commit(&old, &w.identity, 1, 2, [2; 32], w.key.id(), t),
        Err(Refusal::Fenced { current: 2 })
    );
    assert_eq!(
        w.ledger.heartbeat(&old, &w.identity, 2, t),
        Err(Refusal::Fenced { current: 2 })
    );
    // Nor claim back while the new one renews.
    w.ledger.heartbeat(&new, &w.identity, 2, t).unwrap();
    assert!(matches!(
        w.ledger.claim(&old, &w.identity, 3, t + 1),
        Err(Refusal::Leased { .. })
    ));
    // The holder's own retry gets its epoch back at once.
    assert_eq!(
        w.ledger.claim(&new, &w.identity, 2, t + 2).unwrap().epoch,
        2
    );
}

#[test]
fn two_racers_cannot_both_take_an_epoch() {
    let mut w = world(LedgerLimits::default());
    let dead = peer(w.launcher);
    w.seal(&dead, 0).unwrap();
    let (a, b) = (peer(w.launcher), peer(w.launcher));
    assert_eq!(w.ledger.claim(&a, &w.identity, 2, FREE).unwrap().epoch, 2);
    // B comes a moment later with a higher epoch: A's claim renewed the lease.
    assert!(matches!(
        w.ledger.claim(&b, &w.identity, 3, FREE + 10),
        Err(Refusal::Leased { .. })
    ));
    // Only A commits.
    assert!(w
        .ledger
        .commit(&a, &w.identity, 2, 2, [2; 32], w.key.id(), FREE + 20)
        .is_ok());
    assert!(w
        .ledger
        .commit(&b, &w.identity, 3, 3, [3; 32], w.key.id(), FREE + 20)
        .is_err());
}

#[test]
fn commits_need_a_newer_version_and_the_current_key() {
    let mut w = world(LedgerLimits::default());
    let p = peer(w.launcher);
    w.seal(&p, 0).unwrap();
    let id = w.key.id();
    assert_eq!(
        w.ledger.commit(&p, &w.identity, 1, 1, [9; 32], id, 1),
        Err(Refusal::StaleVersion { current: 1 })
    );
    let other = StateKey::generate().unwrap().id();
    assert_eq!(
        w.ledger.commit(&p, &w.identity, 1, 2, [9; 32], other, 1),
        Err(Refusal::WrongKey)
    );
    assert_eq!(
        w.ledger.commit(&p, &w.identity, 1, 2, [9; 32], id, 1),
        Ok(Reply::Ok {
            epoch: 1,
            version: 2
        })
    );
    // A successor learns version 2 and its hash.
    let next = peer(w.launcher);
    let claimed = w.ledger.claim(&next, &w.identity, 2, 1 + FREE).unwrap();
    assert_eq!(claimed.version, 2);
    assert_eq!(claimed.snapshot_hash().unwrap(), [9; 32]);
}

#[test]
fn a_dev_enclave_cannot_claim_a_prod_state() {
    let mut w = world(LedgerLimits::default());
    w.seal(&peer(w.launcher), 0).unwrap();
    let dev = Peer {
        mode: Mode::Dev,
        ..peer(w.launcher)
    };
    assert_eq!(
        w.ledger.claim(&dev, &w.identity, 2, FREE),
        Err(Refusal::WrongMode)
    );
}

#[test]
fn requests_travel_as_json_and_the_policy_comes_from_the_right_place() {
    let mut w = world(LedgerLimits::default());
    let p = peer(w.launcher);
    let seal = Call::Seal {
        state: StateName::of(&w.identity),
        key: hex::encode(w.key.bytes()),
        key_id: w.key.id().to_string(),
        policy: w.policy.to_json(),
        custodians: vec![p.service.to_hex()],
        version: 1,
        hash: hex::encode([1; 32]),
    };
    let request = CustodyRequest {
        instance: "{}".into(),
        call: seal,
    };
    let parsed = CustodyRequest::from_json(&request.to_json()).unwrap();
    assert_eq!(parsed, request);
    // Before the seal, a claim has no policy to be verified under.
    let claim = Call::Claim {
        state: StateName::of(&w.identity),
        epoch: 2,
    };
    assert_eq!(w.ledger.policy_for(&claim), Err(Refusal::NotHeld));
    assert_eq!(w.ledger.policy_for(&parsed.call), Ok(w.policy.clone()));
    let reply = w.ledger.handle(&p, &parsed.call, 0);
    assert_eq!(Reply::from_json(&reply.to_json()).unwrap(), reply);
    assert_eq!(
        reply,
        Reply::Ok {
            epoch: 1,
            version: 1
        }
    );
    // After it, the sealed policy, whatever a request brings.
    assert_eq!(w.ledger.policy_for(&claim), Ok(w.policy.clone()));
    let refused = w.ledger.handle(&peer(w.launcher), &claim, 1);
    let Reply::Refused {
        code, retry_in_ms, ..
    } = &refused
    else {
        panic!("{refused:?}")
    };
    assert_eq!((code.as_str(), retry_in_ms.is_some()), ("leased", true));
    let unknown = Call::Heartbeat {
        state: StateName {
            launcher: w.launcher.to_hex(),
            name: "../etc".into(),
        },
        epoch: 1,
    };
    assert!(matches!(
        w.ledger.handle(&p, &unknown, 2),
        Reply::Refused { .. }
    ));
    assert!(CustodyRequest::from_json(r#"{"instance":"{}","call":{"method":"delete"}}"#).is_err());
    assert!(
        CustodyRequest::from_json(&"x".repeat(super::super::message::MAX_CUSTODY_MESSAGE + 1))
            .is_err()
    );
}
