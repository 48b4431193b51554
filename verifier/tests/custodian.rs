//! Who a custodian answers: real (dev-chain) instance events with
//! maintainers' release signatures, checked under a state's sealed release
//! policy, and then the ledger's rules between a predecessor and a
//! successor of the same launcher.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use nostr::{JsonUtil, Keys};
use support::*;
use verifier::custodian::ledger::{Ledger, LedgerLimits, Refusal, Sealed};
use verifier::custodian::peer::verify_peer;
use verifier::custodian::{CLAIM_MARGIN_MS, LEASE_MS};
use verifier::event::{npub, Mode};
use verifier::release::{ReleasePolicy, ReleaseTrust};
use verifier::state::{StateIdentity, StateKey};

const REPO: &str = "https://github.com/nostrband/noauth-enclaved";

fn policy(maintainers: &[Keys], threshold: usize, floor: &str) -> ReleasePolicy {
    let npubs: Vec<String> = maintainers.iter().map(|k| npub(&k.public_key())).collect();
    ReleasePolicy {
        repository: REPO.into(),
        trust: ReleaseTrust::new(&npubs, threshold, Some(floor)).unwrap(),
    }
}

/// `w`'s instance event, released as `version` by the first `signers` of
/// `maintainers`.
fn released(w: &World, maintainers: &[Keys], signers: usize, version: &str) -> String {
    let mut parts = w.parts();
    parts.releases = maintainers
        .iter()
        .take(signers)
        .map(|k| w.release_event(k, version, Mode::Dev, w.code_pcrs()))
        .collect();
    w.event(&parts, |_| {}).as_json()
}

#[test]
fn only_released_code_of_the_policy_signed_by_its_service_key_is_a_peer() {
    let w = World::new();
    let m: Vec<Keys> = (0..3).map(|_| Keys::generate()).collect();
    let sealed = policy(&m, 2, "0.1.0");
    let service = w.service.public_key();
    let event = released(&w, &m, 2, "0.1.0");
    let peer = verify_peer(&event, &service, &sealed, &w.root(), CHECK_AT).unwrap();
    assert_eq!(peer.service, service);
    assert_eq!(peer.launcher, w.launcher.public_key());
    assert_eq!(peer.mode, Mode::Dev);

    let refused = |event: &str, signer, policy: &ReleasePolicy| {
        verify_peer(event, signer, policy, &w.root(), CHECK_AT).unwrap_err()
    };
    // Signed by someone else than the event's service key.
    let someone = Keys::generate().public_key();
    let err = refused(&event, &someone, &sealed);
    assert!(err.contains("not by the service key"), "{err}");
    // Released by too few, or by strangers.
    let err = refused(&released(&w, &m, 1, "0.1.0"), &service, &sealed);
    assert!(err.contains("release_signatures"), "{err}");
    let strangers: Vec<Keys> = (0..2).map(|_| Keys::generate()).collect();
    let err = refused(&released(&w, &strangers, 2, "0.1.0"), &service, &sealed);
    assert!(err.contains("release_signatures"), "{err}");
    // Below the sealed floor: a downgrade.
    let floor = policy(&m, 2, "0.2.0");
    let err = refused(&event, &service, &floor);
    assert!(err.contains("release_version"), "{err}");
    // Under another root (a forged attestation chain).
    let other = World::new();
    assert!(verify_peer(&event, &service, &sealed, &other.root(), CHECK_AT).is_err());
    // A policy with no maintainers releases nothing.
    let empty = ReleasePolicy::from_json(include_bytes!("../../release-policy.json")).unwrap();
    assert!(refused(&event, &service, &empty).contains("names no maintainers"));
    assert!(refused("not json", &service, &sealed).contains("refused"));
}

#[test]
fn a_successor_of_the_same_launcher_takes_over_and_the_predecessor_is_fenced() {
    // The successor: the same code and launcher, a new service key (a
    // new enclave, here on the same host).
    let mut w = World::new();
    let m: Vec<Keys> = (0..3).map(|_| Keys::generate()).collect();
    let sealed = policy(&m, 2, "0.1.0");
    let root = w.root();
    let peer = |w: &World| {
        let event = released(w, &m, 2, "0.1.0");
        verify_peer(&event, &w.service.public_key(), &sealed, &root, CHECK_AT).unwrap()
    };
    let p_old = peer(&w);
    w.service = Keys::generate();
    let p_new = peer(&w);
    let launcher = w.launcher.public_key();
    let identity = StateIdentity::new(launcher, "main").unwrap();
    let key = StateKey::generate().unwrap();
    let mut ledger = Ledger::new(LedgerLimits::default(), [launcher]);
    ledger
        .seal(
            &p_old,
            &identity,
            Sealed {
                key: key.clone(),
                policy: sealed.clone(),
                custodians: vec![],
                version: 1,
                hash: [1; 32],
            },
            0,
        )
        .unwrap();
    let free = LEASE_MS + CLAIM_MARGIN_MS;
    let claimed = ledger.claim(&p_new, &identity, 2, free).unwrap();
    assert_eq!(claimed.state_key().unwrap().bytes(), key.bytes());
    assert_eq!(
        ledger.heartbeat(&p_old, &identity, 1, free + 1),
        Err(Refusal::Fenced { current: 2 })
    );
    // Another launcher's enclave, released all the same, is not a peer of
    // this state.
    w.launcher = Keys::generate();
    let p_stranger = peer(&w);
    assert_eq!(
        ledger.claim(&p_stranger, &identity, 3, 10 * free),
        Err(Refusal::WrongLauncher)
    );
}

#[test]
fn each_launchers_current_custodian_is_found_and_a_missing_one_named() {
    use verifier::custodian::discover::current_custodians;
    let mut w = World::new();
    let m: Vec<Keys> = (0..3).map(|_| Keys::generate()).collect();
    let sealed = policy(&m, 2, "0.1.0");
    let parse = |json: &str| nostr::Event::from_json(json).unwrap();
    let first = (w.launcher.public_key(), w.service.public_key());
    let e1 = parse(&released(&w, &m, 2, "0.1.0"));
    w.launcher = Keys::generate();
    w.service = Keys::generate();
    let second = (w.launcher.public_key(), w.service.public_key());
    let e2 = parse(&released(&w, &m, 2, "0.1.0"));
    // A third launcher whose enclave runs code released by too few.
    w.launcher = Keys::generate();
    w.service = Keys::generate();
    let weak = w.launcher.public_key();
    let e3 = parse(&released(&w, &m, 1, "0.1.0"));
    let absent = Keys::generate().public_key();
    let mut options = w.options();
    options.release = Some(sealed.trust.clone());
    options.allow_dev_release = true;
    let launchers = [second.0, first.0, weak, absent];
    let (found, missing) = current_custodians([&e1, &e2, &e3], &launchers, &options);
    let got: Vec<_> = found.iter().map(|c| (c.launcher, c.service)).collect();
    assert_eq!(got, vec![second, first]);
    assert_eq!(found[0].admin_relay, "wss://relay.example");
    assert_eq!(missing.len(), 2);
    assert!(missing[0].contains("release_signatures"), "{missing:?}");
    assert!(missing[1].contains("no instance event"), "{missing:?}");
}
