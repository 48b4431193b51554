//! Taking a sealed state over after the enclave that held it died: three
//! custodians (the real signer's custody handler, in process), a real
//! parent keeping the chunks on disk, and the restore driver of the new
//! enclave. The custodians here renew a lease of 300 ms, not 40 s.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use common::parent_store::{parent, Parent};
use common::released::{custodian_with, now, Code, Enclave};
use enclave::continuity::restore::{
    commit, restore, seal_new, Custodians, Held, Patience, RestoreError,
};
use enclave::continuity::transport::ParentStorage;
use enclave::custody::{AdmissionLimits, KeyStore, Limits};
use enclave::link::ParentAddr;
use enclave::signer::{Signer, SignerConfig};
use nostr::{JsonUtil, Keys, PublicKey, RelayUrl};
use verifier::custodian::discover::CustodianInstance;
use verifier::custodian::ledger::LedgerLimits;
use verifier::custodian::message::{Call, Reply};
use verifier::grant::wire::source;
use verifier::grant::Policy;
use verifier::rpc::admin::KeptApps;
use verifier::state::{StateIdentity, StateRecord};
use zeroize::Zeroizing;

const LEASE: LedgerLimits = LedgerLimits {
    max_states: 16,
    per_launcher: 4,
    claim_after_ms: 300,
};

fn relay() -> RelayUrl {
    RelayUrl::parse("ws://127.0.0.1:1").unwrap()
}

/// Three custodians, which of them are down, and their instances.
struct World {
    code: Code,
    launcher: Keys,
    custodians: Vec<Signer>,
    at: Vec<CustodianInstance>,
    set: Vec<PublicKey>,
    down: Mutex<HashSet<usize>>,
    parent: Parent,
}

impl World {
    async fn new(name: &str) -> Self {
        let code = Code::new();
        let launcher = Keys::generate();
        let custodians: Vec<Signer> = (0..3)
            .map(|_| custodian_with(&code, &[&launcher], 0, LEASE))
            .collect();
        let set: Vec<PublicKey> = (0..3).map(|_| Keys::generate().public_key()).collect();
        let at = custodians
            .iter()
            .zip(&set)
            .map(|(c, l)| CustodianInstance {
                launcher: *l,
                service: c.service_key(),
                admin_relay: format!("ws://custodian-{}", &l.to_hex()[..8]),
                expiration: now() + 3600,
            })
            .collect();
        Self {
            code,
            custodians,
            at,
            set,
            down: Mutex::new(HashSet::new()),
            parent: parent(name, true).await,
            launcher,
        }
    }

    fn identity(&self) -> StateIdentity {
        StateIdentity::new(self.launcher.public_key(), "main").unwrap()
    }

    /// A new enclave of the launcher, with its signer and instance event.
    fn enclave(&self) -> Signer {
        let e = Enclave::of(&self.launcher);
        let signer = Signer::new(e.service.clone(), relay(), SignerConfig::default());
        signer
            .custody_client()
            .set_instance(self.code.instance_event(&e, 2).as_json());
        signer
    }

    /// The parent, over its metadata link, as the enclave reaches it.
    fn storage(&self) -> ParentStorage {
        ParentStorage {
            parent: ParentAddr::Tcp(self.parent.addr),
        }
    }

    /// `ours` restores through every custodian, patiently.
    async fn take_over(&self, ours: &Signer) -> Result<Held, RestoreError> {
        let through = Through { world: self, ours };
        restore(
            &self.identity(),
            &through,
            &self.at,
            &self.set,
            &self.storage(),
            quick(),
        )
        .await
    }

    fn set_down(&self, down: &[usize]) {
        *self.down.lock().unwrap() = down.iter().copied().collect();
    }
}

/// The custodians as the enclave `ours` reaches them: its custody client,
/// the custodian's signer, and the reply back through `ours`.
struct Through<'a> {
    world: &'a World,
    ours: &'a Signer,
}

impl Custodians for Through<'_> {
    async fn call(&self, c: &CustodianInstance, call: Call) -> Result<Reply, String> {
        let i = self
            .world
            .at
            .iter()
            .position(|x| x.service == c.service)
            .ok_or("no such custodian")?;
        if self.world.down.lock().unwrap().contains(&i) {
            return Err("down".into());
        }
        let custodian = &self.world.custodians[i];
        let ours = self.ours;
        let deliver = |event: nostr::Event| async move {
            let outcome = custodian
                .try_handle(&event, &relay(), now())
                .map_err(|e| format!("{e:?}"))?;
            let reply = outcome.reply.ok_or("no reply")?;
            let _ = ours.try_handle(&reply.event, &relay(), now());
            Ok(())
        };
        self.ours
            .custody_client()
            .call(&c.service, call, 0, deliver)
            .await
            .map_err(|e| e.to_string())
    }
}

fn limits() -> Limits {
    Limits {
        admission: AdmissionLimits::off(),
        ..Limits::default()
    }
}

/// A store with one owner's key and one app, as CBOR.
fn state() -> (Zeroizing<Vec<u8>>, PublicKey, PublicKey) {
    let mut store = KeyStore::new(limits());
    let owner = Keys::generate();
    let user = owner.public_key();
    store
        .import(
            owner,
            vec![RelayUrl::parse("wss://r.example").unwrap()],
            KeptApps::Keep,
            0,
            now(),
        )
        .unwrap();
    let app = Keys::generate().public_key();
    store
        .grant(&user, app, &Policy::full(), source::GRANT, 0, now())
        .unwrap();
    (store.to_record(now()).to_cbor().unwrap(), user, app)
}

fn quick() -> Patience {
    Patience {
        rounds: 20,
        max_wait: Duration::from_millis(400),
    }
}

async fn seal(w: &World, first: &Signer, plaintext: Zeroizing<Vec<u8>>) -> Held {
    let through = Through {
        world: w,
        ours: first,
    };
    seal_new(
        &w.identity(),
        &through,
        &w.at,
        &w.set,
        &w.storage(),
        w.code.policy(2),
        plaintext,
    )
    .await
    .unwrap()
}

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
