use super::*;
use nostr::Keys;
use verifier::grant::Policy;
use verifier::rpc::admin::KeptApps;

/// The defaults, without admission control (tested on its own below).
fn limits() -> Limits {
    Limits {
        admission: AdmissionLimits::off(),
        ..Limits::default()
    }
}

fn relay(n: usize) -> RelayUrl {
    RelayUrl::parse(&format!("wss://r{n}.example")).unwrap()
}

#[test]
fn import_updates_relays_and_counts_them() {
    let mut store = KeyStore::new(limits());
    let keys = Keys::generate();
    let pk = keys.public_key();
    assert!(
        store
            .import(keys.clone(), vec![relay(1), relay(2)], KeptApps::Keep, 0, 0)
            .unwrap()
            .new
    );
    assert_eq!(store.relay_count(), 2);
    assert!(
        !store
            .import(keys, vec![relay(3)], KeptApps::Keep, 0, 0)
            .unwrap()
            .new
    );
    assert_eq!(store.get(&pk).unwrap().relays(), &[relay(3)]);
    assert_eq!(store.relay_count(), 1);
    store.delete(&pk).unwrap();
    assert_eq!(store.relay_count(), 0);
    assert_eq!(store.delete(&pk), Err(StoreError::NoKey));
}

#[test]
fn relay_counts_lists_and_owners_follow_every_path_a_key_takes() {
    let mut store = KeyStore::new(limits());
    store.set_perm_relays(vec![relay(9)]);
    let owner = Keys::generate();
    let pk = owner.public_key();
    store
        .import(owner.clone(), vec![relay(1)], KeptApps::Keep, 0, 0)
        .unwrap();
    let requester = Keys::generate().public_key();
    let (test_key, _) = store
        .generate_test_key(&requester, vec![relay(1)], 0, 0)
        .unwrap();
    let changes = store.take_relay_changes();
    assert_eq!(changes.keys[&relay(1)].added.len(), 2);
    for relay in [relay(9), relay(1)] {
        let owned: Vec<_> = changes.owners[&relay].added.iter().collect();
        assert_eq!(owned, vec![&pk], "a test key has no owner");
    }
    assert_eq!(store.lists.len(), 1, "one list for both keys");
    // A test key that goes takes nothing from the owners.
    store.delete(&test_key).unwrap();
    let changes = store.take_relay_changes();
    assert!(changes.owners.is_empty());
    assert_eq!(changes.keys[&relay(1)].removed.len(), 1);
    assert_eq!(store.relays.users(&relay(1)), 1);
    // A test key its owner imports gets read on the permission relays.
    let (test_key, _) = store
        .generate_test_key(&requester, vec![relay(1)], 0, 0)
        .unwrap();
    let adopted = signing_keys(store.get(&test_key).unwrap().secret_key());
    store
        .import(adopted, vec![relay(1)], KeptApps::Keep, 0, 0)
        .unwrap();
    let changes = store.take_relay_changes();
    assert!(changes.owners[&relay(9)].added.contains(&test_key));
    // Moving and adding relays: counts and lists follow.
    store
        .import(owner.clone(), vec![relay(2)], KeptApps::Keep, 0, 0)
        .unwrap();
    let app = Keys::generate().public_key();
    store
        .nostrconnect(&test_key, app, &Policy::full(), None, &[relay(2)], 0, 0)
        .unwrap();
    assert_eq!(store.relays.users(&relay(1)), 1);
    assert_eq!(store.relays.users(&relay(2)), 2);
    assert_eq!(store.lists.len(), 2, "[r2] and [r1, r2]; [r1] is gone");
    assert_eq!(store.owners.users(&relay(1)), 1);
    assert_eq!(store.owners.users(&relay(2)), 2);
    assert_eq!(store.owners.users(&relay(9)), 2);
    store.delete(&pk).unwrap();
    store.delete(&test_key).unwrap();
    assert_eq!((store.relay_count(), store.lists.len()), (0, 0));
    let changes = store.take_relay_changes();
    assert_eq!(changes.owners[&relay(9)].removed.len(), 2);
    assert_eq!(store.owners.len(), 0);
}

