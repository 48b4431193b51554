//! The holder's lease: an enclave serves a restored state only while a
//! quorum of its sealed set has acknowledged it lately. Every
//! [`LeaseTimes::renew_every`] it renews with every custodian (a
//! heartbeat); a quorum's acknowledgement moves the lease on, counted from
//! when the heartbeat was sent, on this enclave's monotonic clock. A
//! custodian's `fenced` answer means a successor holds the state: the
//! lease is over at once, for good.
//!
//! Custodians let a successor claim only after they have not heard of the
//! holder for the lease and a margin ([`verifier::custodian::CLAIM_MARGIN_MS`]),
//! so a holder cut off from its custodians (a parent that passes app
//! traffic but drops custody traffic) stops serving before any successor
//! can start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nostr::PublicKey;
use tracing::{info, warn};
use verifier::custodian::discover::CustodianInstance;
use verifier::custodian::message::{Call, Reply, StateName};
use verifier::custodian::{quorum_of, HEARTBEAT_MS, LEASE_MS};
use verifier::state::StateIdentity;

use super::restore::Custodians;

/// How long a lease lasts and how often it is renewed.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTimes {
    /// How long after the last acknowledged renewal the holder serves.
    pub lease: Duration,
    /// How often it renews.
    pub renew_every: Duration,
}

impl Default for LeaseTimes {
    fn default() -> Self {
        Self {
            lease: Duration::from_millis(LEASE_MS),
            renew_every: Duration::from_millis(HEARTBEAT_MS),
        }
    }
}

/// Whether this enclave may serve its state now.
#[derive(Debug, Clone)]
pub struct Lease {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    times: LeaseTimes,
    /// When the last renewal a quorum acknowledged was sent.
    from: Mutex<Instant>,
    /// A custodian said a successor holds the state.
    fenced: AtomicBool,
}

impl Lease {
    /// A lease acknowledged at `from` (the restore's commit).
    pub fn new(times: LeaseTimes, from: Instant) -> Self {
        Self {
            inner: Arc::new(Inner {
                times,
                from: Mutex::new(from),
                fenced: AtomicBool::new(false),
            }),
        }
    }

    /// Whether the state may be served now.
    pub fn holds(&self) -> bool {
        !self.inner.fenced.load(Ordering::SeqCst)
            && self
                .inner
                .from
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .elapsed()
                < self.inner.times.lease
    }

    /// How long the lease still runs.
    fn left(&self) -> Duration {
        let from = *self
            .inner
            .from
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.inner.times.lease.saturating_sub(from.elapsed())
    }

    /// Whether a successor took the state over.
    pub fn fenced(&self) -> bool {
        self.inner.fenced.load(Ordering::SeqCst)
    }

    fn renewed(&self, sent: Instant) {
        let mut from = self
            .inner
            .from
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if sent > *from {
            *from = sent;
        }
    }

    /// Renews the lease of `epoch` with `at` (current enclaves of the
    /// sealed `set`) until it is lost: fenced, or not acknowledged by a
    /// quorum for a whole lease. Returns why it ended.
    pub async fn keep<C: Custodians>(
        &self,
        custodians: &C,
        identity: &StateIdentity,
        epoch: u64,
        at: &[CustodianInstance],
        set: &[PublicKey],
    ) -> String {
        let state = StateName::of(identity);
        let needed = quorum_of(set.len());
        let mut tick = tokio::time::interval(self.inner.times.renew_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if !self.holds() {
                let why = if self.fenced() {
                    "a successor holds the state".to_owned()
                } else {
                    format!(
                        "no quorum acknowledged a renewal for {} s",
                        self.inner.times.lease.as_secs()
                    )
                };
                warn!(%identity, epoch, "lease lost: {why}");
                return why;
            }
            tokio::select! {
                _ = tick.tick() => {}
                () = tokio::time::sleep(self.left()) => continue,
            }
            let sent = Instant::now();
            let calls = at.iter().map(|c| {
                let call = Call::Heartbeat {
                    state: state.clone(),
                    epoch,
                };
                async move { (c, custodians.call(c, call).await) }
            });
            let mut acked: Vec<PublicKey> = Vec::new();
            // A round never outlasts the lease: its end is noticed when it
            // comes, not a renewal later. It renews as soon as a quorum
            // acknowledged: a custodian that is down (its call waits for its
            // timeout) holds nothing up.
            let mut replies: futures_util::stream::FuturesUnordered<_> = calls.collect();
            let deadline = tokio::time::sleep(self.left());
            tokio::pin!(deadline);
            let mut renewed = false;
            loop {
                let (c, reply) = tokio::select! {
                    next = futures_util::StreamExt::next(&mut replies) => match next {
                        Some(next) => next,
                        None => break,
                    },
                    () = &mut deadline => break,
                };
                match reply {
                    Ok(Reply::Ok { epoch: e, .. })
                        if e == epoch
                            && set.contains(&c.launcher)
                            && !acked.contains(&c.launcher) =>
                    {
                        acked.push(c.launcher);
                    }
                    // Only a newer epoch fences: a custodian still on an
                    // older one (it missed this enclave's claim) is behind,
                    // not a sign of a successor.
                    Ok(Reply::Refused {
                        code,
                        reason,
                        current_epoch,
                        ..
                    }) if code == "fenced" && current_epoch.is_some_and(|c| c > epoch) => {
                        info!(%identity, epoch, custodian = %c.admin_relay, "fenced: {reason}");
                        self.inner.fenced.store(true, Ordering::SeqCst);
                    }
                    _ => {}
                }
                if !renewed && acked.len() >= needed && !self.fenced() {
                    self.renewed(sent);
                    renewed = true;
                }
            }
        }
    }
}
