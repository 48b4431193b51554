//! Replies to relays, read back: every reply's `OK` is read, and a relay
//! that refuses one (`OK false "rate-limited: …"`, or not connected) gets
//! it again with backoff, until it or another of the reply's relays takes
//! it or [`OutboxLimits::deadline`] passes. A relay that answers nothing
//! within [`OutboxLimits::ok_timeout`] is taken to have it: some relays
//! never acknowledge ephemeral events.
//!
//! Each relay has one delivery worker with a bounded queue, and one reader
//! of its notifications for all the `OK`s (not one per reply). A relay may
//! hold at most [`OutboxLimits::per_relay_bytes`] of replies (queued, sent
//! and unanswered, or waiting to be sent again); past that it is skipped,
//! so a slow or hostile relay fills only its own share and never delays
//! replies to others. Tracked replies share a global byte budget; when it
//! is used up, replies are still sent at once, just not tracked or retried.
//! Sending never waits. Refusals are logged as warnings, at most one per
//! relay every few seconds with a count of the rest.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nostr::{ClientMessage, Event, EventId, RelayMessage, RelayUrl};
use nostr_sdk::pool::RelayNotification;
use nostr_sdk::{Client, Relay, RelayStatus};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::signer::Reply;

/// Bytes per budget unit.
const UNIT: usize = 1024;
/// Shortest time between two refusal warnings about one relay.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// How replies are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Replies waiting to be sent, per relay.
    pub queue_per_relay: usize,
    /// Bytes of replies one relay may hold: queued, unanswered or retrying.
    pub per_relay_bytes: usize,
    /// Replies sent and waiting for `OK`, per relay; past this, replies are
    /// sent without being tracked.
    pub pending_per_relay: usize,
    /// Bytes of replies in flight over all relays.
    pub total_bytes: usize,
    /// How long to wait for an `OK`.
    pub ok_timeout: Duration,
    /// The first wait before sending a refused reply again; doubles.
    pub retry_initial: Duration,
    /// How long after the first attempt a reply is still retried.
    pub deadline: Duration,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        Self {
            queue_per_relay: 1024,
            per_relay_bytes: 2 * 1024 * 1024,
            pending_per_relay: 1024,
            total_bytes: 64 * 1024 * 1024,
            ok_timeout: Duration::from_secs(5),
            retry_initial: Duration::from_secs(1),
            deadline: Duration::from_secs(60),
        }
    }
}

/// One reply on its way, shared by the workers of its relays.
#[derive(Debug)]
struct Delivery {
    event: Event,
    /// What it counts against a relay's share.
    size: usize,
    /// Some relay took it: the others stop retrying.
    delivered: AtomicBool,
    started: Instant,
    _budget: OwnedSemaphorePermit,
}

/// A reply handed to one relay's worker; its size is given back to the
/// relay's share when the worker is done with it.
#[derive(Debug)]
struct Job {
    delivery: Arc<Delivery>,
    held: Arc<AtomicUsize>,
}

impl Drop for Job {
    fn drop(&mut self) {
        self.held.fetch_sub(self.delivery.size, Ordering::SeqCst);
    }
}

/// A relay's worker, as the sender sees it.
#[derive(Debug, Clone)]
struct Handle {
    relay: Relay,
    jobs: mpsc::Sender<Job>,
    held: Arc<AtomicUsize>,
    /// Warnings about this relay (it decides how often they would come).
    warnings: Arc<Throttle>,
}

/// At most one warning per [`WARN_EVERY`], with a count of the ones not
/// shown: what a relay or a flood can trigger must not flood the log.
#[derive(Debug, Default)]
struct Throttle(Mutex<(Option<Instant>, u64)>);

impl Throttle {
    /// `Some(how many were held back since the last one)` if a warning may
    /// be logged now.
    fn allow(&self) -> Option<u64> {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if state.0.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            state.1 += 1;
            return None;
        }
        state.0 = Some(now);
        Some(std::mem::take(&mut state.1))
    }
}

/// The reply sender.
#[derive(Debug, Clone)]
pub struct Outbox {
    client: Client,
    limits: OutboxLimits,
    budget: Arc<Semaphore>,
    workers: Arc<Mutex<HashMap<RelayUrl, Handle>>>,
    full: Arc<Throttle>,
}

fn units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX)
}

impl Outbox {
    /// Sends through `client`'s relays.
    pub fn new(client: Client, limits: OutboxLimits) -> Self {
        Self {
            client,
            budget: Arc::new(Semaphore::new(units(limits.total_bytes) as usize)),
            limits,
            workers: Arc::default(),
            full: Arc::default(),
        }
    }

