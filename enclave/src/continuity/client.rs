//! Custody requests from this enclave to a custodian's service key, and
//! their replies: each request is a kind 24136 event (NIP-44, signed by
//! our service key, carrying our current instance event), and its reply
//! arrives like any request to the service key, through the signer, which
//! hands it here ([`CustodyClient::deliver`]).
//!
//! A reply counts only from the custodian the request went to and only
//! for a request still waiting, so a relay or a stranger can neither
//! answer for a custodian nor fill memory: at most [`MAX_PENDING`]
//! requests wait, each at most [`CALL_TIMEOUT`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use nostr::{Event, Keys, Kind, PublicKey, Tag};
use tokio::sync::oneshot;
use verifier::custodian::message::{Call, CustodyRequest, Reply};
use verifier::custodian::KIND_CUSTODY;
use verifier::rpc::cipher::{Conversation, Scheme};
use verifier::rpc::Response;

/// Requests waiting for a reply at once.
pub const MAX_PENDING: usize = 64;
/// How long a custodian has to answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a custody request got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// [`MAX_PENDING`] requests wait already.
    Busy,
    /// No instance event of ours to show yet.
    NoInstance,
    /// The request could not be made or sent.
    Send(String),
    /// No reply within [`CALL_TIMEOUT`].
    Timeout,
    /// The reply is an error or does not read.
    Malformed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Busy => write!(f, "{MAX_PENDING} custody requests wait already"),
            Self::NoInstance => f.write_str("no instance event of ours to show a custodian yet"),
            Self::Send(e) => write!(f, "cannot send the custody request: {e}"),
            Self::Timeout => write!(f, "no reply in {} s", CALL_TIMEOUT.as_secs()),
            Self::Malformed(e) => write!(f, "the custodian's reply does not read: {e}"),
        }
    }
}

impl std::error::Error for CallError {}

struct Waiting {
    custodian: PublicKey,
    reply: oneshot::Sender<Result<Reply, CallError>>,
}

/// Sends custody requests as this enclave and matches their replies.
pub struct CustodyClient {
    service: Keys,
    instance: RwLock<Option<String>>,
    pending: Mutex<HashMap<String, Waiting>>,
    /// Custodians that answered this enclave lately without asking for
    /// proof of work.
    verified_by: Mutex<std::collections::HashSet<PublicKey>>,
}

impl std::fmt::Debug for CustodyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustodyClient")
            .field("service", &self.service.public_key())
            .finish_non_exhaustive()
    }
}

impl CustodyClient {
    /// A client signing as `service`.
    pub fn new(service: Keys) -> Self {
        Self {
            service,
            instance: RwLock::new(None),
            pending: Mutex::new(HashMap::new()),
            verified_by: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Our current instance event (JSON), shown with every request.
    pub fn set_instance(&self, instance: String) {
        *self
            .instance
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(instance);
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The signed request event carrying `call` to `custodian`'s service
    /// key with `pow` bits of proof of work, and where its reply will come.
    /// Mines here: call it off the async workers when `pow` is not small.
    pub fn request(
        &self,
        custodian: &PublicKey,
        call: Call,
        pow: u8,
    ) -> Result<(Event, oneshot::Receiver<Result<Reply, CallError>>), CallError> {
        let instance = self
            .instance
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(CallError::NoInstance)?;
        let request = CustodyRequest { instance, call }.to_rpc();
        let conversation = Conversation::new(Scheme::Nip44, self.service.secret_key(), custodian)
            .map_err(|e| CallError::Send(e.to_string()))?;
        let content = conversation
            .encrypt(&request.to_json())
            .map_err(|e| CallError::Send(e.to_string()))?;
        let unsigned = verifier::rpc::pow::mine(
            self.service.public_key(),
            Kind::from_u16(KIND_CUSTODY),
            vec![Tag::public_key(*custodian)],
            &content,
            pow,
            0,
        );
        let event = unsigned
            .sign_with_keys(&self.service)
            .map_err(|e| CallError::Send(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        let mut pending = self.pending();
        pending.retain(|_, w| !w.reply.is_closed());
        if pending.len() >= MAX_PENDING || pending.contains_key(&request.id) {
            return Err(CallError::Busy);
        }
        pending.insert(
            request.id,
            Waiting {
                custodian: *custodian,
                reply: tx,
            },
        );
        Ok((event, rx))
    }

    /// Whether a request to `custodian` waits for its reply (so that any
    /// other kind 24136 event is not even decrypted as one).
    pub fn awaits(&self, custodian: &PublicKey) -> bool {
        self.pending().values().any(|w| w.custodian == *custodian)
    }

    /// `response`, from `sender`: the reply to one of our requests to that
    /// custodian still waiting, or nothing. Whether it was one.
    pub fn deliver(&self, sender: &PublicKey, response: &Response) -> bool {
        let mut pending = self.pending();
        if pending.get(&response.id).map(|w| w.custodian) != Some(*sender) {
            return false;
        }
        let Some(waiting) = pending.remove(&response.id) else {
            return false;
        };
        // The result may carry a state key: the copy read is erased.
        let reply = response
            .clone()
            .into_result()
            .map(zeroize::Zeroizing::new)
            .map_err(CallError::Malformed)
            .and_then(|json| {
                Reply::from_json(&json).map_err(|e| CallError::Malformed(e.to_string()))
            });
        let _ = waiting.reply.send(reply);
        true
    }

    /// Sends `call` to `custodian` with `send` and waits for the reply.
    /// Proof of work (`pow` bits, mined on the blocking pool) goes only to
    /// a custodian that has not answered this enclave lately, or that asks
    /// for it again (its memory of verified requesters expired).
    pub async fn call<F, Fut>(
        self: &Arc<Self>,
        custodian: &PublicKey,
        call: Call,
        pow: u8,
        send: F,
    ) -> Result<Reply, CallError>
    where
        F: Fn(Event) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let known = self.knows_us(custodian);
        let reply = self
            .call_with(custodian, call.clone(), if known { 0 } else { pow }, &send)
            .await?;
        match &reply {
            Reply::Refused { code, .. } if code == "pow-required" && known && pow > 0 => {
                self.forget(custodian);
                self.call_with(custodian, call, pow, &send).await
            }
            Reply::Refused { code, .. } if code == "pow-required" => Ok(reply),
            _ => {
                self.remember(custodian);
                Ok(reply)
            }
        }
    }

    fn knows_us(&self, custodian: &PublicKey) -> bool {
        self.verified_by
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(custodian)
    }

    fn remember(&self, custodian: &PublicKey) {
        let mut known = self
            .verified_by
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if known.len() >= MAX_PENDING {
            known.clear();
        }
        known.insert(*custodian);
    }

    fn forget(&self, custodian: &PublicKey) {
        self.verified_by
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(custodian);
    }

    async fn call_with<F, Fut>(
        self: &Arc<Self>,
        custodian: &PublicKey,
        call: Call,
        pow: u8,
        send: &F,
    ) -> Result<Reply, CallError>
    where
        F: Fn(Event) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let (event, reply) = if pow == 0 {
            self.request(custodian, call, 0)?
        } else {
            let (me, to) = (Arc::clone(self), *custodian);
            tokio::task::spawn_blocking(move || me.request(&to, call, pow))
                .await
                .map_err(|e| CallError::Send(e.to_string()))??
        };
        // Sending and the reply share one deadline: a relay that never
        // finishes taking the event holds nothing up.
        let exchange = async {
            send(event).await.map_err(CallError::Send)?;
            reply.await.map_err(|_| CallError::Timeout)?
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .unwrap_or(Err(CallError::Timeout))
    }
}
