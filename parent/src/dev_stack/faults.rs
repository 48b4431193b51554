//! Faults a relay can be made to show, for tests and drills on the dev
//! stack: refusing one author's events for a while, as a rate-limiting
//! public relay does (`OK false "rate-limited: …"`); a relay that accepts
//! connections and never answers; one that upgrades to WebSocket and then
//! sends garbage. (A relay that goes away and comes back is
//! [`super::relay::DevRelay::stop`] and a new one on the same address.)

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

/// A fake relay on 127.0.0.1 that misbehaves in one way; it stops when
/// dropped.
#[derive(Debug)]
pub struct BadRelay {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// How a [`BadRelay`] misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Accepts TCP connections, reads nothing and never answers.
    Silent,
    /// Answers the WebSocket upgrade, then sends bytes that are no valid
    /// frame, every 100 ms, and ignores what it is sent.
    Garbage,
}

impl BadRelay {
    /// Starts one on a free port.
    pub async fn start(how: Misbehaviour) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // Connections are kept open (and unread) for as long as it runs,
            // up to a bound; each ends when it leaves `held` (and all of
            // them when the relay is dropped).
            let mut held = std::collections::VecDeque::new();
            while let Ok((stream, _)) = listener.accept().await {
                if held.len() >= 256 {
                    held.pop_front();
                }
                held.push_back(AbortOnDrop(match how {
                    Misbehaviour::Silent => tokio::spawn(async move {
                        let _stream = stream;
                        std::future::pending::<()>().await;
                    }),
                    Misbehaviour::Garbage => tokio::spawn(garbage(stream)),
                }));
            }
        });
        Ok(Self { addr, task })
    }

    /// Its `ws://` URL.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for BadRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A task that ends when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn garbage(stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let _ = stream.set_nodelay(true);
    let mut stream = tokio::io::BufReader::new(stream);
    let Ok(head) = super::relay::read_head(&mut stream).await else {
        return;
    };
    let Ok(response) = super::relay::upgrade_response(&head) else {
        return;
    };
    if stream.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    // Reserved opcode, reserved bits, a length that never comes.
    let junk = [
        0xffu8, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00,
    ];
    loop {
        if stream.write_all(&junk).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
