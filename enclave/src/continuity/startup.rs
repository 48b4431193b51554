//! Key continuity at start, in production: find the custodians the
//! operator named (their launchers' current enclaves, on relays), then
//! take the state over from them, or seal a new one only when the
//! operator says so; install it in the signer; commit changes from then
//! on; keep the lease, and stop when it is lost.

use std::sync::Arc;
use std::time::Duration;

use nostr::{Filter, Kind, PublicKey, RelayUrl};
use nostr_sdk::Client;
use tracing::{info, warn};
use verifier::attestation::TrustedRoot;
use verifier::custodian::discover::{current_custodians, CustodianInstance};
use verifier::event::{KIND_ANNOUNCEMENT, KIND_INSTANCE};
use verifier::release::ReleasePolicy;
use verifier::state::{StateIdentity, StateRecord};
use verifier::verify::{CheckTime, Options};

use super::lease::{Lease, LeaseTimes};
use super::persist::{PersistHook, Persister, StorePersister};
use super::restore::{restore_or_abandon, seal_new, Patience};
use super::transport::{ParentStorage, RelayCustodians};
use crate::custody::KeyStore;
use crate::link::ParentAddr;
use crate::serve::Service;

/// What the operator chose (`enclave run --state-id … --custodian …`).
#[derive(Debug, Clone)]
pub struct ContinuityConfig {
    /// Whose state: this launcher's, under this name.
    pub identity: StateIdentity,
    /// The custodians' launchers.
    pub custodians: Vec<PublicKey>,
    /// Seal a new state (`--init-state`): refused where one is held.
    pub init: bool,
    /// Abandon the state and start over with no keys (`--abandon-state`).
    pub abandon: bool,
    /// Where custodians' instance events are looked for.
    pub relays: Vec<RelayUrl>,
    /// The parent, which keeps the sealed chunks.
    pub parent: ParentAddr,
    /// Proof of work put on custody requests.
    pub pow_bits: u8,
}

/// Instance events read per custodian named (newest first): junk events
/// tagged with a custodian's launcher can push its real one out only by
/// outnumbering this many newer ones.
pub const FOUND_PER_CUSTODIAN: usize = 32;

/// How long custodians' instance events are waited for.
pub const FIND_TIMEOUT: Duration = Duration::from_secs(15);

/// The running continuity: the hook the event loop commits through, and
/// the lease, kept until it is lost.
pub struct Running {
    /// Commits changes before they are acknowledged.
    pub persist: Arc<dyn PersistHook>,
    /// The custodian set the state is sealed with (launchers): what the
    /// enclave announces, not what the operator named.
    pub set: Vec<PublicKey>,
    /// Renews the lease until it is lost; returns why.
    pub keep: std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>,
}

/// Finds each custodian launcher's current enclave among the instance
/// events on `relays`, verified under `root` and `policy` (a custodian
/// runs released code too).
pub async fn find_custodians(
    client: &Client,
    config: &ContinuityConfig,
    root: &TrustedRoot,
    policy: &ReleasePolicy,
) -> Vec<CustodianInstance> {
    for url in &config.relays {
        if let Err(e) = client.add_relay(url.clone()).await {
            warn!(%url, "cannot add relay: {e}");
        }
    }
    client.connect().await;
    // Instance events live at most 3 hours; a relay that sends more than
    // asked, or older ones, does not make this enclave check them all.
    let most = FOUND_PER_CUSTODIAN.saturating_mul(config.custodians.len());
    let filter = Filter::new()
        .kinds([Kind::from(KIND_INSTANCE), Kind::from(KIND_ANNOUNCEMENT)])
        .pubkeys(config.custodians.iter().copied())
        .since(nostr::Timestamp::from(
            crate::unix_now().saturating_sub(4 * 3600),
        ))
        .limit(most);
    let events = match client
        .fetch_events_from(config.relays.iter().cloned(), filter, FIND_TIMEOUT)
        .await
    {
        Ok(events) => events.into_iter().take(most).collect::<Vec<_>>(),
        Err(e) => {
            warn!("cannot fetch custodians' instance events: {e}");
            Vec::new()
        }
    };
    let options = Options {
        release: Some(policy.trust.clone()),
        allow_dev_release: true,
        ..Options::new(root.clone(), CheckTime::At(crate::unix_now()))
    };
    let (found, missing) = current_custodians(events.iter(), &config.custodians, &options);
    for why in missing {
        warn!("custodian not found: {why}");
    }
    for c in &found {
        info!(launcher = %c.launcher, relay = %c.admin_relay, "custodian found");
    }
    found
}

/// The longest wait between two looks for custodians.
pub const FIND_AGAIN_MAX: Duration = Duration::from_secs(60);

