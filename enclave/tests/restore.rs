//! Taking a sealed state over after the enclave that held it died: three
//! custodians (the real signer's custody handler, in process), a real
//! parent keeping the chunks on disk, and the restore driver of the new
//! enclave. The custodians here renew a lease of 300 ms, not 40 s.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::custodians::{limits, quick, seal, state, Through, World, LEASE};
use common::released::custodian_with;
use enclave::continuity::restore::{commit, restore, seal_new, Held, Patience, RestoreError};
use enclave::custody::KeyStore;
use verifier::state::StateRecord;
use zeroize::Zeroizing;

#[tokio::test]
async fn a_successor_takes_the_state_over_and_the_predecessor_is_fenced() {
    let w = World::new("successor").await;
    let (plaintext, user, app) = state();
    let first = w.enclave();
    let held = seal(&w, &first, plaintext.clone()).await;
    assert_eq!((held.epoch, held.version), (1, 1));
    assert!(!format!("{held:?}").contains("plaintext"), "{held:?}");

    // The first enclave stops renewing; a new one starts, and custodian 0
    // is out of its reach.
    w.set_down(&[0]);
    let second = w.enclave();
    let restored = w.take_over(&second).await.unwrap();
    assert_eq!(restored.plaintext.as_slice(), plaintext.as_slice());
    assert_eq!((restored.epoch, restored.version), (2, 2));
    let store = KeyStore::from_record(
        limits(),
        vec![],
        None,
        &StateRecord::from_cbor(&restored.plaintext).unwrap(),
    )
    .unwrap();
    assert!(store.get(&user).unwrap().allows(&app));

    // The first comes back to life, reaches everyone, and commits its own
    // version 2: custodians 1 and 2 fence it, custodian 0 (which never
    // saw the successor) records it.
    w.set_down(&[]);
    let mut stale = Held {
        version: 2,
        plaintext: Zeroizing::new(b"the first enclave's branch".to_vec()),
        ..held
    };
    let through_first = Through {
        world: &w,
        ours: &first,
    };
    let err = commit(
        &w.identity(),
        &through_first,
        &w.at,
        &w.storage(),
        &mut stale,
        false,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("1 of the 3 custodians"), "{err}");
    assert!(err.to_string().contains("stop serving"), "{err}");

    // A third reaches custodians 0 and 1 only: both name a version 2, and
    // the one its epoch-2 successor committed wins.
    w.set_down(&[2]);
    let third = w.enclave();
    let again = w.take_over(&third).await.unwrap();
    assert_eq!((again.epoch, again.version), (3, 3));
    assert_eq!(again.plaintext.as_slice(), plaintext.as_slice());
}

#[tokio::test]
async fn a_launcher_that_names_fewer_custodians_gets_no_quorum() {
    let w = World::new("narrowed").await;
    let (plaintext, _, _) = state();
    seal(&w, &w.enclave(), plaintext).await;
    let next = w.enclave();
    let through = Through {
        world: &w,
        ours: &next,
    };
    let patience = Patience {
        rounds: 3,
        max_wait: Duration::from_millis(400),
    };
    // One custodian found, and the launcher says the set is that one.
    let err = restore(
        &w.identity(),
        &through,
        &w.at[..1],
        &w.set[..1],
        &w.storage(),
        patience,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RestoreError::NoQuorum(_)), "{err}");
    assert!(
        err.to_string().contains("a quorum of the sealed set is 2"),
        "{err}"
    );
}

