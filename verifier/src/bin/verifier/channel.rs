//! The admin channel of `verifier key`: one request sent to an enclave's
//! admin API (kind 24135) and its reply read, paying the proof of work the
//! enclave asks for, and paged lists read to the end.

use std::time::Duration;

use nostr::{Keys, Kind, PublicKey, RelayUrl, Timestamp};
use nostr_sdk::{Client, Filter, RelayPoolNotification};
use verifier::event::KIND_ADMIN;
use verifier::rpc::admin::AdminRequest;
use verifier::rpc::admission::parse_pow_required;
use verifier::rpc::cipher::Scheme;
use verifier::rpc::{open_response, seal_request_with_pow};

use crate::grants::page;
use crate::{now, Unusable};

/// Most proof-of-work rounds asked for before giving up.
const MAX_POW_ROUNDS: usize = 3;

/// When the whole command must be done by: `--timeout` bounds all of it,
/// not each step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: tokio::time::Instant,
    secs: u64,
}

impl Deadline {
    /// `secs` from now.
    pub(crate) fn after(secs: u64) -> Self {
        Self {
            at: tokio::time::Instant::now() + Duration::from_secs(secs),
            secs,
        }
    }

    /// What is left of it.
    pub(crate) fn left(&self) -> Duration {
        self.at
            .saturating_duration_since(tokio::time::Instant::now())
    }

    /// The `--timeout` it was made from, in seconds.
    pub(crate) fn secs(&self) -> u64 {
        self.secs
    }
}

/// Adds `relays` to `client` and connects to all of them at once, without
/// retrying: a relay that refuses or drops the connection is named at once
/// (and the others are used); none reachable is an error. With several
/// relays, one that never finishes its handshake takes at most half of
/// what is left, not all of it.
pub(crate) async fn connect(
    client: &Client,
    relays: &[RelayUrl],
    deadline: Deadline,
) -> Result<(), Unusable> {
    for url in relays {
        client
            .add_relay(url.clone())
            .await
            .map_err(|e| Unusable::from(format!("{url}: {e}")))?;
    }
    let budget = if relays.len() > 1 {
        deadline.left() / 2
    } else {
        deadline.left()
    };
    let output = client.try_connect(budget).await;
    let connected = output.success.len();
    let mut failures: Vec<String> = output
        .failed
        .iter()
        .map(|(url, e)| format!("could not connect to {url}: {e}"))
        .collect();
    failures.sort();
    if connected == 0 {
        return Err(Unusable {
            message: failures.join("; "),
            hint: Some("is the relay (or the local stack) running, and is the URL right?"),
        });
    }
    for failure in failures {
        eprintln!("warning: {failure}");
    }
    Ok(())
}

/// Sends `request` to the admin API and waits for its reply; when the
/// enclave asks for proof of work (it does for new keys and relays when it
/// is busy or filling up), mines it and sends the request again.
pub(crate) async fn call(
    user: &Keys,
    service: &PublicKey,
    relay: &RelayUrl,
    request: &AdminRequest,
    deadline: Deadline,
) -> Result<Result<String, String>, Unusable> {
    let mut pow = 0;
    for _ in 0..MAX_POW_ROUNDS {
        let reply = call_once(user, service, relay, request, pow, deadline).await?;
        match reply.as_ref().err().and_then(|e| parse_pow_required(e)) {
            Some(bits) if bits > pow => {
                eprintln!("the enclave asks for {bits} bits of proof of work; computing it");
                pow = bits;
            }
            _ => return Ok(reply),
        }
    }
    Err(Unusable::from(
        "the enclave keeps asking for more proof of work; try again later".to_owned(),
    ))
}

async fn call_once(
    user: &Keys,
    service: &PublicKey,
    relay: &RelayUrl,
    request: &AdminRequest,
    pow: u8,
    deadline: Deadline,
) -> Result<Result<String, String>, Unusable> {
    let wire = request.to_request();
    let event = seal_request_with_pow(user, service, KIND_ADMIN, &wire, Scheme::Nip44, pow)
        .map_err(|e| Unusable::from(e.to_string()))?;
    let client = Client::default();
    connect(&client, std::slice::from_ref(relay), deadline).await?;
    let mut notifications = client.notifications();
    let filter = Filter::new()
        .kind(Kind::from(KIND_ADMIN))
        .author(*service)
        .pubkey(user.public_key())
        .since(Timestamp::from(now().saturating_sub(10)));
    client
        .subscribe(filter, None)
        .await
        .map_err(|e| Unusable::from(format!("cannot subscribe on {relay}: {e}")))?;
    let sent = client
        .send_event(&event)
        .await
        .map_err(|e| Unusable::from(format!("cannot send the request to {relay}: {e}")))?;
    if !sent.success.contains(relay) {
        client.shutdown().await;
        let why = sent.failed.get(relay).map_or("no answer", String::as_str);
        return Err(Unusable::from(format!(
            "{relay} did not take the request: {why}"
        )));
    }
    let reply = tokio::time::timeout(deadline.left(), async {
        while let Ok(notification) = notifications.recv().await {
            if let RelayPoolNotification::Event { event, .. } = notification {
                if event.pubkey != *service {
                    continue;
                }
                if let Ok(response) = open_response(user, &event) {
                    if response.id == wire.id {
                        return Some(response.into_result());
                    }
                }
            }
        }
        None
    })
    .await;
    client.shutdown().await;
    match reply {
        Ok(Some(result)) => Ok(result),
        _ => Err(Unusable {
            message: format!(
                "no reply from the enclave within --timeout {}s; {relay} took the request",
                deadline.secs()
            ),
            hint: Some(
                "the instance may be down or not reading its admin relay; try a longer --timeout or later",
            ),
        }),
    }
}

/// Most pages read of a list (far more than a key's log holds).
const MAX_PAGES: usize = 64;

/// Every item of a paged list: `request(cursor)` until the last page.
pub(crate) async fn pages<T: serde::de::DeserializeOwned>(
    user: &Keys,
    service: &PublicKey,
    relay: &RelayUrl,
    deadline: Deadline,
    request: impl Fn(Option<u64>) -> AdminRequest,
) -> Result<Result<Vec<T>, String>, Unusable> {
    let mut items = Vec::new();
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        let result = match call(user, service, relay, &request(cursor), deadline).await? {
            Ok(result) => result,
            Err(e) => return Ok(Err(e)),
        };
        let page = page::<T>(&result)?;
        items.extend(page.items);
        match page.next {
            Some(next) if Some(next) > cursor => cursor = Some(next),
            _ => return Ok(Ok(items)),
        }
    }
    Ok(Ok(items))
}