/// Looks for the custodians until a quorum of them is found, saying each
/// time which are missing: without a quorum nothing can be restored or
/// sealed, and custodians restarting together find each other only once
/// each has announced.
async fn find_quorum(
    fetcher: &Client,
    config: &ContinuityConfig,
    root: &TrustedRoot,
    policy: &ReleasePolicy,
) -> Vec<CustodianInstance> {
    let need = verifier::custodian::quorum_of(config.custodians.len());
    let mut wait = Duration::from_secs(2);
    loop {
        let found = find_custodians(fetcher, config, root, policy).await;
        if found.len() >= need {
            return found;
        }
        warn!(
            "waiting for custodians: {} of the {} named are announced and verify, a quorum is {}; looking again in {}s",
            found.len(),
            config.custodians.len(),
            need,
            wait.as_secs()
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(FIND_AGAIN_MAX);
    }
}

/// Takes the state over (or seals a new one with `--init-state`) and
/// installs it in `service`'s signer, before anything is served;
/// custodians are looked for with `fetcher` ([`crate::relay::fetch_client`]).
pub async fn start(
    service: &Service,
    fetcher: &Client,
    config: &ContinuityConfig,
    root: &TrustedRoot,
    policy: &ReleasePolicy,
) -> Result<Running, String> {
    let at = find_quorum(fetcher, config, root, policy).await;
    fetcher.shutdown().await;
    let custodians = RelayCustodians {
        signer: Arc::clone(&service.signer),
        subscriptions: service.subscriptions.clone(),
        pow_bits: config.pow_bits,
    };
    let storage = ParentStorage {
        parent: config.parent,
    };
    let held = if config.init {
        let empty = service
            .signer
            .store()
            .to_record(crate::unix_now())
            .to_cbor()
            .map_err(|e| e.to_string())?;
        seal_new(
            &config.identity,
            &custodians,
            &at,
            &config.custodians,
            &storage,
            policy.clone(),
            empty,
        )
        .await
        .map_err(|e| e.to_string())?
    } else {
        // Abandoned: an empty state that says when it started over.
        let start_over = if config.abandon {
            let mut empty = service.signer.store().to_record(crate::unix_now());
            empty.reset_at = Some(crate::unix_now());
            Some(empty.to_cbor().map_err(|e| e.to_string())?)
        } else {
            None
        };
        let held = restore_or_abandon(
            &config.identity,
            &custodians,
            &at,
            &config.custodians,
            &storage,
            Patience::default(),
            start_over,
        )
        .await
        .map_err(|e| e.to_string())?;
        let record = StateRecord::from_cbor(&held.plaintext).map_err(|e| e.to_string())?;
        let store = {
            let current = service.signer.store();
            KeyStore::from_record(
                current.limits().clone(),
                current.perm_relays().to_vec(),
                Some(service.signer.admin_relay().clone()),
                &record,
            )?
        };
        info!(keys = store.len(), "restored keys");
        service.signer.install(store);
        held
    };
    info!(state = %config.identity, epoch = held.epoch, version = held.version, "this enclave holds the state");
    let lease = Lease::new(LeaseTimes::default(), held.lease_from);
    let (epoch, set) = (held.epoch, held.set.clone());
    let announced = set.clone();
    let persister = Persister::new(
        config.identity.clone(),
        custodians.clone(),
        at.clone(),
        storage,
        held,
    );
    let persist: Arc<dyn PersistHook> =
        Arc::new(StorePersister::new(persister, Arc::clone(&service.signer)));
    let identity = config.identity.clone();
    service.signer.set_lease(lease.clone());
    let uses = snapshot_uses(Arc::clone(&persist), Arc::clone(&service.signer));
    let keep = Box::pin(async move {
        tokio::select! {
            why = lease.keep(&custodians, &identity, epoch, &at, &set) => why,
            never = uses => match never {},
        }
    });
    Ok(Running {
        persist,
        set: announced,
        keep,
    })
}

/// How often uses, rate windows and the log are committed when they moved:
/// after a restart, at most this much of them may be forgotten (an app may
/// get this many seconds of uses again), as long as snapshots can be
/// stored.
pub const USES_EVERY: Duration = Duration::from_secs(10);

/// Commits the store every [`USES_EVERY`] when decisions were made since.
async fn snapshot_uses(
    persist: Arc<dyn PersistHook>,
    signer: Arc<crate::signer::Signer>,
) -> std::convert::Infallible {
    let mut tick = tokio::time::interval(USES_EVERY);
    let mut seen = signer.store().decisions();
    loop {
        tick.tick().await;
        let now = signer.store().decisions();
        // Uses moved, or an owner's change whose commit failed waits (a
        // delete the owner was told is unconfirmed is committed here).
        if now == seen && !persist.behind() {
            continue;
        }
        match persist.persist(persist.changed()).await {
            Ok(_) => seen = now,
            Err(e) => warn!("uses since the last commit are not committed: {e}"),
        }
    }
}
