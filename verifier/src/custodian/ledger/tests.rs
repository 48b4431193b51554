use super::*;
use crate::custodian::message::{CustodyRequest, StateName};
use crate::state::record::SecretString;

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
        expires_at: u64::MAX,
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

/// A seal of version `version` with no set.
fn sealed(key: StateKey, policy: ReleasePolicy, version: u64, hash: [u8; 32]) -> Sealed {
    Sealed {
        key,
        policy,
        custodians: vec![],
        version,
        hash,
    }
}

impl World {
    fn seal(&mut self, by: &Peer, now: u64) -> Result<Reply> {
        let (key, policy) = (self.key.clone(), self.policy.clone());
        self.ledger
            .seal(by, &self.identity, sealed(key, policy, 1, [1; 32]), now)
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
        sealed(w.key.clone(), w.policy.clone(), 1, [0; 32]),
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
        ..LedgerLimits::default()
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

/// Three custodians of one state, sealed by `holder` at time 0.
fn three(holder: &Peer, w: &World) -> Vec<Ledger> {
    (0..3)
        .map(|_| {
            let mut l = Ledger::new(LedgerLimits::default(), [w.launcher]);
            l.seal(
                holder,
                &w.identity,
                sealed(w.key.clone(), w.policy.clone(), 1, [1; 32]),
                0,
            )
            .unwrap();
            l
        })
        .collect()
}

/// The service key of custodian `i`.
fn custodian_key(i: usize) -> PublicKey {
    let secret = nostr::SecretKey::from_slice(&[i as u8 + 1; 32]).unwrap();
    nostr::Keys::new(secret).public_key()
}

/// `peer`'s claim of `epoch` at each of `at`: the accepted ones.
fn claim_at(
    ls: &mut [Ledger],
    at: &[usize],
    peer: &Peer,
    w: &World,
    epoch: u64,
    now: u64,
) -> Vec<(PublicKey, Claimed)> {
    at.iter()
        .filter_map(|i| {
            ls[*i]
                .claim(peer, &w.identity, epoch, now)
                .ok()
                .map(|c| (custodian_key(*i), c))
        })
        .collect()
}

#[test]
fn two_racers_cannot_both_take_an_epoch() {
    let w = world(LedgerLimits::default());
    let dead = peer(w.launcher);
    let mut ls = three(&dead, &w);
    let (a, b) = (peer(w.launcher), peer(w.launcher));
    // A reaches custodians 0 and 1, B then reaches 1 and 2, same epoch.
    let got_a = claim_at(&mut ls, &[0, 1], &a, &w, 2, FREE);
    let got_b = claim_at(&mut ls, &[1, 2], &b, &w, 2, FREE + 1);
    assert_eq!(got_a.len(), 2);
    assert_eq!(got_b.len(), 1, "custodian 1 took epoch 2 once");
    assert!(crate::custodian::quorum::choose(&got_a, 3, 2).is_ok());
    assert!(crate::custodian::quorum::choose(&got_b, 3, 2).is_err());
}

#[test]
fn a_split_vote_resolves_because_unconfirmed_holders_can_be_preempted() {
    let w = world(LedgerLimits::default());
    let dead = peer(w.launcher);
    let mut ls = three(&dead, &w);
    let racers = [peer(w.launcher), peer(w.launcher), peer(w.launcher)];
    // Each racer takes one custodian in epoch 2: no quorum for anyone.
    for (i, r) in racers.iter().enumerate() {
        assert_eq!(claim_at(&mut ls, &[i], r, &w, 2, FREE).len(), 1);
    }
    // Their retries, in turn, never see a lease: none of them ever served.
    let winner = &racers[0];
    let got = claim_at(&mut ls, &[0, 1, 2], winner, &w, 3, FREE + 5);
    assert_eq!(got.len(), 3);
    // The holder's own retry with a newer epoch adopts it.
    assert_eq!(
        ls[0].claim(winner, &w.identity, 4, FREE + 6).unwrap().epoch,
        4
    );
    assert!(ls[0].heartbeat(winner, &w.identity, 4, FREE + 7).is_ok());
    // Now confirmed: a newcomer waits out the lease.
    assert!(matches!(
        ls[0].claim(&racers[1], &w.identity, 5, FREE + 8),
        Err(Refusal::Leased { .. })
    ));
}

#[test]
fn what_a_fenced_holder_wrote_past_its_successor_never_comes_back() {
    // H holds epoch 1; v10 is committed everywhere.
    let w = world(LedgerLimits::default());
    let h = peer(w.launcher);
    let mut ls = three(&h, &w);
    for l in &mut ls {
        l.commit(&h, &w.identity, 1, 10, [10; 32], w.key.id(), 1)
            .unwrap();
    }
    // Cut off from custodians 1 and 2, H goes on committing at 0 only.
    for v in 11..=15 {
        ls[0]
            .commit(&h, &w.identity, 1, v, [v as u8; 32], w.key.id(), 2)
            .unwrap();
    }
    // S claims epoch 2 at 1 and 2, restores v10, writes v11 sealed in
    // epoch 2 and commits it there: the owner is told "ok".
    let s = peer(w.launcher);
    let t = 2 + FREE;
    let got = claim_at(&mut ls, &[1, 2], &s, &w, 2, t);
    let restored = crate::custodian::quorum::choose(&got, 3, 2).unwrap();
    assert_eq!((restored.commit_epoch, restored.version), (1, 10));
    for i in [1, 2] {
        ls[i]
            .commit(&s, &w.identity, 2, 11, [111; 32], w.key.id(), t)
            .unwrap();
    }
    // S2 later reaches custodians 0 and 1 only: H's v15 must not win.
    let s2 = peer(w.launcher);
    let t = t + FREE;
    let got = claim_at(&mut ls, &[0, 1], &s2, &w, 3, t);
    let chosen = crate::custodian::quorum::choose(&got, 3, 3).unwrap();
    assert_eq!((chosen.commit_epoch, chosen.version), (2, 11));
    assert_eq!(chosen.snapshot_hash().unwrap(), [111; 32]);
    // And once S2 commits in epoch 3, custodian 0 drops H's branch.
    ls[0]
        .commit(&s2, &w.identity, 3, 12, [112; 32], w.key.id(), t)
        .unwrap();
    let again = ls[0].claim(&s2, &w.identity, 3, t + 1).unwrap();
    assert_eq!((again.commit_epoch, again.version), (3, 12));
}

#[test]
fn epochs_cannot_be_used_up_and_the_custodian_set_is_checked() {
    let mut w = world(LedgerLimits::default());
    let p = peer(w.launcher);
    w.seal(&p, 0).unwrap();
    let other = peer(w.launcher);
    assert!(matches!(
        w.ledger.claim(&other, &w.identity, u64::MAX, FREE),
        Err(Refusal::Malformed(_))
    ));
    assert_eq!(
        w.ledger
            .claim(&other, &w.identity, 1 + MAX_EPOCH_STEP, FREE)
            .unwrap()
            .epoch,
        1 + MAX_EPOCH_STEP
    );
    let fresh = world(LedgerLimits::default());
    let mut ledger = fresh.ledger;
    let sealer = peer(fresh.launcher);
    let call = |custodians: Vec<String>| Call::Seal {
        state: StateName::of(&fresh.identity),
        key: SecretString(zeroize::Zeroizing::new(hex::encode(fresh.key.bytes()))),
        key_id: fresh.key.id().to_string(),
        policy: fresh.policy.to_json(),
        custodians,
        version: 1,
        hash: hex::encode([1; 32]),
    };
    let c = nostr::Keys::generate().public_key().to_hex();
    for bad in [vec![c.clone(), c.clone()], vec![fresh.launcher.to_hex()]] {
        let reply = ledger.handle(&sealer, &call(bad), 0);
        assert!(matches!(reply, Reply::Refused { .. }), "{reply:?}");
    }
    assert!(matches!(
        ledger.handle(&sealer, &call(vec![c]), 0),
        Reply::Ok { .. }
    ));
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
        key: SecretString(zeroize::Zeroizing::new(hex::encode(w.key.bytes()))),
        key_id: w.key.id().to_string(),
        policy: w.policy.to_json(),
        custodians: vec![nostr::Keys::generate().public_key().to_hex()],
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

#[test]
fn only_the_holder_rekeys_and_the_old_key_is_gone() {
    let mut w = world(LedgerLimits::default());
    let holder = peer(w.launcher);
    w.seal(&holder, 0).unwrap();
    let new_key = StateKey::generate().unwrap();
    // Another enclave of the launcher, not the holder: refused.
    let other = peer(w.launcher);
    assert!(w
        .ledger
        .rekey(&other, &w.identity, 1, 2, [2; 32], new_key.clone(), 1)
        .is_err());
    // Not newer than what is committed: refused.
    assert_eq!(
        w.ledger
            .rekey(&holder, &w.identity, 1, 1, [2; 32], new_key.clone(), 1),
        Err(Refusal::StaleVersion { current: 1 })
    );
    assert_eq!(
        w.ledger
            .rekey(&holder, &w.identity, 1, 2, [2; 32], new_key.clone(), 1),
        Ok(Reply::Ok {
            epoch: 1,
            version: 2
        })
    );
    // A commit under the old key is refused now; under the new one it works.
    assert_eq!(
        w.ledger
            .commit(&holder, &w.identity, 1, 3, [3; 32], w.key.id(), 2),
        Err(Refusal::WrongKey)
    );
    assert!(w
        .ledger
        .commit(&holder, &w.identity, 1, 3, [3; 32], new_key.id(), 2)
        .is_ok());
    // A successor gets the new key only.
    let claimed = w
        .ledger
        .claim(&peer(w.launcher), &w.identity, 2, 2 + FREE)
        .unwrap();
    assert_eq!(claimed.state_key().unwrap().bytes(), new_key.bytes());
    assert_ne!(claimed.state_key().unwrap().bytes(), w.key.bytes());
}
