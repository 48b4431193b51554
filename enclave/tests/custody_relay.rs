//! Custody through a real relay: three custodians and two successive
//! enclaves of one launcher, each the real signer with its subscriptions
//! and event loop on a LocalRelay, and a real parent keeping the chunks.
//! The first seals a state; the second, started after it, takes it over
//! with the restore driver, every custody request and reply crossing the
//! relay, with proof of work asked of requesters not verified lately.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use common::parent_store::parent;
use common::released::{custody_config, now, Code, Enclave};
use common::{local_relay, run_service as run};
use enclave::continuity::restore::{restore, seal_new, Patience};
use enclave::continuity::transport::{ParentStorage, RelayCustodians};
use enclave::link::ParentAddr;
use enclave::serve;
use enclave::signer::SignerConfig;
use nostr::{JsonUtil, Keys, PublicKey, RelayUrl};
use nostr_relay_builder::RelayBuilder;
use verifier::custodian::discover::CustodianInstance;
use verifier::custodian::ledger::LedgerLimits;
use verifier::state::StateIdentity;
use zeroize::Zeroizing;

#[tokio::test]
async fn a_state_is_sealed_and_taken_over_through_a_real_relay() {
    let relay = local_relay(RelayBuilder::default()).await;
    let url = RelayUrl::parse(&relay.url()).unwrap();
    let code = Code::new();
    let launcher = Keys::generate();
    let limits = LedgerLimits {
        claim_after_ms: 300,
        ..LedgerLimits::default()
    };
    let set: Vec<PublicKey> = (0..3).map(|_| Keys::generate().public_key()).collect();
    let mut tasks = Vec::new();
    let mut at = Vec::new();
    for custodian_launcher in &set {
        let config = custody_config(&code, &[&launcher], 8, limits);
        let service = serve::Service::direct(Keys::generate(), url.clone(), config);
        at.push(CustodianInstance {
            launcher: *custodian_launcher,
            service: service.signer.service_key(),
            admin_relay: url.to_string(),
            expiration: now() + 3600,
        });
        tasks.push(run(service).await);
    }
    let p = parent("relay", true).await;
    let storage = ParentStorage {
        parent: ParentAddr::Tcp(p.addr),
    };
    let identity = StateIdentity::new(launcher.public_key(), "main").unwrap();
    let enclave = || {
        let e = Enclave::of(&launcher);
        let service =
            serve::Service::direct(e.service.clone(), url.clone(), SignerConfig::default());
        service
            .signer
            .custody_client()
            .set_instance(code.instance_event(&e, 2).as_json());
        let custodians = RelayCustodians {
            signer: Arc::clone(&service.signer),
            subscriptions: service.subscriptions.clone(),
            pow_bits: 8,
        };
        (service, custodians)
    };

    let (first, through) = enclave();
    tasks.push(run(first).await);
    let state = Zeroizing::new(b"a state record".to_vec());
    let held = seal_new(
        &identity,
        &through,
        &at,
        &set,
        &storage,
        code.policy(2),
        state.clone(),
    )
    .await
    .unwrap();
    assert_eq!((held.epoch, held.version), (1, 1));

    let (second, through) = enclave();
    tasks.push(run(second).await);
    let restored = restore(
        &identity,
        &through,
        &at,
        &set,
        &storage,
        Patience::default(),
    )
    .await
    .unwrap();
    assert_eq!((restored.epoch, restored.version), (2, 2));
    assert_eq!(restored.plaintext.as_slice(), state.as_slice());
    for task in tasks {
        task.abort();
    }
}
