//! Owner changes through the real event loop with key continuity: the
//! enclave runs on a LocalRelay with its store committed to three
//! custodians (in process) and a real parent. An owner's import is
//! answered "ok" only once a quorum committed it, and a successor holds
//! the key; with the custodians out of reach, the owner is told the change
//! is not confirmed instead.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use common::custodians::{Owned, World};
use common::released::Enclave;
use common::{local_relay, Raw, WAIT};
use enclave::continuity::persist::{Persister, StorePersister};
use enclave::continuity::restore::seal_new;
use enclave::serve;
use enclave::signer::{SignerConfig, UNCONFIRMED};
use nostr::{JsonUtil, Keys, RelayUrl};
use nostr_relay_builder::RelayBuilder;
use verifier::rpc::admin::{AdminRequest, KeptApps};
use verifier::state::StateRecord;

/// An enclave of `w`'s launcher serving on a LocalRelay, its new state
/// sealed with `w`'s custodians: the relay (kept alive), its URL, the
/// signer, the event loop, and the id of the key the state was sealed with.
async fn serving(
    w: &Arc<World>,
) -> (
    parent::dev_stack::relay::DevRelay,
    RelayUrl,
    Arc<enclave::signer::Signer>,
    tokio::task::JoinHandle<()>,
    verifier::state::KeyId,
) {
    let relay = local_relay(RelayBuilder::default()).await;
    let url = RelayUrl::parse(&relay.url()).unwrap();
    let e = Enclave::of(&w.launcher);
    let service = serve::Service::direct(e.service.clone(), url.clone(), SignerConfig::default());
    let signer = Arc::clone(&service.signer);
    signer
        .custody_client()
        .set_instance(w.code.instance_event(&e, 2).as_json());
    let reach = || Owned {
        world: Arc::clone(w),
        ours: Arc::clone(&signer),
    };
    let empty = signer.store().to_record(0).to_cbor().unwrap();
    let held = seal_new(
        &w.identity(),
        &reach(),
        &w.at,
        &w.set,
        &w.storage(),
        w.code.policy(2),
        empty,
    )
    .await
    .unwrap();
    let sealed_with = held.key.id();
    let persister = Persister::new(w.identity(), reach(), w.at.clone(), w.storage(), held);
    let service = service.with_persist(Arc::new(StorePersister::new(
        persister,
        Arc::clone(&signer),
    )));
    let (ready, is_ready) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(serve::run(service, ready));
    tokio::time::timeout(WAIT, is_ready).await.unwrap().unwrap();
    (relay, url, signer, task, sealed_with)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_is_ok_only_once_committed_and_a_successor_holds_it() {
    let w = Arc::new(World::new("owner-changes").await);
    let (relay, url, signer, task, _) = serving(&w).await;

    let owner = Keys::generate();
    let mut raw = Raw::with_keys(&url, owner.clone()).await;
    let import = AdminRequest::ImportKey {
        keys: owner.clone(),
        relays: vec![url.clone()],
        apps: KeptApps::Keep,
    };
    assert_eq!(
        raw.admin(&signer.service_key(), &import).await,
        Ok("ok".into())
    );

    // Custodians out of reach: a change is applied but not confirmed.
    w.set_down(&[0, 1, 2]);
    let bunker = AdminRequest::CreateBunkerUrl { policy: None };
    let err = raw.admin(&signer.service_key(), &bunker).await.unwrap_err();
    assert_eq!(err, UNCONFIRMED);
    // A read changes nothing and is answered as ever.
    assert_eq!(
        raw.admin(&signer.service_key(), &AdminRequest::HasKey)
            .await,
        Ok("true".into())
    );
    w.set_down(&[]);
    task.abort();

    // The enclave dies; a successor holds the imported key.
    let next = w.enclave();
    let restored = w.take_over(&next).await.unwrap();
    let record = StateRecord::from_cbor(&restored.plaintext).unwrap();
    assert_eq!(record.keys.len(), 1);
    // What the owner was told is not confirmed is not there.
    assert!(record.keys[0].secrets.is_empty());
    drop(relay);
}

/// `delete_key` is real: the commit that deletes the key also replaces the
/// state key at the custodians, so a successor gets a new key, under which
/// the snapshots that still hold the deleted key do not open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_replaces_the_state_key() {
    let w = Arc::new(World::new("owner-deletes").await);
    let (relay, url, signer, task, sealed_with) = serving(&w).await;
    let owner = Keys::generate();
    let mut raw = Raw::with_keys(&url, owner.clone()).await;
    let import = AdminRequest::ImportKey {
        keys: owner.clone(),
        relays: vec![url.clone()],
        apps: KeptApps::Keep,
    };
    assert_eq!(
        raw.admin(&signer.service_key(), &import).await,
        Ok("ok".into())
    );
    // The import's snapshot (epoch 1, version 2) holds the key.
    let storage = w.storage();
    let count = enclave::continuity::restore::Storage::count(&storage, &w.identity(), 1, 2)
        .await
        .unwrap();
    assert!(count.is_some());
    assert!(raw
        .admin(&signer.service_key(), &AdminRequest::DeleteKey)
        .await
        .is_ok());
    task.abort();

    let next = w.enclave();
    let restored = w.take_over(&next).await.unwrap();
    let record = StateRecord::from_cbor(&restored.plaintext).unwrap();
    assert!(record.keys.is_empty());
    assert_ne!(restored.key.id(), sealed_with);
    drop(relay);
}
