//! Faults a relay can be made to show, for tests and drills on the dev
//! stack: refusing one author's events for a while, as a rate-limiting
//! public relay does (`OK false "rate-limited: …"`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nostr::{Event, PublicKey};
use nostr_relay_builder::builder::{PolicyResult, WritePolicy};

/// A relay write policy that refuses events by one author until a
/// deadline, and counts its refusals.
#[derive(Debug, Default, Clone)]
pub struct RefuseWrites {
    author: Arc<Mutex<Option<(PublicKey, Instant)>>>,
    refused: Arc<AtomicUsize>,
}

impl RefuseWrites {
    /// Refuses `author`'s events for `how_long` from now.
    pub fn refuse(&self, author: PublicKey, how_long: Duration) {
        *self.author.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((author, Instant::now() + how_long));
    }

    /// How many events were refused so far.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

impl WritePolicy for RefuseWrites {
    fn admit_event<'a>(
        &'a self,
        event: &'a Event,
        _addr: &'a SocketAddr,
    ) -> nostr::util::BoxedFuture<'a, PolicyResult> {
        let refuse = matches!(
            *self.author.lock().unwrap_or_else(PoisonError::into_inner),
            Some((author, until)) if author == event.pubkey && Instant::now() < until
        );
        if refuse {
            self.refused.fetch_add(1, Ordering::SeqCst);
        }
        Box::pin(async move {
            if refuse {
                PolicyResult::Reject("rate-limited: slow down".into())
            } else {
                PolicyResult::Accept
            }
        })
    }
}
