use nostr::Keys;
use verifier::grant::wire::source;
use verifier::grant::{Action, Decision, Method, Policy};
use verifier::rpc::admin::KeptApps;
use verifier::state::{SealedSnapshot, StateIdentity, StateKey};

use super::super::{AdmissionLimits, ConnectError, StoreError};
use super::*;

fn limits() -> Limits {
    Limits {
        admission: AdmissionLimits::off(),
        ..Limits::default()
    }
}

fn relay(n: usize) -> RelayUrl {
    RelayUrl::parse(&format!("wss://r{n}.example")).unwrap()
}

fn sign(kind: u16) -> Action {
    Action {
        kind: Some(kind),
        ..Action::method(Method::SignEvent)
    }
}

/// A store with a bit of everything: an owned key with a rate-limited
/// app, a revoked app, a spent and a pending bunker secret and a log; a
/// test key.
struct Scene {
    store: KeyStore,
    owner: PublicKey,
    limited: PublicKey,
    revoked: PublicKey,
    connected: PublicKey,
    spent: String,
    pending: String,
}

const NOW: u64 = 1_800_000_000;

fn scene() -> Scene {
    let mut store = KeyStore::new(limits());
    store.set_perm_relays(vec![relay(9)]);
    store.set_admin_relay(relay(8));
    let owner_keys = Keys::generate();
    let owner = owner_keys.public_key();
    store
        .import(owner_keys, vec![relay(1)], KeptApps::Keep, 0, NOW)
        .unwrap();
    let limited = Keys::generate().public_key();
    let policy = Policy::from_json(r#"{"perms":"sign_event:1","uses":3,"rate":"2/10s"}"#).unwrap();
    store
        .grant(&owner, limited, &policy, source::GRANT, 0, NOW)
        .unwrap();
    for t in [NOW, NOW + 1, NOW + 2] {
        store.decide(&owner, &limited, &sign(1), t).unwrap();
    }
    store.decide(&owner, &limited, &sign(7), NOW + 3).unwrap();
    let revoked = Keys::generate().public_key();
    store
        .grant(
            &owner,
            revoked,
            &Policy::full(),
            source::CONNECT_KEY,
            0,
            NOW,
        )
        .unwrap();
    store.logout(&owner, &revoked, NOW + 4).unwrap();
    let spent = store
        .new_secret(&owner, Policy::full(), 0, NOW)
        .unwrap()
        .to_string();
    let pending = store
        .new_secret(&owner, Policy::full(), 0, NOW)
        .unwrap()
        .to_string();
    let connected = Keys::generate().public_key();
    store
        .connect(
            &owner,
            connected,
            Some(&spent),
            None,
            Some(r#"{"name":"x"}"#),
            NOW + 5,
        )
        .unwrap();
    store
        .generate_test_key(&Keys::generate().public_key(), vec![relay(2)], 0, NOW)
        .unwrap();
    Scene {
        store,
        owner,
        limited,
        revoked,
        connected,
        spent,
        pending,
    }
}

/// The store rebuilt from a snapshot of `store`, through everything a
/// restart goes through: record, CBOR, seal, open, CBOR, record.
fn restart(store: &KeyStore) -> KeyStore {
    let key = StateKey::generate().unwrap();
    let id = StateIdentity::new(Keys::generate().public_key(), "main").unwrap();
    let cbor = store.to_record(NOW + 6).to_cbor().unwrap();
    let sealed = SealedSnapshot::seal(&key, &id, 1, 1, [0; 32], &cbor).unwrap();
    let plain = sealed.reference.open(&key, &sealed.chunks).unwrap();
    let record = StateRecord::from_cbor(&plain).unwrap();
    KeyStore::from_record(limits(), vec![relay(9)], Some(relay(8)), &record).unwrap()
}

#[test]
fn a_restored_store_holds_the_same_record() {
    let s = scene();
    let restored = restart(&s.store);
    assert_eq!(restored.to_record(NOW + 6), s.store.to_record(NOW + 6));
    assert_eq!(restored.len(), 2);
    assert_eq!(restored.test_key_count(), 1);
    assert_eq!(restored.grant_memory(), s.store.grant_memory());
    assert_eq!(restored.relay_count(), s.store.relay_count());
    let views = |store: &KeyStore| -> Vec<_> {
        store
            .log()
            .entries(&s.owner, 0)
            .iter()
            .map(|e| e.view())
            .collect()
    };
    assert_eq!(views(&restored), views(&s.store));
    assert!(!views(&restored).is_empty());
}

#[test]
fn a_restored_store_decides_as_the_old_one_would() {
    let s = scene();
    let mut old = s.store;
    let mut new = restart(&old);
    // The same requests, to both: rate window, uses, perms, a revoked app.
    for (app, action, t) in [
        (s.limited, sign(1), NOW + 6),
        (s.limited, sign(1), NOW + 20),
        (s.limited, sign(1), NOW + 40),
        (s.limited, sign(7), NOW + 41),
        (s.revoked, sign(1), NOW + 42),
        (s.connected, sign(1), NOW + 43),
    ] {
        let a = old.decide(&s.owner, &app, &action, t);
        let b = new.decide(&s.owner, &app, &action, t);
        assert_eq!(a, b, "{action:?} at {t}");
    }
    assert_eq!(
        new.decide(&s.owner, &s.limited, &sign(1), NOW + 60),
        Some(Decision::Refused(verifier::grant::Refusal::UsedUp {
            uses: 3
        }))
    );
    assert_eq!(new.decide(&s.owner, &s.revoked, &sign(1), NOW + 60), None);
    // A spent secret stays spent; the pending one still connects.
    let app = Keys::generate().public_key();
    assert_eq!(
        new.connect(&s.owner, app, Some(&s.spent), None, None, NOW + 60),
        Err(StoreError::Connect(ConnectError::SecretSpent))
    );
    new.connect(&s.owner, app, Some(&s.pending), None, None, NOW + 60)
        .unwrap();
    // Its relays come back as changes, so its subscriptions are made.
    let changes = new.take_relay_changes();
    assert_eq!(changes.keys[&relay(1)].added.len(), 1);
    assert_eq!(changes.keys[&relay(2)].added.len(), 1);
    assert!(changes.owners[&relay(9)].added.contains(&s.owner));
    // The log goes on numbering after the restored entries.
    let last = |store: &KeyStore| {
        store
            .log()
            .entries(&s.owner, 0)
            .last()
            .map(|e| e.view().seq)
    };
    assert!(last(&new) > last(&old));
}

#[test]
fn a_record_that_does_not_read_restores_nothing() {
    let s = scene();
    let record = s.store.to_record(NOW);
    let restore = |r: &StateRecord| KeyStore::from_record(limits(), vec![], None, r);
    let mut twice = record.clone();
    twice.keys.push(twice.keys[0].clone());
    assert!(restore(&twice).unwrap_err().contains("twice"));
    let mut bad_relay = record.clone();
    bad_relay.keys[0].relays.push("not a relay".into());
    assert!(restore(&bad_relay).is_err());
    let mut bad_source = record.clone();
    let with_apps = bad_source
        .keys
        .iter_mut()
        .find(|k| !k.apps.is_empty())
        .unwrap();
    let dropped = with_apps.apps[0].app;
    let apps_before = with_apps.apps.len();
    with_apps.apps[0].source = "made-up".into();
    // An app that does not read is left out (it loses its access); the
    // rest comes back.
    let restored = restore(&bad_source).unwrap();
    let back = restored.to_record(NOW);
    let key = back.keys.iter().find(|k| !k.apps.is_empty()).unwrap();
    assert_eq!(key.apps.len(), apps_before - 1);
    assert!(key.apps.iter().all(|a| a.app != dropped));
    assert_eq!(back.keys.len(), record.keys.len());
    let mut bad_secret = record.clone();
    bad_secret.keys[0].secret.0.fill(0xff);
    assert!(restore(&bad_secret).is_err());
}