#[tokio::test]
async fn a_new_state_is_not_sealed_over_a_live_one() {
    let mut w = World::new("reseal").await;
    let (plaintext, _, _) = state();
    seal(&w, &w.enclave(), plaintext.clone()).await;
    // Two custodians restart and come back empty.
    for i in [1, 2] {
        w.custodians[i] = custodian_with(&w.code, &[&w.launcher], 0, LEASE);
        w.at[i].service = w.custodians[i].service_key();
    }
    let e = w.enclave();
    let through = Through {
        world: &w,
        ours: &e,
    };
    let (identity, parent) = (w.identity(), w.storage());
    let again = |plaintext| {
        seal_new(
            &identity,
            &through,
            &w.at,
            &w.set,
            &parent,
            w.code.policy(2),
            plaintext,
        )
    };
    // The parent still has version 1 and writes it once.
    let err = again(plaintext.clone()).await.unwrap_err();
    assert!(err.to_string().contains("written once"), "{err}");
    // Its disk is lost too: the one custodian that still holds the state
    // stops the new seal, though two empty ones would take it.
    std::fs::remove_dir_all(w.parent.dir.join("state").join(w.identity().folder())).unwrap();
    let err = again(plaintext).await.unwrap_err();
    assert!(
        err.to_string().contains("holds this state already"),
        "{err}"
    );
}

#[tokio::test]
async fn one_custodian_down_is_fine_two_down_decide_nothing() {
    let w = World::new("down").await;
    let (plaintext, _, _) = state();
    seal(&w, &w.enclave(), plaintext.clone()).await;
    w.set_down(&[1]);
    let next = w.enclave();
    let restored = w.take_over(&next).await.unwrap();
    assert_eq!(restored.plaintext.as_slice(), plaintext.as_slice());
    w.set_down(&[0, 2]);
    let last = w.enclave();
    let through = Through {
        world: &w,
        ours: &last,
    };
    let patience = Patience {
        rounds: 3,
        max_wait: Duration::from_millis(100),
    };
    let err = restore(
        &w.identity(),
        &through,
        &w.at,
        &w.set,
        &w.storage(),
        patience,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RestoreError::NoQuorum(_)), "{err}");
}

#[tokio::test]
async fn nothing_sealed_is_said_and_never_taken_for_a_fresh_start() {
    let w = World::new("unsealed").await;
    let e = w.enclave();
    let err = w.take_over(&e).await.unwrap_err();
    assert_eq!(err, RestoreError::NotSealed);
    assert!(err.to_string().contains("--init-state"));
    // Two of the three saying so proves nothing: the third may hold it.
    let patience = Patience {
        rounds: 2,
        max_wait: Duration::from_millis(100),
    };
    let through = Through {
        world: &w,
        ours: &e,
    };
    let err = restore(
        &w.identity(),
        &through,
        &w.at[..2],
        &w.set,
        &w.storage(),
        patience,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RestoreError::NoQuorum(_)), "{err}");
}

#[tokio::test]
async fn a_parent_that_drops_or_rolls_back_the_snapshot_stops_the_restore() {
    let w = World::new("rollback").await;
    let (plaintext, _, _) = state();
    seal(&w, &w.enclave(), plaintext.clone()).await;
    // Version 2 of epoch 2, committed by a successor.
    let second = w.enclave();
    let through = Through {
        world: &w,
        ours: &second,
    };
    restore(
        &w.identity(),
        &through,
        &w.at,
        &w.set,
        &w.storage(),
        quick(),
    )
    .await
    .unwrap();
    let chunk_of = |epoch: u64, version: u64| {
        w.parent
            .dir
            .join("state")
            .join(w.identity().folder())
            .join(format!("{epoch:020}-{version:020}-{:010}", 1))
            .join(format!("{:010}.chunk", 0))
    };
    // The parent puts version 1 where version 2 is.
    std::fs::copy(chunk_of(1, 1), chunk_of(2, 2)).unwrap();
    let third = w.enclave();
    let err = w.take_over(&third).await.unwrap_err();
    assert!(err.to_string().contains("snapshot hash"), "{err}");
    // It deletes it: the custodians still name it, so nothing starts fresh.
    std::fs::remove_dir_all(chunk_of(2, 2).parent().unwrap()).unwrap();
    let fourth = w.enclave();
    let err = w.take_over(&fourth).await.unwrap_err();
    assert!(err.to_string().contains("keeps no snapshot 2.2"), "{err}");
}