#[test]
fn limits_hold() {
    let small = Limits {
        max_keys: 2,
        max_relays_per_key: 2,
        max_relays: 3,
        test_keys_per_hour: 1,
        ..limits()
    };
    let mut store = KeyStore::new(small);
    assert_eq!(
        store.import(
            Keys::generate(),
            vec![relay(1), relay(2), relay(3)],
            KeptApps::Keep,
            0,
            0
        ),
        Err(StoreError::TooManyRelaysPerKey(2))
    );
    store
        .import(
            Keys::generate(),
            vec![relay(1), relay(2)],
            KeptApps::Keep,
            0,
            0,
        )
        .unwrap();
    let k = Keys::generate();
    store
        .import(k.clone(), vec![relay(3)], KeptApps::Keep, 0, 0)
        .unwrap();
    // Replacing its own relay does not count against the overall limit.
    store
        .import(k, vec![relay(4)], KeptApps::Keep, 0, 0)
        .unwrap();
    assert_eq!(
        store.import(Keys::generate(), vec![relay(1)], KeptApps::Keep, 0, 0),
        Err(StoreError::Full(2))
    );
    let mut store = KeyStore::new(Limits {
        max_relays: 1,
        ..limits()
    });
    store
        .import(Keys::generate(), vec![relay(1)], KeptApps::Keep, 0, 0)
        .unwrap();
    assert_eq!(
        store.import(Keys::generate(), vec![relay(2)], KeptApps::Keep, 0, 0),
        Err(StoreError::TooManyRelays(1))
    );
}

#[test]
fn test_keys_are_rate_limited_and_expire() {
    let mut store = KeyStore::new(Limits {
        test_keys_per_hour: 2,
        test_key_ttl: 100,
        ..limits()
    });
    let who = Keys::generate().public_key();
    store
        .generate_test_key(&who, vec![relay(1)], 0, 1000)
        .unwrap();
    store
        .generate_test_key(&who, vec![relay(1)], 0, 1001)
        .unwrap();
    assert_eq!(
        store
            .generate_test_key(&who, vec![relay(1)], 0, 1002)
            .unwrap_err(),
        StoreError::TestKeyRate(2)
    );
    store
        .generate_test_key(&Keys::generate().public_key(), vec![relay(1)], 0, 1002)
        .unwrap();
    assert_eq!(store.expire(1099), 0);
    assert_eq!(store.expire(1101), 2);
    assert_eq!(store.len(), 1);
    assert!(store
        .generate_test_key(&who, vec![relay(1)], 0, 4601)
        .is_ok());
}

#[test]
fn secrets_are_single_use() {
    let limits = limits();
    let mut store = KeyStore::new(limits.clone());
    let who = Keys::generate().public_key();
    let (pk, secret) = store.generate_test_key(&who, vec![relay(1)], 0, 0).unwrap();
    let key = store.get_mut(&pk).unwrap();
    let (app1, app2) = (Keys::generate().public_key(), Keys::generate().public_key());
    assert_eq!(
        key.connect(app1, None, None, None, 1, &limits),
        Err(ConnectError::SecretRequired)
    );
    assert_eq!(
        key.connect(app1, Some("nope"), None, None, 1, &limits),
        Err(ConnectError::BadSecret)
    );
    key.connect(app1, Some(&secret), None, None, 1, &limits)
        .unwrap();
    assert!(key.allows(&app1));
    // Another app with the spent secret is told it was used.
    assert_eq!(
        key.connect(app2, Some(&secret), None, None, 1, &limits),
        Err(ConnectError::SecretSpent)
    );
    assert!(!key.allows(&app2));
    // An app already allowed reconnects with or without its spent secret.
    key.connect(app1, None, None, None, 2, &limits).unwrap();
    key.connect(app1, Some(&secret), None, None, 2, &limits)
        .unwrap();
    assert!(key.logout(&app1, 3).is_some());
    assert!(!key.allows(&app1));
}

