//! Request events from the relays to the signer: a bounded, fair queue in
//! place of the relay pool's broadcast channel.
//!
//! nostr-sdk hands every event a relay delivers (after checking that it
//! matches a subscription this relay was sent, its size and its signature)
//! to an admission policy before anything else. [`Inbox`] is that policy:
//! it keeps request kinds (and nsec.app permission events) and drops the rest, then queues the event and
//! tells the pool not to broadcast it. Each relay has its own queue with
//! its own byte budget, and all of them share a global one; a relay whose
//! budget is used up waits in the admission call, which stops nostr-sdk
//! from reading that relay's socket: back-pressure on that relay alone,
//! instead of events being dropped. The signer takes events round-robin
//! across relays, so a relay that floods gets its turn like any other and
//! cannot push the others' requests out.
//!
//! Memory: at most [`InboxLimits::total_bytes`] of queued events (64 MiB by
//! default) plus, per relay, the one event its reader holds while it waits.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use nostr::util::BoxedFuture;
use nostr::{Event, RelayUrl, SubscriptionId};
use nostr_sdk::pool::policy::{AdmitPolicy, AdmitStatus, PolicyError};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use verifier::event::{KIND_ADMIN, KIND_CUSTODY, KIND_NIP46};
use verifier::grant::nsecapp::KIND_APP_DATA;

/// Bytes per budget unit (semaphore permit).
const UNIT: usize = 256;

/// The inbox's budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxLimits {
    /// Bytes of queued events from one relay.
    pub per_relay_bytes: usize,
    /// Bytes of queued events from all relays.
    pub total_bytes: usize,
}

impl Default for InboxLimits {
    fn default() -> Self {
        Self {
            // Room for a burst of about 10,000 small requests from one relay
            // (an admin relay during a bulk import) before it is slowed.
            per_relay_bytes: 16 * 1024 * 1024,
            total_bytes: 64 * 1024 * 1024,
        }
    }
}

/// One queued request event; its budget is returned when it is dropped.
#[derive(Debug)]
pub struct Queued {
    /// The relay it came from.
    pub relay: RelayUrl,
    /// The event.
    pub event: Event,
    cost: u32,
    _relay_budget: OwnedSemaphorePermit,
    _total_budget: OwnedSemaphorePermit,
}

#[derive(Debug)]
struct RelayQueue {
    budget: Arc<Semaphore>,
    events: VecDeque<Queued>,
}

#[derive(Debug, Default)]
struct Queues {
    by_relay: HashMap<RelayUrl, RelayQueue>,
    /// Relays with queued events, in serving order.
    turn: VecDeque<RelayUrl>,
    queued: usize,
}

#[derive(Debug)]
struct Inner {
    limits: InboxLimits,
    total: Arc<Semaphore>,
    queues: Mutex<Queues>,
    arrived: Notify,
}

/// The queue between the relay connections and the signer.
#[derive(Debug, Clone)]
pub struct Inbox {
    inner: Arc<Inner>,
}

fn units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX)
}

impl Inbox {
    /// An empty inbox with `limits`.
    pub fn new(limits: InboxLimits) -> Self {
        Self {
            inner: Arc::new(Inner {
                total: Arc::new(Semaphore::new(units(limits.total_bytes) as usize)),
                limits,
                queues: Mutex::new(Queues::default()),
                arrived: Notify::new(),
            }),
        }
    }

    /// How many events are queued.
    pub fn len(&self) -> usize {
        self.queues().queued
    }

    /// No events are queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.inner
            .queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `event` from `relay`, waiting while that relay's or the
    /// global budget is used up. Events of other kinds are dropped.
    pub async fn push(&self, relay: &RelayUrl, event: &Event) {
        let kind = event.kind.as_u16();
        if kind != KIND_NIP46 && kind != KIND_ADMIN && kind != KIND_CUSTODY && kind != KIND_APP_DATA
        {
            return;
        }
        let limits = self.inner.limits;
        // Never more than a budget holds, or a large event would wait forever.
        let cost = units(event_bytes(event))
            .min(units(limits.per_relay_bytes))
            .min(units(limits.total_bytes));
        let budget = {
            let mut queues = self.queues();
            let queue = queues
                .by_relay
                .entry(relay.clone())
                .or_insert_with(|| RelayQueue {
                    budget: Arc::new(Semaphore::new(units(limits.per_relay_bytes) as usize)),
                    events: VecDeque::new(),
                });
            Arc::clone(&queue.budget)
        };
        let Ok(relay_budget) = Arc::clone(&budget).acquire_many_owned(cost).await else {
            return;
        };
        let Ok(total_budget) = Arc::clone(&self.inner.total).acquire_many_owned(cost).await else {
            return;
        };
        let queued = Queued {
            relay: relay.clone(),
            event: event.clone(),
            cost,
            _relay_budget: relay_budget,
            _total_budget: total_budget,
        };
        {
            let mut queues = self.queues();
            let was_empty = match queues.by_relay.get_mut(relay) {
                Some(queue) => {
                    queue.events.push_back(queued);
                    queue.events.len() == 1
                }
                None => {
                    // Dropped while we waited; keep its permits accounted.
                    queues.by_relay.insert(
                        relay.clone(),
                        RelayQueue {
                            budget,
                            events: VecDeque::from([queued]),
                        },
                    );
                    true
                }
            };
            if was_empty {
                queues.turn.push_back(relay.clone());
            }
            queues.queued += 1;
        }
        self.inner.arrived.notify_one();
    }

