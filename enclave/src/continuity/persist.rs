//! Committing owner changes: a change is acknowledged to its owner only
//! once a snapshot taken after it is committed by a quorum
//! ([`Persister::persist`]). Concurrent changes share commits: a caller
//! whose change a commit already covers (its snapshot was taken after the
//! change) returns at once. A version is never used twice: a commit that
//! fails leaves its version spent, and the next one takes the following
//! version, so no custodian ever pairs a version with two snapshots.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Mutex;
use verifier::custodian::discover::CustodianInstance;
use verifier::state::StateIdentity;
use zeroize::Zeroizing;

use super::restore::{commit, Custodians, Held, RestoreError, Storage};
use crate::signer::Signer;

/// The state this enclave holds, and its commits.
pub struct Persister<C, S> {
    identity: StateIdentity,
    custodians: C,
    at: Vec<CustodianInstance>,
    storage: S,
    held: Mutex<Held>,
    /// Changes made so far (bumped by [`Self::changed`]).
    changes: AtomicU64,
    /// The changes the last commit covers.
    committed: AtomicU64,
    /// The next commit replaces the state key.
    rekey: AtomicBool,
}

impl<C, S> std::fmt::Debug for Persister<C, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persister")
            .field("identity", &self.identity)
            .field("changes", &self.changes.load(Ordering::SeqCst))
            .field("committed", &self.committed.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl<C: Custodians, S: Storage> Persister<C, S> {
    /// Commits for `held` (restored or sealed) of `identity`, through `at`.
    pub fn new(
        identity: StateIdentity,
        custodians: C,
        at: Vec<CustodianInstance>,
        storage: S,
        held: Held,
    ) -> Self {
        Self {
            identity,
            custodians,
            at,
            storage,
            held: Mutex::new(held),
            changes: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            rekey: AtomicBool::new(false),
        }
    }

    /// Makes the next commit replace the state key (a key was deleted).
    pub fn rekey(&self) {
        self.rekey.store(true, Ordering::SeqCst);
    }

    /// Records that the state changed; returns the change's number, to
    /// pass to [`Self::persist`].
    pub fn changed(&self) -> u64 {
        self.changes.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Returns once a snapshot taken after change `change` is committed by
    /// a quorum (taking one with `snapshot` if none is yet), with the
    /// version that covers it.
    pub async fn persist(
        &self,
        change: u64,
        snapshot: impl FnOnce() -> Result<Zeroizing<Vec<u8>>, String>,
    ) -> Result<u64, RestoreError> {
        let mut held = self.held.lock().await;
        if self.committed.load(Ordering::SeqCst) >= change {
            return Ok(held.version);
        }
        // Every change counted up to here is in the snapshot taken next.
        let covers = self.changes.load(Ordering::SeqCst);
        let plaintext = snapshot().map_err(RestoreError::Broken)?;
        held.version = held
            .version
            .checked_add(1)
            .ok_or_else(|| RestoreError::Broken("the versions are used up".into()))?;
        held.plaintext = plaintext;
        let rekey = self.rekey.swap(false, Ordering::SeqCst);
        // Armed again unless the commit succeeds, also when the caller
        // stops waiting (its timeout drops this future mid-commit): some
        // custodians may hold the new key already.
        let mut rearm = Rearm {
            flag: &self.rekey,
            armed: rekey,
        };
        let committed = commit(
            &self.identity,
            &self.custodians,
            &self.at,
            &self.storage,
            &mut held,
            rekey,
        )
        .await;
        if committed.is_ok() {
            rearm.armed = false;
        }
        committed?;
        self.committed.fetch_max(covers, Ordering::SeqCst);
        Ok(held.version)
    }

    /// Whether a change is not committed yet (a failed commit's).
    pub fn behind(&self) -> bool {
        self.committed.load(Ordering::SeqCst) < self.changes.load(Ordering::SeqCst)
    }

    /// The epoch this enclave holds.
    pub async fn epoch(&self) -> u64 {
        self.held.lock().await.epoch
    }
}

/// Sets `flag` again when dropped while `armed`.
struct Rearm<'a> {
    flag: &'a AtomicBool,
    armed: bool,
}

impl Drop for Rearm<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.flag.store(true, Ordering::SeqCst);
        }
    }
}

/// What the event loop asks of continuity, without knowing how custodians
/// and storage are reached ([`crate::serve::Service::with_persist`]).
pub trait PersistHook: Send + Sync {
    /// Records a change made to the store; its number.
    fn changed(&self) -> u64;
    /// Returns once change `change` is committed by a quorum.
    fn persist(
        &self,
        change: u64,
    ) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>>;
    /// Whether a change is not committed yet.
    fn behind(&self) -> bool;
    /// Makes the next commit replace the state key, so that snapshots
    /// taken before (which hold a deleted user key) cannot be opened
    /// through the custodians any more.
    fn rekey(&self);
}

/// The signer's whole store, committed through a [`Persister`].
pub struct StorePersister<C, S> {
    persister: Persister<C, S>,
    signer: Arc<Signer>,
}

impl<C, S> std::fmt::Debug for StorePersister<C, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.persister.fmt(f)
    }
}

impl<C: Custodians, S: Storage> StorePersister<C, S> {
    /// Commits `signer`'s store through `persister`.
    pub fn new(persister: Persister<C, S>, signer: Arc<Signer>) -> Self {
        Self { persister, signer }
    }
}

impl<C, S> PersistHook for StorePersister<C, S>
where
    C: Custodians + Send + Sync,
    S: Storage + Send + Sync,
{
    fn changed(&self) -> u64 {
        self.persister.changed()
    }

    fn behind(&self) -> bool {
        self.persister.behind()
    }

    fn rekey(&self) {
        self.persister.rekey();
    }

    fn persist(
        &self,
        change: u64,
    ) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>> {
        let signer = Arc::clone(&self.signer);
        Box::pin(async move {
            self.persister
                .persist(change, || {
                    let record = signer.store().to_record(crate::unix_now());
                    record
                        .to_cbor()
                        .map_err(|e| format!("the state does not encode: {e}"))
                })
                .await
                .map_err(|e| e.to_string())
        })
    }
}