#[tokio::test]
async fn owner_changes_are_committed_shared_and_never_reuse_a_version() {
    use enclave::continuity::persist::Persister;
    let w = World::new("persist").await;
    let first = w.enclave();
    let held = seal(&w, &first, Zeroizing::new(b"v1".to_vec())).await;
    let holder = Through {
        world: &w,
        ours: &first,
    };
    let persister = Persister::new(w.identity(), holder, w.at.clone(), w.storage(), held);
    // Five changes at once: each is acknowledged only once a snapshot
    // taken after it is committed; they share commits.
    let changes: Vec<u64> = (0..5).map(|_| persister.changed()).collect();
    let commits = std::sync::atomic::AtomicUsize::new(0);
    let persisted = futures_util::future::join_all(changes.iter().map(|c| {
        persister.persist(*c, || {
            commits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Zeroizing::new(b"after five changes".to_vec()))
        })
    }))
    .await;
    assert!(
        persisted.iter().all(|r| r.as_ref().is_ok_and(|v| *v == 2)),
        "{persisted:?}"
    );
    assert_eq!(commits.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Custodians out of reach: the change is not acknowledged, and its
    // version is spent.
    w.set_down(&[0, 1]);
    let change = persister.changed();
    let err = persister
        .persist(change, || Ok(Zeroizing::new(b"lost".to_vec())))
        .await
        .unwrap_err();
    assert!(matches!(err, RestoreError::NoQuorum(_)), "{err}");
    w.set_down(&[]);
    let version = persister
        .persist(change, || Ok(Zeroizing::new(b"after six changes".to_vec())))
        .await
        .unwrap();
    assert_eq!(version, 4, "version 3 was spent by the failed commit");
    // A successor gets the last acknowledged state.
    let next = w.enclave();
    let restored = w.take_over(&next).await.unwrap();
    assert_eq!(restored.plaintext.as_slice(), b"after six changes");
    assert_eq!(restored.version, 5);
}

/// A custodian that missed a rekey (it was out of reach) holds the old key
/// and refuses a plain commit under the new one: it is sent the version
/// with the current key instead, so it counts again, and a successor gets
/// one key from everyone.
#[tokio::test]
async fn a_custodian_that_missed_a_rekey_catches_up() {
    let w = World::new("rekey-catch-up").await;
    let first = w.enclave();
    let mut held = seal(&w, &first, state().0).await;
    let through = Through {
        world: &w,
        ours: &first,
    };
    let old_key = held.key.id();
    // The deletion's rekey reaches custodians 0 and 1 only.
    w.set_down(&[2]);
    held.version = 2;
    commit(
        &w.identity(),
        &through,
        &w.at,
        &w.storage(),
        &mut held,
        true,
    )
    .await
    .unwrap();
    assert_ne!(held.key.id(), old_key);
    // The next plain commit reaches 1 and 2 only: 2 holds the old key, is
    // brought up to date, and the commit has its quorum.
    w.set_down(&[0]);
    held.version = 3;
    commit(
        &w.identity(),
        &through,
        &w.at,
        &w.storage(),
        &mut held,
        false,
    )
    .await
    .unwrap();
    w.set_down(&[0, 1]);
    held.version = 4;
    let err = commit(
        &w.identity(),
        &through,
        &w.at,
        &w.storage(),
        &mut held,
        false,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("1 of the 3"), "{err}");
    // A successor, with custodian 0 out of reach, restores version 4 or 3
    // under the new key, in a new epoch and again under a new key.
    w.set_down(&[0]);
    tokio::time::sleep(Duration::from_millis(LEASE.claim_after_ms + 50)).await;
    let second = w.enclave();
    let restored = w.take_over(&second).await.unwrap();
    assert_eq!(restored.epoch, 2);
    assert_ne!(restored.key.id(), held.key.id());
    assert_ne!(restored.key.id(), old_key);
}