    /// The next event, taking relays in turn.
    pub async fn recv(&self) -> Queued {
        loop {
            let arrived = self.inner.arrived.notified();
            if let Some(queued) = self.try_recv() {
                return queued;
            }
            arrived.await;
        }
    }

    /// The next event, if one is queued.
    pub fn try_recv(&self) -> Option<Queued> {
        let mut queues = self.queues();
        while let Some(relay) = queues.turn.pop_front() {
            let Some(queue) = queues.by_relay.get_mut(&relay) else {
                continue;
            };
            let Some(queued) = queue.events.pop_front() else {
                continue;
            };
            let more = !queue.events.is_empty();
            // Nothing else queued or waiting on this relay's budget.
            let idle = !more
                && queue.budget.available_permits() + queued.cost as usize
                    >= units(self.inner.limits.per_relay_bytes) as usize;
            if more {
                queues.turn.push_back(relay);
            } else if idle {
                // Nothing queued or waiting: forget the relay (it may be gone).
                queues.by_relay.remove(&relay);
            }
            queues.queued = queues.queued.saturating_sub(1);
            return Some(queued);
        }
        None
    }
}

/// What an event costs in the budget: its content and tags.
fn event_bytes(event: &Event) -> usize {
    event.content.len()
        + event
            .tags
            .iter()
            .map(|t| t.as_slice().iter().map(String::len).sum::<usize>())
            .sum::<usize>()
        + 256
}

impl AdmitPolicy for Inbox {
    fn admit_event<'a>(
        &'a self,
        relay_url: &'a RelayUrl,
        _subscription_id: &'a SubscriptionId,
        event: &'a Event,
    ) -> BoxedFuture<'a, Result<AdmitStatus, PolicyError>> {
        Box::pin(async move {
            self.push(relay_url, event).await;
            // Taken (or dropped) here: the pool must not broadcast it.
            Ok(AdmitStatus::rejected("queued for the signer"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::{EventBuilder, Keys, Kind};
    use std::time::Duration;

    fn event(kind: u16, content: &str) -> Event {
        EventBuilder::new(Kind::from(kind), content)
            .sign_with_keys(&Keys::generate())
            .unwrap()
    }

    fn url(n: u8) -> RelayUrl {
        RelayUrl::parse(&format!("wss://r{n}.example")).unwrap()
    }

    #[tokio::test]
    async fn takes_relays_in_turn_and_drops_other_kinds() {
        let inbox = Inbox::new(InboxLimits::default());
        for _ in 0..3 {
            inbox.push(&url(1), &event(KIND_NIP46, "flood")).await;
        }
        inbox.push(&url(2), &event(KIND_ADMIN, "one")).await;
        inbox.push(&url(2), &event(1, "a note")).await;
        assert_eq!(inbox.len(), 4);
        let order: Vec<RelayUrl> = (0..4).map(|_| inbox.try_recv().unwrap().relay).collect();
        assert_eq!(order, vec![url(1), url(2), url(1), url(1)]);
        assert!(inbox.try_recv().is_none());
    }

    #[tokio::test]
    async fn a_flooding_relay_waits_and_others_still_get_in() {
        let inbox = Inbox::new(InboxLimits {
            per_relay_bytes: 8 * UNIT,
            total_bytes: 64 * UNIT,
        });
        let big = "x".repeat(3 * UNIT);
        for _ in 0..2 {
            inbox.push(&url(1), &event(KIND_NIP46, &big)).await;
        }
        // The third does not fit in relay 1's budget: it waits.
        let flood = {
            let inbox = inbox.clone();
            let e = event(KIND_NIP46, &big);
            tokio::spawn(async move { inbox.push(&url(1), &e).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!flood.is_finished());
        assert_eq!(inbox.len(), 2);
        // Another relay is not held up.
        tokio::time::timeout(
            Duration::from_secs(1),
            inbox.push(&url(2), &event(KIND_NIP46, "hi")),
        )
        .await
        .unwrap();
        // Taking one of relay 1's events lets the waiting one in.
        drop(inbox.recv().await);
        tokio::time::timeout(Duration::from_secs(1), flood)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(inbox.len(), 3);
    }
}
