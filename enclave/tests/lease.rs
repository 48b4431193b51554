//! The holder's lease against its custodians, in process (custodians that
//! let a successor claim 1.5 s after the holder was last heard of; a
//! holder lease of 1 s, renewed every 100 ms): a holder that renews
//! keeps successors out; a holder cut off from its custodians stops
//! serving before a successor can take over; and a holder that comes back
//! after that learns it was fenced.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use nostr::{Keys, RelayUrl};
use std::time::{Duration, Instant};

use common::custodians::Through;
use common::custodians::{seal, state, Owned, World};
use enclave::continuity::lease::{Lease, LeaseTimes};
use enclave::continuity::restore::{restore, Patience, RestoreError};
use verifier::custodian::ledger::LedgerLimits;

const TIMES: LeaseTimes = LeaseTimes {
    lease: Duration::from_millis(1000),
    renew_every: Duration::from_millis(100),
};

/// Custodians whose wait before a claim outlasts the holder's lease.
const CLAIM_AFTER: LedgerLimits = LedgerLimits {
    max_states: 16,
    per_launcher: 4,
    claim_after_ms: 1500,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewing_holder_keeps_successors_out() {
    let w = Arc::new(World::with_limits("lease-held", CLAIM_AFTER).await);
    let first = Arc::new(w.enclave());
    let held = seal(&w, &first, state().0).await;
    let lease = Lease::new(TIMES, held.lease_from);
    let holder = Owned {
        world: Arc::clone(&w),
        ours: first,
    };
    let (identity, at, set) = (w.identity(), w.at.clone(), w.set.clone());
    let keeping = lease.clone();
    let keeper = tokio::spawn(async move { keeping.keep(&holder, &identity, 1, &at, &set).await });
    let second = w.enclave();
    let successor = Through {
        world: &w,
        ours: &second,
    };
    let patience = Patience {
        rounds: 4,
        max_wait: Duration::from_millis(150),
    };
    let taken = restore(
        &w.identity(),
        &successor,
        &w.at,
        &w.set,
        &w.storage(),
        patience,
    )
    .await;
    assert!(matches!(taken, Err(RestoreError::NoQuorum(_))), "{taken:?}");
    assert!(lease.holds());
    assert!(!keeper.is_finished(), "the lease ended");
    keeper.abort();
}

#[tokio::test]
async fn a_holder_cut_off_stops_before_a_successor_starts_and_learns_it_was_fenced() {
    let w = World::with_limits("lease-cut", CLAIM_AFTER).await;
    let first = w.enclave();
    let held = seal(&w, &first, state().0).await;
    let lease = Lease::new(TIMES, held.lease_from);
    let holder = Through {
        world: &w,
        ours: &first,
    };
    // The parent drops every custody message of the holder from now on
    // (here: every custodian is out of reach for a while).
    w.set_down(&[0, 1, 2]);
    first.set_lease(lease.clone());
    let why = lease.keep(&holder, &w.identity(), 1, &w.at, &w.set).await;
    let stopped = Instant::now();
    assert!(why.contains("no quorum"), "{why}");
    assert!(!lease.holds());
    // It answers nothing any more.
    let request = verifier::rpc::seal_request(
        &Keys::generate(),
        &first.service_key(),
        verifier::event::KIND_ADMIN,
        &verifier::rpc::admin::AdminRequest::Ping.to_request(),
        verifier::rpc::cipher::Scheme::Nip44,
    )
    .unwrap();
    let relay = RelayUrl::parse("ws://127.0.0.1:1").unwrap();
    assert_eq!(
        first
            .try_handle(&request, &relay, common::released::now())
            .unwrap_err(),
        enclave::signer::Dropped::LeaseLost
    );
    w.set_down(&[]);
    let second = w.enclave();
    let successor = Through {
        world: &w,
        ours: &second,
    };
    let restored = restore(
        &w.identity(),
        &successor,
        &w.at,
        &w.set,
        &w.storage(),
        Patience::default(),
    )
    .await
    .unwrap();
    // The successor's epoch was committed only after the holder stopped.
    assert!(restored.lease_from > stopped);
    // The old holder, still running, tries to renew: it is told.
    let again = Lease::new(TIMES, Instant::now());
    let why = again.keep(&holder, &w.identity(), 1, &w.at, &w.set).await;
    assert!(why.contains("successor"), "{why}");
    assert!(again.fenced() && !again.holds());
}

/// Custodians that answer heartbeats as scripted: the first `ok` with `Ok`
/// in the holder's epoch, the others "fenced" naming `current`.
struct Scripted {
    ok: usize,
    current: u64,
    at: Vec<verifier::custodian::discover::CustodianInstance>,
}

impl enclave::continuity::restore::Custodians for Scripted {
    async fn call(
        &self,
        c: &verifier::custodian::discover::CustodianInstance,
        call: verifier::custodian::message::Call,
    ) -> Result<verifier::custodian::message::Reply, String> {
        use verifier::custodian::message::{Call, Reply};
        let Call::Heartbeat { epoch, .. } = call else {
            return Err("only heartbeats".into());
        };
        let i = self
            .at
            .iter()
            .position(|a| a.launcher == c.launcher)
            .unwrap();
        Ok(if i < self.ok {
            Reply::Ok { epoch, version: 1 }
        } else {
            Reply::Refused {
                code: "fenced".into(),
                reason: format!("epoch {} is held by another enclave", self.current),
                current_epoch: Some(self.current),
                retry_in_ms: None,
            }
        })
    }
}

/// A custodian still on an older epoch (it missed this holder's claim)
/// answers "fenced" too; only a newer epoch means a successor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_newer_epoch_fences_a_holder() {
    let at: Vec<_> = (0..3)
        .map(|i| verifier::custodian::discover::CustodianInstance {
            launcher: Keys::generate().public_key(),
            service: Keys::generate().public_key(),
            admin_relay: format!("ws://custodian-{i}"),
            expiration: u64::MAX,
        })
        .collect();
    let set: Vec<_> = at.iter().map(|c| c.launcher).collect();
    let identity =
        verifier::state::StateIdentity::new(Keys::generate().public_key(), "main").unwrap();
    let behind = Scripted {
        ok: 2,
        current: 1,
        at: at.clone(),
    };
    let lease = Lease::new(TIMES, Instant::now());
    let kept = tokio::time::timeout(
        Duration::from_millis(1500),
        lease.keep(&behind, &identity, 2, &at, &set),
    )
    .await;
    assert!(kept.is_err(), "the lease ended: {kept:?}");
    assert!(lease.holds() && !lease.fenced());
    let ahead = Scripted {
        ok: 2,
        current: 3,
        at: at.clone(),
    };
    let why = lease.keep(&ahead, &identity, 2, &at, &set).await;
    assert!(why.contains("successor"), "{why}");
    assert!(lease.fenced() && !lease.holds());
}
