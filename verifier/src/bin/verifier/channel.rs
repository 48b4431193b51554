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

/// Sends `request` to the admin API and waits for its reply; when the
/// enclave asks for proof of work (it does for new keys and relays when it
/// is busy or filling up), mines it and sends the request again.
pub(crate) async fn call(
    user: &Keys,
    service: &PublicKey,
    relay: &RelayUrl,
    request: &AdminRequest,
    timeout: Duration,
) -> Result<Result<String, String>, Unusable> {
    let mut pow = 0;
    for _ in 0..MAX_POW_ROUNDS {
        let reply = call_once(user, service, relay, request, pow, timeout).await?;
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
    timeout: Duration,
) -> Result<Result<String, String>, Unusable> {
    let wire = request.to_request();
    let event = seal_request_with_pow(user, service, KIND_ADMIN, &wire, Scheme::Nip44, pow)
        .map_err(|e| Unusable::from(e.to_string()))?;
    let client = Client::default();
    client
        .add_relay(relay.clone())
        .await
        .map_err(|e| Unusable::from(format!("{relay}: {e}")))?;
    client.connect().await;
    client.wait_for_connection(timeout).await;
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
    client
        .send_event(&event)
        .await
        .map_err(|e| Unusable::from(format!("cannot send the request to {relay}: {e}")))?;
    let reply = tokio::time::timeout(timeout, async {
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
            message: format!("no reply from the enclave within {}s", timeout.as_secs()),
            hint: Some(
                "the instance may be down or not reading its admin relay; try --timeout or later",
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
    timeout: Duration,
    request: impl Fn(Option<u64>) -> AdminRequest,
) -> Result<Result<Vec<T>, String>, Unusable> {
    let mut items = Vec::new();
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        let result = match call(user, service, relay, &request(cursor), timeout).await? {
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