#[test]
fn secrets_expire_and_are_bounded() {
    let limits = Limits {
        max_secrets_per_key: 2,
        secret_ttl: 10,
        ..limits()
    };
    let mut store = KeyStore::new(limits.clone());
    let k = Keys::generate();
    store
        .import(k.clone(), vec![relay(1)], KeptApps::Keep, 0, 0)
        .unwrap();
    let key = store.get_mut(&k.public_key()).unwrap();
    let first = key.new_secret(0, &limits, Policy::full());
    let second = key.new_secret(0, &limits, Policy::full());
    let _third = key.new_secret(0, &limits, Policy::full());
    let app = Keys::generate().public_key();
    // The oldest was dropped for the third; the second expired unused.
    assert_eq!(
        key.connect(app, Some(&first), None, None, 1, &limits),
        Err(ConnectError::SecretDropped)
    );
    assert_eq!(
        key.connect(app, Some(&second), None, None, 10, &limits),
        Err(ConnectError::SecretExpired)
    );
    // One never made is wrong.
    assert_eq!(
        key.connect(app, Some("a guess"), None, None, 10, &limits),
        Err(ConnectError::BadSecret)
    );
    // Only the last few ends are remembered; older ones are just wrong.
    for _ in 0..user_key::ENDED_SECRETS_KEPT + 2 {
        let _ = key.new_secret(20, &limits, Policy::full());
    }
    assert_eq!(
        key.connect(app, Some(&second), None, None, 20, &limits),
        Err(ConnectError::BadSecret)
    );
}

#[test]
fn debug_shows_no_secret() {
    let mut store = KeyStore::new(limits());
    let k = Keys::generate();
    store
        .import(k.clone(), vec![relay(1)], KeptApps::Keep, 0, 0)
        .unwrap();
    let shown = format!("{store:?}{:?}", store.get(&k.public_key()).unwrap());
    assert!(!shown.contains(&k.secret_key().to_secret_hex()));
}

#[test]
fn test_keys_have_their_own_slots() {
    let mut store = KeyStore::new(Limits {
        max_keys: 1,
        max_test_keys: 1,
        ..limits()
    });
    store
        .generate_test_key(&Keys::generate().public_key(), vec![relay(1)], 0, 0)
        .unwrap();
    assert_eq!(
        store
            .generate_test_key(&Keys::generate().public_key(), vec![relay(1)], 0, 0)
            .unwrap_err(),
        StoreError::TestKeysFull(1)
    );
    // A test key never takes an import's slot.
    store
        .import(Keys::generate(), vec![relay(1)], KeptApps::Keep, 0, 0)
        .unwrap();
    assert_eq!(store.len(), 2);
    assert_eq!(store.test_key_count(), 1);
}

#[test]
fn reimport_keeps_or_drops_apps_and_says_so() {
    let limits = limits();
    let mut store = KeyStore::new(limits.clone());
    let k = Keys::generate();
    store
        .import(k.clone(), vec![relay(1)], KeptApps::Keep, 0, 0)
        .unwrap();
    let app = Keys::generate().public_key();
    let key = store.get_mut(&k.public_key()).unwrap();
    key.grant(app, &Policy::full(), "grant", 0, &limits)
        .unwrap();
    let _pending = key.new_secret(0, &limits, Policy::full());
    let kept = store
        .import(k.clone(), vec![relay(2)], KeptApps::Keep, 0, 0)
        .unwrap();
    assert_eq!((kept.new, kept.apps_kept, kept.secrets_kept), (false, 1, 1));
    let dropped = store
        .import(k.clone(), vec![relay(2)], KeptApps::Drop, 0, 0)
        .unwrap();
    assert_eq!((dropped.apps_kept, dropped.secrets_kept), (0, 0));
    assert!(!store.get(&k.public_key()).unwrap().allows(&app));
}

#[test]
fn past_the_free_allowance_new_slots_cost_proof_of_work() {
    let mut store = KeyStore::new(Limits {
        max_keys: 100,
        admission: AdmissionLimits {
            free_keys_per_hour: 2,
            free_relays_per_hour: 100,
            ..AdmissionLimits::default()
        },
        ..Limits::default()
    });
    for _ in 0..2 {
        store
            .import(Keys::generate(), vec![relay(1)], KeptApps::Keep, 0, 10)
            .unwrap();
    }
    let err = store
        .import(Keys::generate(), vec![relay(1)], KeptApps::Keep, 0, 10)
        .unwrap_err();
    let StoreError::Pow(pow) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(pow.bits, 16);
    assert!(
        err.to_string().starts_with("pow-required: 16 bits"),
        "{err}"
    );
    store
        .import(Keys::generate(), vec![relay(1)], KeptApps::Keep, 16, 10)
        .unwrap();
    // Updating a key already held takes no new slot: free.
    let held = Keys::generate();
    store
        .import(held.clone(), vec![relay(1)], KeptApps::Keep, 20, 10)
        .unwrap();
    store
        .import(held, vec![relay(1)], KeptApps::Keep, 0, 11)
        .unwrap();
}

