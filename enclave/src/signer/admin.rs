//! The admin API (kind 24135): the request's signer acts on its own key.
//! See `verifier::rpc::admin` for the methods, and
//! [`crate::custody::admission`] for the proof of work asked of requests
//! that take a new key, test key or relay slot.

use nostr::{PublicKey, ToBech32};
use tracing::info;
use verifier::grant::wire::source;
use verifier::grant::Policy;
use verifier::rpc::admin::{AdminRequest, OK, PONG};
use verifier::rpc::bunker::bunker_url;
use verifier::rpc::isolation::check_app;
use verifier::rpc::{Request, Response};

use super::{grants, nostrconnect, Change, Reply, Signer};
use crate::custody::{Imported, StoreError};

/// Handles `request` from `requester`, whose event carried `pow` bits of
/// proof of work; says how the held keys changed, and puts in `also` any
/// other event to send.
pub fn handle(
    signer: &Signer,
    requester: &PublicKey,
    request: &Request,
    pow: u8,
    now: u64,
    also: &mut Option<Reply>,
) -> (Response, Change) {
    let max_relays = signer.config.limits.max_relays_per_key;
    let parsed = match AdminRequest::parse(request, max_relays) {
        Ok(parsed) => parsed,
        Err(e) => return (Response::error(&request.id, e), Change::None),
    };
    if let AdminRequest::ImportKey { keys, .. } | AdminRequest::ConnectKey { keys, .. } = &parsed {
        if keys.public_key() != *requester {
            let e = format!(
                "{}: the private key is not the key that signed this request",
                parsed.method()
            );
            return (Response::error(&request.id, e), Change::None);
        }
    }
    let app = match &parsed {
        AdminRequest::ConnectKey { app, .. } | AdminRequest::Grant { app, .. } => Some(*app),
        AdminRequest::NostrConnect { uri, .. } => Some(uri.client),
        _ => None,
    };
    // An app is never the service key or the user's own key (isolation::check_app).
    if let Some(Err(e)) = app.map(|app| check_app(signer, requester, &app)) {
        let e = format!("{}: {e}", parsed.method());
        return (Response::error(&request.id, e), Change::None);
    }
    let who = npub(requester);
    let id = &request.id;
    let mut store = signer.store();
    // Any request the key's owner signs keeps an idle key (custody::lifecycle).
    store.touch(requester, now);
    let fail = |e: StoreError| (Response::error(id, e.to_string()), Change::None);
    match parsed {
        AdminRequest::Ping => (Response::ok(id, PONG), Change::None),
        AdminRequest::HasKey => (
            Response::ok(
                id,
                if store.holds(requester) {
                    "true"
                } else {
                    "false"
                },
            ),
            Change::None,
        ),
        AdminRequest::KeyStatus => (
            Response::ok(id, store.status(requester, now).to_json()),
            Change::None,
        ),
        AdminRequest::ImportKey { keys, relays, apps } => {
            let on = relays.clone();
            match store.import(keys, relays, apps, pow, now) {
                Ok(imported) => {
                    note_displaced(&imported);
                    info!(
                        key = %who,
                        new = imported.new,
                        apps_kept = imported.apps_kept,
                        "key imported"
                    );
                    (
                        Response::ok(id, import_result(&imported)),
                        Change::moved(imported.relays_changed, on),
                    )
                }
                Err(e) => fail(e),
            }
        }
        AdminRequest::ConnectKey {
            keys,
            app,
            relays,
            policy,
        } => {
            let on = relays.clone();
            let policy = policy.unwrap_or_else(Policy::full);
            let imported = match store.import(keys, relays, Default::default(), pow, now) {
                Ok(imported) => imported,
                Err(e) => return fail(e),
            };
            note_displaced(&imported);
            let granted = store.grant(requester, app, &policy, source::CONNECT_KEY, pow, now);
            match granted {
                Ok(()) => {
                    info!(
                        key = %who,
                        new = imported.new,
                        app = %npub(&app),
                        perms = %super::nip46::short_perms(&policy.perms),
                        "key imported, app allowed"
                    );
                    (
                        Response::ok(id, OK),
                        Change::moved(imported.relays_changed, on),
                    )
                }
                Err(e) => (
                    Response::error(id, e.to_string()),
                    Change::moved(imported.relays_changed, on),
                ),
            }
        }
        AdminRequest::DeleteKey => match store.delete(requester) {
            Ok(()) => {
                info!(key = %who, "key deleted");
                (Response::ok(id, OK), Change::Keys(Vec::new()))
            }
            Err(e) => fail(e),
        },
        AdminRequest::GenerateTestKey { relays } => {
            match store.generate_test_key(requester, relays, pow, now) {
                Ok((pubkey, secret)) => {
                    let relays = store
                        .get(&pubkey)
                        .map(|k| k.relays().to_vec())
                        .unwrap_or_default();
                    info!(requester = %who, key = %npub(&pubkey), "test key generated");
                    (
                        Response::ok(id, bunker_url(&pubkey, &relays, Some(&secret)).as_str()),
                        Change::Keys(relays),
                    )
                }
                Err(e) => fail(e),
            }
        }
        AdminRequest::CreateBunkerUrl { policy } => {
            let policy = policy.unwrap_or_else(Policy::full);
            match store.new_secret(requester, policy, pow, now) {
                Ok(secret) => {
                    let relays = store
                        .get(requester)
                        .map(|k| k.relays().to_vec())
                        .unwrap_or_default();
                    let url = bunker_url(requester, &relays, Some(&secret));
                    (Response::ok(id, url.as_str()), Change::None)
                }
                Err(e) => fail(e),
            }
        }
        AdminRequest::RevokeApp { app } => match store.logout(requester, &app, now) {
            Ok(removed) if removed.had => {
                info!(key = %who, app = %npub(&app), "app revoked by the owner");
                (Response::ok(id, OK), Change::synced(removed.relays_changed))
            }
            Ok(_) => (
                Response::error(id, "revoke_app: this app is not allowed on your key"),
                Change::None,
            ),
            Err(e) => fail(e),
        },
        AdminRequest::Grant { app, policy } => {
            match store.grant(requester, app, &policy, source::GRANT, pow, now) {
                Ok(()) => {
                    info!(key = %who, app = %npub(&app), perms = %super::nip46::short_perms(&policy.perms), "grant changed by the owner");
                    (Response::ok(id, OK), Change::None)
                }
                Err(e) => fail(e),
            }
        }
        AdminRequest::ListApps { cursor } => match grants::list_apps(&store, requester, cursor) {
            Some(page) => (Response::ok(id, page), Change::None),
            None => fail(StoreError::NoKey),
        },
        AdminRequest::GetLog { cursor } => match grants::get_log(&store, requester, cursor) {
            Some(page) => (Response::ok(id, page), Change::None),
            None => fail(StoreError::NoKey),
        },
        AdminRequest::NostrConnect { uri, policy } => {
            match nostrconnect::answer(&mut store, requester, &uri, policy, pow, now) {
                Ok((reply, change)) => {
                    info!(key = %who, app = %npub(&uri.client), "nostrconnect app connected");
                    *also = Some(reply);
                    (Response::ok(id, uri.client.to_hex()), change)
                }
                Err(e) => fail(e),
            }
        }
    }
}

/// Says in the operator's log which key a full enclave let go for `imported`.
fn note_displaced(imported: &Imported) {
    if let Some(gone) = &imported.displaced {
        info!(
            key = %npub(gone),
            "key displaced: the enclave was full and it served no app; a newcomer paid for its slot"
        );
    }
}

/// `import_key`'s result: `ok` for a new key (as the original), and for a
/// key already held, what was kept.
fn import_result(imported: &Imported) -> String {
    if imported.new || (imported.apps_kept == 0 && imported.secrets_kept == 0) {
        return OK.to_owned();
    }
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "ok: already held; {} and {} kept (import again with \"drop\" as the third parameter to revoke them)",
        plural(imported.apps_kept, "app", "apps"),
        plural(imported.secrets_kept, "pending bunker secret", "pending bunker secrets"),
    )
}

fn npub(p: &PublicKey) -> String {
    p.to_bech32().unwrap_or_default()
}
