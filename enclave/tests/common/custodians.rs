//! A sealed state's world in process, for tests of the restore driver and
//! the lease: three custodians (the real signer's custody handler), which
//! of them are down, a real parent keeping the chunks, and new enclaves of
//! one launcher reaching the custodians through their custody clients.
//! The custodians here let a successor claim 300 ms after the holder was
//! last heard of, not 40 s.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use super::parent_store::{parent, Parent};
use super::released::{custodian_with, now, Code, Enclave};
use enclave::continuity::restore::{restore, seal_new, Custodians, Held, Patience, RestoreError};
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
use verifier::state::StateIdentity;
use zeroize::Zeroizing;

pub(crate) const LEASE: LedgerLimits = LedgerLimits {
    max_states: 16,
    per_launcher: 4,
    claim_after_ms: 300,
};

pub(crate) fn relay() -> RelayUrl {
    RelayUrl::parse("ws://127.0.0.1:1").unwrap()
}

/// Three custodians, which of them are down, and their instances.
pub(crate) struct World {
    pub(crate) code: Code,
    pub(crate) launcher: Keys,
    pub(crate) custodians: Vec<Signer>,
    pub(crate) at: Vec<CustodianInstance>,
    pub(crate) set: Vec<PublicKey>,
    down: Mutex<HashSet<usize>>,
    pub(crate) parent: Parent,
}

impl World {
    pub(crate) async fn new(name: &str) -> Self {
        Self::with_limits(name, LEASE).await
    }

    /// The world with custodians of `limits`.
    pub(crate) async fn with_limits(name: &str, limits: LedgerLimits) -> Self {
        let code = Code::new();
        let launcher = Keys::generate();
        let custodians: Vec<Signer> = (0..3)
            .map(|_| custodian_with(&code, &[&launcher], 0, limits))
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

    pub(crate) fn identity(&self) -> StateIdentity {
        StateIdentity::new(self.launcher.public_key(), "main").unwrap()
    }

    /// A new enclave of the launcher, with its signer and instance event.
    pub(crate) fn enclave(&self) -> Signer {
        let e = Enclave::of(&self.launcher);
        let signer = Signer::new(e.service.clone(), relay(), SignerConfig::default());
        signer
            .custody_client()
            .set_instance(self.code.instance_event(&e, 2).as_json());
        signer
    }

    /// The parent, over its metadata link, as the enclave reaches it.
    pub(crate) fn storage(&self) -> ParentStorage {
        ParentStorage {
            parent: ParentAddr::Tcp(self.parent.addr),
        }
    }

    /// `ours` restores through every custodian, patiently.
    pub(crate) async fn take_over(&self, ours: &Signer) -> Result<Held, RestoreError> {
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

    pub(crate) fn set_down(&self, down: &[usize]) {
        *self.down.lock().unwrap() = down.iter().copied().collect();
    }
}

/// The custodians as the enclave `ours` reaches them: its custody client,
/// the custodian's signer, and the reply back through `ours`.
pub(crate) struct Through<'a> {
    pub(crate) world: &'a World,
    pub(crate) ours: &'a Signer,
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

pub(crate) fn limits() -> Limits {
    Limits {
        admission: AdmissionLimits::off(),
        ..Limits::default()
    }
}

/// A store with one owner's key and one app, as CBOR.
pub(crate) fn state() -> (Zeroizing<Vec<u8>>, PublicKey, PublicKey) {
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

pub(crate) fn quick() -> Patience {
    Patience {
        rounds: 20,
        max_wait: Duration::from_millis(400),
    }
}

pub(crate) async fn seal(w: &World, first: &Signer, plaintext: Zeroizing<Vec<u8>>) -> Held {
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

/// The holder's reach, owned, for a task of its own: the custodians'
/// signers run in the caller's thread, so a successor's checks would
/// otherwise hold the holder's renewals up.
pub(crate) struct Owned {
    pub(crate) world: Arc<World>,
    pub(crate) ours: Arc<Signer>,
}

impl Custodians for Owned {
    async fn call(&self, c: &CustodianInstance, call: Call) -> Result<Reply, String> {
        Through {
            world: &self.world,
            ours: &self.ours,
        }
        .call(c, call)
        .await
    }
}