    /// Hands `reply` to the workers of its relays. Never waits for a relay
    /// or for room: a relay over its share is skipped, and without room in
    /// the global budget the reply is sent untracked.
    pub async fn send(&self, reply: Reply) {
        let size = reply.event.content.len() + 512;
        let cost = units(size).min(units(self.limits.total_bytes));
        let Ok(budget) = Arc::clone(&self.budget).try_acquire_many_owned(cost) else {
            return self.send_untracked(reply).await;
        };
        let delivery = Arc::new(Delivery {
            event: reply.event,
            size,
            delivered: AtomicBool::new(false),
            started: Instant::now(),
            _budget: budget,
        });
        for url in &reply.relays {
            let Some(handle) = self.worker(url).await else {
                debug!(%url, id = %delivery.event.id, "reply not sent: the relay is not in the pool");
                continue;
            };
            let held = handle.held.fetch_add(size, Ordering::SeqCst);
            let job = Job {
                delivery: Arc::clone(&delivery),
                held: Arc::clone(&handle.held),
            };
            if held + size > self.limits.per_relay_bytes {
                if let Some(more) = handle.warnings.allow() {
                    warn!(%url, id = %delivery.event.id, not_shown = more, "reply not sent there: this relay already holds {held} bytes of replies it has not taken");
                }
                continue;
            }
            if handle.jobs.try_send(job).is_err() {
                if let Some(more) = handle.warnings.allow() {
                    warn!(%url, id = %delivery.event.id, not_shown = more, "reply not queued: this relay has {} replies waiting", self.limits.queue_per_relay);
                }
            }
        }
    }

    /// Like [`Self::send`], but delivered to every relay on its own: one
    /// relay taking it does not stop the retries of the others. For an
    /// event whose reader listens on one particular relay (a nostrconnect
    /// app's connect response), not for replies any of a key's relays
    /// carry to its apps.
    pub async fn send_each(&self, reply: Reply) {
        for relay in reply.relays {
            let one = Reply {
                event: reply.event.clone(),
                relays: vec![relay],
            };
            self.send(one).await;
        }
    }

    /// Bytes of replies `url` holds now (queued, unanswered or retrying).
    pub fn held(&self, url: &RelayUrl) -> usize {
        self.workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(url)
            .map_or(0, |h| h.held.load(Ordering::SeqCst))
    }

    /// Sends `reply` once to each relay with room in its share, without
    /// reading the `OK`: the global budget is used up.
    async fn send_untracked(&self, reply: Reply) {
        if let Some(more) = self.full.allow() {
            warn!(id = %reply.event.id, not_shown = more, "outbox budget used up: sending replies without tracking them");
        }
        for url in &reply.relays {
            let Some(handle) = self.worker(url).await else {
                continue;
            };
            if handle.held.load(Ordering::SeqCst) > self.limits.per_relay_bytes {
                continue;
            }
            if let Err(e) = handle
                .relay
                .send_msg(ClientMessage::event(reply.event.clone()))
            {
                debug!(%url, id = %reply.event.id, "reply not sent: {e}");
            }
        }
    }

    async fn worker(&self, url: &RelayUrl) -> Option<Handle> {
        let live = |h: &Handle| !h.jobs.is_closed() && h.relay.status() != RelayStatus::Terminated;
        {
            let workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(handle) = workers.get(url).filter(|h| live(h)) {
                return Some(handle.clone());
            }
        }
        let relay = self.client.relay(url.clone()).await.ok()?;
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = workers.get(url).filter(|h| live(h)) {
            return Some(handle.clone());
        }
        let (jobs, rx) = mpsc::channel(self.limits.queue_per_relay.max(1));
        // Forget the workers of relays that left the pool.
        workers.retain(|_, h| live(h));
        let handle = Handle {
            relay: relay.clone(),
            jobs,
            held: Arc::default(),
            warnings: Arc::default(),
        };
        workers.insert(url.clone(), handle.clone());
        let worker = Worker::new(relay, self.limits, Arc::clone(&handle.warnings));
        tokio::spawn(worker.run(rx));
        Some(handle)
    }
}

/// A reply sent to this relay and not yet answered.
#[derive(Debug)]
struct Pending {
    job: Job,
    attempt: u32,
    sent_at: Instant,
}