#[test]
fn grant_memory_is_counted_bounded_and_given_back() {
    use verifier::grant::{Perms, Rate, Rates};
    let mut store = KeyStore::new(Limits {
        max_grant_bytes: 64 << 10,
        ..limits()
    });
    let k = Keys::generate();
    let pk = k.public_key();
    store
        .import(k, vec![relay(1)], KeptApps::Keep, 0, 0)
        .unwrap();
    let scoped = Policy::new(Perms::parse("sign_event:1,sign_event:1111").unwrap());
    let app = Keys::generate().public_key();
    store.grant(&pk, app, &scoped, "grant", 0, 0).unwrap();
    let one = store.grant_bytes();
    assert!(one > 0 && one < 2048, "{one}");
    // Replacing a grant counts the difference, not twice.
    store.grant(&pk, app, &scoped, "grant", 0, 0).unwrap();
    assert_eq!(store.grant_bytes(), one);
    // A grant whose rate log could hold 10,000 entries counts them.
    let mut heavy = scoped.clone();
    heavy.rates = Rates::new(vec![Rate {
        count: 10_000,
        window: 86_400,
    }])
    .unwrap();
    assert_eq!(
        store.grant(&pk, Keys::generate().public_key(), &heavy, "grant", 0, 0),
        Err(StoreError::GrantsFull(0))
    );
    // Secrets count the app they may become; spending one gives back the rest.
    let secret = store.new_secret(&pk, scoped.clone(), 0, 0).unwrap();
    let with_secret = store.grant_bytes();
    assert!(with_secret > one);
    let spender = Keys::generate().public_key();
    store
        .connect(&pk, spender, Some(&secret), None, None, 1)
        .unwrap();
    assert_eq!(store.grant_bytes(), 2 * one);
    // Until the limit is reached, then nothing more is taken.
    while store.new_secret(&pk, scoped.clone(), 0, 0).is_ok() {}
    assert!(store.grant_bytes() <= 64 << 10);
    let _ = store.new_secret(&pk, scoped.clone(), 0, 0);
    // Expired secrets, revoked apps and deleted keys give it back.
    store.expire(limits().secret_ttl + 10);
    assert_eq!(store.grant_bytes(), 2 * one);
    assert_eq!(store.logout(&pk, &app, 20).map(|r| r.had), Ok(true));
    // The app is gone; the time of the revoke is kept (and counted).
    assert!(store.grant_bytes() < 2 * one && store.grant_bytes() > one);
    assert_eq!(store.grant_bytes(), store.get(&pk).unwrap().grant_bytes());
    store.delete(&pk).unwrap();
    assert_eq!(store.grant_bytes(), 0);
}

#[test]
fn grants_past_the_free_allowance_need_proof_of_work() {
    use verifier::grant::Perms;
    let mut store = KeyStore::new(Limits {
        admission: AdmissionLimits {
            free_grant_kib_per_hour: 2,
            ..AdmissionLimits::default()
        },
        ..Limits::default()
    });
    let k = Keys::generate();
    let pk = k.public_key();
    store
        .import(k, vec![relay(1)], KeptApps::Keep, 0, 0)
        .unwrap();
    let scoped = Policy::new(Perms::parse("sign_event:1").unwrap());
    store
        .grant(&pk, Keys::generate().public_key(), &scoped, "grant", 0, 0)
        .unwrap();
    let e = store.new_secret(&pk, scoped.clone(), 0, 0).unwrap_err();
    assert!(matches!(e, StoreError::Pow(ref p) if p.bits >= 16), "{e}");
    assert!(e.to_string().contains("new grants"), "{e}");
    assert!(store.new_secret(&pk, scoped, 28, 0).is_ok());
}

#[test]
fn secrets_revoked_by_a_reimport_say_so() {
    let limits = limits();
    let mut store = KeyStore::new(limits.clone());
    let k = Keys::generate();
    store
        .import(k.clone(), vec![relay(1)], KeptApps::Keep, 0, 0)
        .unwrap();
    let secret = store
        .get_mut(&k.public_key())
        .unwrap()
        .new_secret(0, &limits, Policy::full());
    store
        .import(k.clone(), vec![relay(1)], KeptApps::Drop, 1, 1)
        .unwrap();
    let key = store.get_mut(&k.public_key()).unwrap();
    let app = Keys::generate().public_key();
    assert_eq!(
        key.connect(app, Some(&secret), None, None, 2, &limits),
        Err(ConnectError::SecretDropped)
    );
}
