//! The admin API (kind 24135): the request's signer acts on its own key.
//! See `verifier::rpc::admin` for the methods.

use nostr::{PublicKey, ToBech32};
use tracing::info;
use verifier::rpc::admin::{AdminRequest, OK, PONG};
use verifier::rpc::bunker::bunker_url;
use verifier::rpc::{Request, Response};

use super::Signer;
use crate::custody::StoreError;

/// Handles `request` from `requester`; the flag says whether keys changed.
pub fn handle(
    signer: &Signer,
    requester: &PublicKey,
    request: &Request,
    now: u64,
) -> (Response, bool) {
    let max_relays = signer.config.limits.max_relays_per_key;
    let parsed = match AdminRequest::parse(request, max_relays) {
        Ok(parsed) => parsed,
        Err(e) => return (Response::error(&request.id, e), false),
    };
    if let AdminRequest::ImportKey { keys, .. } | AdminRequest::ConnectKey { keys, .. } = &parsed {
        if keys.public_key() != *requester {
            let e = format!(
                "{}: the private key is not the key that signed this request",
                parsed.method()
            );
            return (Response::error(&request.id, e), false);
        }
    }
    let who = requester.to_bech32().unwrap_or_default();
    let id = &request.id;
    let mut store = signer.store();
    match parsed {
        AdminRequest::Ping => (Response::ok(id, PONG), false),
        AdminRequest::HasKey => (
            Response::ok(
                id,
                if store.get(requester).is_some() {
                    "true"
                } else {
                    "false"
                },
            ),
            false,
        ),
        AdminRequest::ImportKey { keys, relays } => match store.import(keys, relays) {
            Ok(new) => {
                info!(key = %who, new, "key imported");
                (Response::ok(id, OK), true)
            }
            Err(e) => (Response::error(id, e.to_string()), false),
        },
        AdminRequest::ConnectKey { keys, app, relays } => {
            let limits = store.limits().clone();
            let new = match store.import(keys, relays) {
                Ok(new) => new,
                Err(e) => return (Response::error(id, e.to_string()), false),
            };
            let granted = store
                .get_mut(requester)
                .ok_or(StoreError::NoKey)
                .and_then(|k| k.grant(app, &limits).map_err(StoreError::Connect));
            match granted {
                Ok(()) => {
                    info!(key = %who, new, app = %app.to_bech32().unwrap_or_default(), "key imported, app allowed");
                    (Response::ok(id, OK), true)
                }
                Err(e) => (Response::error(id, e.to_string()), true),
            }
        }
        AdminRequest::DeleteKey => match store.delete(requester) {
            Ok(()) => {
                info!(key = %who, "key deleted");
                (Response::ok(id, OK), true)
            }
            Err(e) => (Response::error(id, e.to_string()), false),
        },
        AdminRequest::GenerateTestKey { relays } => {
            match store.generate_test_key(requester, relays, now) {
                Ok((pubkey, secret)) => {
                    let relays = store
                        .get(&pubkey)
                        .map(|k| k.relays().to_vec())
                        .unwrap_or_default();
                    info!(requester = %who, key = %pubkey.to_bech32().unwrap_or_default(), "test key generated");
                    (
                        Response::ok(id, bunker_url(&pubkey, &relays, Some(&secret)).as_str()),
                        true,
                    )
                }
                Err(e) => (Response::error(id, e.to_string()), false),
            }
        }
        AdminRequest::CreateBunkerUrl => {
            let limits = store.limits().clone();
            match store.get_mut(requester) {
                Some(key) => {
                    let secret = key.new_secret(now, &limits);
                    let url = bunker_url(requester, key.relays(), Some(&secret));
                    (Response::ok(id, url.as_str()), false)
                }
                None => (Response::error(id, StoreError::NoKey.to_string()), false),
            }
        }
    }
}