/// Delivers to one relay.
struct Worker {
    relay: Relay,
    limits: OutboxLimits,
    pending: HashMap<EventId, Pending>,
    /// Refused replies and when to send them again.
    retries: BTreeMap<(Instant, u64), (Job, u32)>,
    seq: u64,
    warnings: Arc<Throttle>,
}

impl Worker {
    fn new(relay: Relay, limits: OutboxLimits, warnings: Arc<Throttle>) -> Self {
        Self {
            relay,
            limits,
            pending: HashMap::new(),
            retries: BTreeMap::new(),
            seq: 0,
            warnings,
        }
    }

    async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut notifications = self.relay.notifications();
        loop {
            let wake = self.next_timer();
            tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => self.attempt(job, 0),
                    None => return,
                },
                notification = notifications.recv() => match notification {
                    Ok(RelayNotification::Message { message: RelayMessage::Ok { event_id, status, message } }) => {
                        self.answered(&event_id, status, &message);
                    }
                    Ok(RelayNotification::RelayStatus { status }) => match status {
                        RelayStatus::Disconnected | RelayStatus::Banned => self.lost_connection(),
                        RelayStatus::Terminated => return,
                        _ => {}
                    },
                    Ok(RelayNotification::Shutdown) | Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    // Missed notifications may have held the one that ended it.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_))
                        if self.relay.status() == RelayStatus::Terminated => return,
                    _ => {}
                },
                () = sleep_until(wake) => self.tick(),
            }
        }
    }

    /// Sends `job` (again, for `attempt` > 0) unless another relay has
    /// taken it.
    fn attempt(&mut self, job: Job, attempt: u32) {
        if attempt > 0 && job.delivery.delivered.load(Ordering::SeqCst) {
            return;
        }
        let event = job.delivery.event.clone();
        match self.relay.send_msg(ClientMessage::event(event)) {
            Ok(()) if self.pending.len() < self.limits.pending_per_relay => {
                self.pending.insert(
                    job.delivery.event.id,
                    Pending {
                        job,
                        attempt,
                        sent_at: Instant::now(),
                    },
                );
            }
            Ok(()) => {}
            Err(e) => self.refused(job, attempt, &format!("not sent: {e}")),
        }
    }

    fn answered(&mut self, id: &EventId, accepted: bool, message: &str) {
        let Some(pending) = self.pending.remove(id) else {
            return;
        };
        if accepted {
            pending.job.delivery.delivered.store(true, Ordering::SeqCst);
            if pending.attempt > 0 {
                info!(url = %self.relay.url(), %id, attempts = pending.attempt + 1, "reply delivered after a refusal");
            }
            return;
        }
        self.refused(pending.job, pending.attempt, message);
    }

    /// Schedules a refused reply again, or gives up past the deadline.
    fn refused(&mut self, job: Job, attempt: u32, why: &str) {
        let delivery = &job.delivery;
        if delivery.delivered.load(Ordering::SeqCst) {
            return;
        }
        let backoff = self
            .limits
            .retry_initial
            .saturating_mul(1 << attempt.min(4));
        let at = Instant::now() + backoff;
        let id = delivery.event.id;
        if at.duration_since(delivery.started) > self.limits.deadline {
            self.warn(&format!(
                "reply {id} not delivered after {} attempts, giving up: {why}",
                attempt + 1
            ));
            return;
        }
        self.warn(&format!(
            "relay refused reply {id} ({why}); sending it again in {backoff:?}"
        ));
        self.seq += 1;
        self.retries
            .insert((at, self.seq), (job, attempt.saturating_add(1)));
    }

    fn warn(&self, what: &str) {
        if let Some(more) = self.warnings.allow() {
            warn!(url = %self.relay.url(), not_shown = more, "{what}");
        }
    }

    /// What was sent may not have arrived: send it again after a pause.
    fn lost_connection(&mut self) {
        let lost: Vec<Pending> = self.pending.drain().map(|(_, p)| p).collect();
        for p in lost {
            self.refused(p.job, p.attempt, "the connection was lost");
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        let ok = self
            .pending
            .values()
            .map(|p| p.sent_at + self.limits.ok_timeout)
            .min();
        let retry = self.retries.keys().next().map(|(at, _)| *at);
        match (ok, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let timeout = self.limits.ok_timeout;
        // No answer: the relay took it without saying so.
        self.pending.retain(|id, p| {
            let waiting = p.sent_at + timeout > now;
            if !waiting {
                debug!(%id, "no OK for the reply; assuming the relay took it");
            }
            waiting
        });
        while let Some(entry) = self.retries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (job, attempt) = entry.remove();
            self.attempt(job, attempt);
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
