//! Key continuity at start, as `enclave run --state-id --custodian` does
//! it, on a LocalRelay: three custodians with their instance events on the
//! relay, a real parent, and enclaves of one launcher running their real
//! event loops. The first seals a new state (`--init-state`); an owner
//! imports a key and grants an app, then revokes another; the enclave is
//! stopped without warning; the next finds the custodians on the relay,
//! takes the state over, and holds the key, the grant and the revocation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::parent_store::parent;
use common::released::{custody_config, Code, Enclave};
use common::{local_relay, run_service, Raw};
use enclave::continuity::startup::{start, ContinuityConfig};
use enclave::link::ParentAddr;
use enclave::serve;
use enclave::signer::{SignerConfig, RESTORING};
use nostr::{JsonUtil, Keys, RelayUrl};
use nostr_relay_builder::RelayBuilder;
use verifier::attestation::TrustedRoot;
use verifier::custodian::ledger::LedgerLimits;
use verifier::rpc::admin::{AdminRequest, KeptApps};
use verifier::state::StateIdentity;

struct Running {
    service: serve::Service,
    task: tokio::task::JoinHandle<()>,
}

async fn run(service: serve::Service) -> Running {
    let task = run_service(service.clone()).await;
    Running { service, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_enclave_takes_its_keys_grants_and_revocations_back() {
    let relay = local_relay(RelayBuilder::default()).await;
    let url = RelayUrl::parse(&relay.url()).unwrap();
    let code = Code::new();
    let launcher = Keys::generate();
    let limits = LedgerLimits {
        claim_after_ms: 300,
        ..LedgerLimits::default()
    };
    // Three custodians, each of its own launcher, announced on the relay.
    let mut custodians = Vec::new();
    let mut set = Vec::new();
    let publisher = Raw::new(&url).await;
    for _ in 0..3 {
        let e = Enclave::of(&Keys::generate());
        set.push(e.launcher.public_key());
        let config = custody_config(&code, &[&launcher], 0, limits);
        let service = serve::Service::direct(e.service.clone(), url.clone(), config);
        custodians.push(run(service).await);
        publisher
            .send_event(&code.instance_event_on(&e, 2, url.as_str()))
            .await;
        // Strangers' junk, newer and tagged with the custodian's launcher,
        // fewer than the enclave reads per custodian: the real one is found.
        let junk: Vec<nostr::Event> = (0..10)
            .map(|n| {
                nostr::EventBuilder::new(nostr::Kind::from_u16(63793), format!("junk {n}"))
                    .tag(
                        nostr::Tag::parse(["p", &e.launcher.public_key().to_hex(), "launcher"])
                            .unwrap(),
                    )
                    .custom_created_at(nostr::Timestamp::from_secs(common::released::now() + 1))
                    .sign_with_keys(&Keys::generate())
                    .unwrap()
            })
            .collect();
        for event in &junk {
            publisher.send_event(event).await;
        }
    }
    let p = parent("continuity-start", true).await;
    let root = TrustedRoot::from_der_or_pem(code.chain.root.der()).unwrap();
    let policy = code.policy(2);
    let config = |init: bool, abandon: bool| ContinuityConfig {
        identity: StateIdentity::new(launcher.public_key(), "main").unwrap(),
        custodians: set.clone(),
        init,
        abandon,
        relays: vec![url.clone()],
        parent: ParentAddr::Tcp(p.addr),
        pow_bits: 0,
    };
    // An enclave of the launcher, restoring (or sealing) before it serves.
    let enclave = |init: bool, abandon: bool| {
        let (code, url, root, policy, config) = (
            &code,
            url.clone(),
            root.clone(),
            policy.clone(),
            config(init, abandon),
        );
        let launcher = launcher.clone();
        async move {
            let e = Enclave::of(&launcher);
            let service = serve::Service::direct(e.service.clone(), url, SignerConfig::default());
            service.signer.set_restoring(true);
            let running = run(service).await;
            let service = &running.service;
            service
                .signer
                .custody_client()
                .set_instance(code.instance_event(&e, 2).as_json());
            let fetcher = enclave::relay::fetch_client(None);
            let started = start(service, &fetcher, &config, &root, &policy)
                .await
                .unwrap();
            service.set_persist(started.persist);
            service.signer.set_restoring(false);
            serve::sync(service).await;
            running
        }
    };

    let first = enclave(true, false).await;
    let service_key = first.service.signer.service_key();
    let owner = Keys::generate();
    let mut raw = Raw::with_keys(&url, owner.clone()).await;
    let import = AdminRequest::ImportKey {
        keys: owner.clone(),
        relays: vec![url.clone()],
        apps: KeptApps::Keep,
    };
    assert_eq!(raw.admin(&service_key, &import).await, Ok("ok".into()));
    let (agent, revoked) = (Keys::generate().public_key(), Keys::generate().public_key());
    for app in [agent, revoked] {
        let grant = AdminRequest::Grant {
            app,
            policy: verifier::grant::Policy::full(),
        };
        assert_eq!(raw.admin(&service_key, &grant).await, Ok("ok".into()));
    }
    let revoke = AdminRequest::RevokeApp { app: revoked };
    assert!(raw.admin(&service_key, &revoke).await.is_ok());
    // Stopped without warning: nothing runs after this.
    first.task.abort();

    let second = enclave(false, false).await;
    {
        let store = second.service.signer.store();
        let key = store.get(&owner.public_key()).expect("the key came back");
        assert!(key.allows(&agent));
        assert!(!key.allows(&revoked));
    }
    // Its owner finds it at the new enclave.
    let service_key = second.service.signer.service_key();
    assert_eq!(
        raw.admin(&service_key, &AdminRequest::HasKey).await,
        Ok("true".into())
    );
    // A request made before the state was installed is not taken (the
    // restored state does not carry the ids of the requests that made it).
    let old = verifier::rpc::seal_request(
        &owner,
        &service_key,
        verifier::event::KIND_ADMIN,
        &AdminRequest::HasKey.to_request(),
        verifier::rpc::cipher::Scheme::Nip44,
    )
    .unwrap();
    let stale = nostr::EventBuilder::new(old.kind, old.content.clone())
        .tags(old.tags.clone())
        .custom_created_at(nostr::Timestamp::from_secs(common::released::now() - 30))
        .sign_with_keys(&owner)
        .unwrap();
    assert_eq!(
        second
            .service
            .signer
            .try_handle(&stale, &url, common::released::now())
            .unwrap_err(),
        enclave::signer::Dropped::Stale
    );
    // A third, started while the second holds the state, is kept out
    // (here: its restore would wait, so only the answer while restoring
    // is checked).
    let e = Enclave::of(&launcher);
    let waiting = serve::Service::direct(e.service.clone(), url.clone(), SignerConfig::default());
    waiting.signer.set_restoring(true);
    let waiting = run(waiting).await;
    let err = raw
        .admin(&waiting.service.signer.service_key(), &AdminRequest::HasKey)
        .await
        .unwrap_err();
    assert_eq!(err, RESTORING);
    waiting.task.abort();
    second.task.abort();

    // The operator abandons the state: the next enclave takes it over
    // unread and starts over with no keys, and says since when; the one
    // after it restores that, reset and empty.
    let abandoning = enclave(false, true).await;
    let reset_at = {
        let store = abandoning.service.signer.store();
        assert!(store.get(&owner.public_key()).is_none());
        assert_eq!(store.len(), 0);
        store.reset_at().expect("the reset is recorded")
    };
    abandoning.task.abort();
    let after = enclave(false, false).await;
    {
        let store = after.service.signer.store();
        assert_eq!(store.len(), 0);
        assert_eq!(store.reset_at(), Some(reset_at));
    }
    for r in custodians.iter().chain([&after]) {
        r.task.abort();
    }
    drop(relay);
}
