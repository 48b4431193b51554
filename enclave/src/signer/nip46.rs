//! NIP-46 (kind 24133) for a held key: the current method set. Apps must
//! `connect` (with a single-use secret from a bunker URL) or be granted by
//! the owner (`connect_key`, `grant`) before any other method, and then
//! their grant (`verifier::grant`) decides each request: a refusal is an
//! error reply naming the method, the kind and the rule, is logged for
//! the key's owner, and shows in the operator's log (at most
//! [`REFUSAL_LINES`] lines a minute).
//!
//! Every method obeys the isolation rule of `verifier::rpc::isolation`: a
//! key the enclave uses for its own protocols (the service key, any other
//! held key, an app allowed on this key) is never a peer of
//! `nip04_*`/`nip44_*`; `sign_event` never signs a kind 24133 or 24135
//! event; and no decryption that is a protocol message or holds the user's
//! private key is returned. Each refusal is an error reply saying why; a
//! failed `nip04_decrypt` always says the same thing.

use std::sync::Mutex;

use nostr::{Keys, PublicKey, ToBech32};
use tracing::info;
use verifier::grant::{Action, Decision, Method, Perms, Refusal};
use verifier::rpc::cipher::{Conversation, Scheme};
use verifier::rpc::isolation::{
    check_event, check_outgoing, check_peer, check_plaintext, NIP04_DECRYPT_FAILED,
};
use verifier::rpc::{Request, Response};
use zeroize::Zeroizing;

use super::{template, Change, Signer, StoreKeys};

/// An isolation check run with the store's view of the enclave's keys.
type Isolation<'a> = dyn Fn(&StoreKeys<'_>) -> Result<(), String> + 'a;

/// Method names.
pub mod method {
    /// Start a session.
    pub const CONNECT: &str = "connect";
    /// The user's public key.
    pub const GET_PUBLIC_KEY: &str = "get_public_key";
    /// Sign an event template.
    pub const SIGN_EVENT: &str = "sign_event";
    /// Liveness.
    pub const PING: &str = "ping";
    /// NIP-04 encryption to a third party.
    pub const NIP04_ENCRYPT: &str = "nip04_encrypt";
    /// NIP-04 decryption from a third party.
    pub const NIP04_DECRYPT: &str = "nip04_decrypt";
    /// NIP-44 encryption to a third party.
    pub const NIP44_ENCRYPT: &str = "nip44_encrypt";
    /// NIP-44 decryption from a third party.
    pub const NIP44_DECRYPT: &str = "nip44_decrypt";
    /// The relays the signer listens on.
    pub const SWITCH_RELAYS: &str = "switch_relays";
    /// End the session.
    pub const LOGOUT: &str = "logout";
    /// Every method served.
    pub const ALL: [&str; 10] = [
        CONNECT,
        GET_PUBLIC_KEY,
        SIGN_EVENT,
        PING,
        NIP04_ENCRYPT,
        NIP04_DECRYPT,
        NIP44_ENCRYPT,
        NIP44_DECRYPT,
        SWITCH_RELAYS,
        LOGOUT,
    ];
}

/// `connect`'s and `logout`'s result.
pub const ACK: &str = "ack";

/// Handles `request` from `app` for the key `keys`; says whether the key's
/// relays changed (an app that leaves takes the relays it added).
pub fn handle(
    signer: &Signer,
    keys: &Keys,
    app: &PublicKey,
    request: &Request,
    now: u64,
) -> (Response, Change) {
    let mut change = Change::None;
    let response = match run(signer, keys, app, request, now, &mut change) {
        Ok(result) => Response::ok(&request.id, result),
        Err(e) => Response::error(&request.id, e),
    };
    (response, change)
}

fn run(
    signer: &Signer,
    keys: &Keys,
    app: &PublicKey,
    request: &Request,
    now: u64,
    change: &mut Change,
) -> Result<String, String> {
    let user = keys.public_key();
    let method = request.method.as_str();
    if !method::ALL.contains(&method) {
        return Err(format!("unknown method {method:?}"));
    }
    if method == method::CONNECT {
        return connect(signer, &user, app, request, now);
    }
    {
        let store = signer.store();
        let key = store.get(&user).ok_or("this key is no longer held")?;
        if !key.allows(app) {
            return Err(not_connected(key, app, method));
        }
    }
    let Some(granted) = Method::from_name(method) else {
        return Err(format!("unknown method {method:?}"));
    };
    let refuse = |action: &Action, refusal: Refusal, message: String| {
        note_refusal(signer, &user, app, action, refusal, now);
        message
    };
    // The grant, then the isolation rule (no grant allows breaking it),
    // then the decision, all under one hold of the store's lock: a grant
    // changed between them cannot let a request past the isolation rule.
    // A request the grant names meets the isolation rule before it is
    // counted; one it does not is refused by the grant, so a scoped app
    // learns nothing (such as which keys are held) from requests it may
    // not make anyway. Either way one decision is logged.
    let guarded = |action: &Action, isolation: Option<&Isolation<'_>>| {
        let outcome = {
            let mut store = signer.store();
            let broken = isolation
                .filter(|_| store.permits(&user, app, action, now))
                .and_then(|check| {
                    check(&StoreKeys::new(&store, signer.service_key()))
                        .err()
                        .map(|e| {
                            store.log_refused(&user, app, action, Refusal::Isolation, now);
                            format!("{method}: {e}")
                        })
                });
            match broken {
                Some(message) => Err((Refusal::Isolation, message)),
                None => match store.decide(&user, app, action, now) {
                    Some(Decision::Allowed) => Ok(()),
                    Some(Decision::Refused(r)) => Err((r, r.message(action))),
                    None => {
                        return Err(match store.get(&user) {
                            Some(key) => not_connected(key, app, method),
                            None => "this key is no longer held".to_owned(),
                        })
                    }
                },
            }
        };
        // The store's lock is released before the operator's line.
        outcome.map_err(|(refusal, message)| {
            note_operator(signer, &user, app, action, refusal, now);
            message
        })
    };
    let decide = |action: &Action| guarded(action, None);
    let param = |i: usize, name: &str| {
        request
            .params
            .get(i)
            .ok_or_else(|| format!("{method}: missing parameter {name}"))
    };
    let peer = |i: usize| {
        let peer = PublicKey::parse(param(i, "pubkey")?)
            .map_err(|_| format!("{method}: the pubkey is not valid"))?;
        let action = Action::crypto(granted, peer);
        guarded(
            &action,
            Some(&|keys: &StoreKeys<'_>| check_peer(keys, &user, &peer).map_err(|e| e.to_string())),
        )?;
        Ok::<PublicKey, String>(peer)
    };
    match method {
        method::GET_PUBLIC_KEY => {
            decide(&Action::method(granted))?;
            Ok(user.to_hex())
        }
        method::PING => {
            decide(&Action::method(granted))?;
            Ok("pong".into())
        }
        method::SIGN_EVENT => {
            let unsigned = template::parse(param(0, "event")?, &user)?;
            let kind = unsigned.kind.as_u16();
            let action = Action::sign(kind, Some(unsigned.created_at.as_secs()));
            guarded(
                &action,
                Some(&|_: &StoreKeys<'_>| {
                    check_event(kind, unsigned.tags.iter().map(|t| t.as_slice()))
                        .map_err(|e| e.to_string())
                }),
            )?;
            let event = unsigned
                .sign_with_keys(keys)
                .map_err(|e| format!("sign_event: {e}"))?;
            Ok(nostr::JsonUtil::as_json(&event))
        }
        method::NIP04_ENCRYPT | method::NIP44_ENCRYPT => {
            let plaintext = param(1, "plaintext")?;
            let peer = peer(0)?;
            check_outgoing(plaintext).map_err(|e| {
                let action = Action::crypto(granted, peer);
                refuse(&action, Refusal::Isolation, format!("{method}: {e}"))
            })?;
            Conversation::new(scheme_of(method), keys.secret_key(), &peer)
                .and_then(|c| c.encrypt(plaintext))
                .map_err(|e| format!("{method}: {e}"))
        }
        method::NIP04_DECRYPT | method::NIP44_DECRYPT => {
            let ciphertext = param(1, "ciphertext")?;
            let peer = peer(0)?;
            let scheme = scheme_of(method);
            let text = Conversation::new(scheme, keys.secret_key(), &peer)
                .and_then(|c| c.decrypt(ciphertext))
                .map_err(|e| match scheme {
                    // One answer for every failure: NIP-04 has no MAC, so
                    // telling padding errors apart would be an oracle.
                    Scheme::Nip04 => NIP04_DECRYPT_FAILED.to_owned(),
                    Scheme::Nip44 => format!("{method}: {e}"),
                })?;
            check_plaintext(keys.secret_key(), &text).map_err(|e| {
                let action = Action::crypto(granted, peer);
                refuse(&action, Refusal::Isolation, format!("{method}: {e}"))
            })?;
            if scheme == Scheme::Nip04 && text.is_empty() {
                return Err(NIP04_DECRYPT_FAILED.to_owned());
            }
            non_empty(method, text)
        }
        method::SWITCH_RELAYS => {
            decide(&Action::method(granted))?;
            let store = signer.store();
            let relays: Vec<&str> = store
                .get(&user)
                .map(|k| {
                    k.relays()
                        .iter()
                        .map(|r| r.as_str_without_trailing_slash())
                        .collect()
                })
                .unwrap_or_default();
            if relays.is_empty() {
                Ok("null".into())
            } else {
                Ok(serde_json::to_string(&relays).unwrap_or_else(|_| "null".into()))
            }
        }
        method::LOGOUT => {
            decide(&Action::method(granted))?;
            if let Ok(removed) = signer.store().logout(&user, app, now) {
                *change = Change::synced(removed.relays_changed);
            }
            info!(key = %npub(&user), app = %npub(app), "app logged out");
            Ok(ACK.into())
        }
        _ => Err(format!("unknown method {method:?}")),
    }
}

/// Why `app` may not make `method` on `key`: it never connected, or its
/// access ended (the owner's revoke, or its own logout), which the key
/// remembers for the apps whose access the owner last changed (a bounded
/// record it keeps anyway). Only the app itself can ask (the request is
/// signed by it), and it knew it had been connected: nothing leaks.
fn not_connected(key: &crate::custody::UserKey, app: &PublicKey, method: &str) -> String {
    if key.owner_changed_at(app).is_some() {
        format!(
            "unauthorized: this app's access to the key has ended (revoked, or it logged out); \
             {method} needs a new connect, with a new bunker URL from the key's owner"
        )
    } else {
        format!("unauthorized: {method} needs a connect first")
    }
}

/// `connect [signer pubkey or "", secret?, perms?, metadata?]`.
fn connect(
    signer: &Signer,
    user: &PublicKey,
    app: &PublicKey,
    request: &Request,
    now: u64,
) -> Result<String, String> {
    let target = request.params.get(0).unwrap_or("");
    if !target.is_empty() && PublicKey::parse(target).ok() != Some(*user) {
        return Err(format!(
            "connect: this signer is {}, not {target}",
            user.to_hex()
        ));
    }
    let secret = request.params.get(1);
    let asked = request.params.get(2).and_then(Perms::parse_requested);
    let claims = request.params.get(3);
    let mut store = signer.store();
    let policy = |store: &crate::custody::KeyStore| {
        store
            .get(user)
            .and_then(|k| k.app(app))
            .map(|a| a.grant().policy().clone())
    };
    let before = policy(&store);
    store
        .connect(user, *app, secret, asked.as_ref(), claims, now)
        .map_err(|e| match e {
            crate::custody::StoreError::NoKey => "this key is no longer held".to_owned(),
            e => e.to_string(),
        })?;
    let after = policy(&store);
    if after != before {
        let perms = after.map(|p| short_perms(&p.perms)).unwrap_or_default();
        store.log_allowed(user, app, &Action::method(Method::Connect), now);
        info!(key = %npub(user), app = %npub(app), %perms, "app connected");
    }
    Ok(ACK.into())
}

/// Most refusal lines in the operator's log per minute, over all keys;
/// past them, the next line says how many were left out.
pub const REFUSAL_LINES: u32 = 300;
/// Most refusal lines per minute for one app on one key, so one noisy app
/// cannot take the others' lines.
pub const REFUSAL_LINES_PER_APP: u8 = 3;
/// (key, app) pairs whose lines are counted per minute; past it, new
/// pairs share the global budget only.
const THROTTLED_PAIRS: usize = 4096;

/// What the operator's log of refusals spent this minute.
#[derive(Debug, Default)]
pub struct RefusalLines(Mutex<LinesState>);

#[derive(Debug, Default)]
struct LinesState {
    minute: u64,
    lines: u32,
    per_app: std::collections::HashMap<(PublicKey, PublicKey), u8>,
    left_out: u64,
}

/// Logs `app`'s refused `action` on `user`'s key: for the owner (the
/// isolation rule's refusals; the grant's are logged by the store) and
/// for the operator.
fn note_refusal(
    signer: &Signer,
    user: &PublicKey,
    app: &PublicKey,
    action: &Action,
    refusal: Refusal,
    now: u64,
) {
    if refusal == Refusal::Isolation {
        signer.store().log_refused(user, app, action, refusal, now);
    }
    note_operator(signer, user, app, action, refusal, now);
}

/// Logs `app`'s refused `action` on `user`'s key for the operator, within
/// the lines of this minute.
fn note_operator(
    signer: &Signer,
    user: &PublicKey,
    app: &PublicKey,
    action: &Action,
    refusal: Refusal,
    now: u64,
) {
    let mut state = signer
        .refusal_lines
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let minute = now / 60;
    if state.minute != minute {
        state.minute = minute;
        state.lines = 0;
        state.per_app.clear();
    }
    let pairs = state.per_app.len();
    let mine = match state.per_app.get_mut(&(*user, *app)) {
        Some(n) => Some(n),
        None if pairs < THROTTLED_PAIRS => Some(state.per_app.entry((*user, *app)).or_insert(0)),
        None => None,
    };
    let app_full = match mine {
        Some(n) if *n >= REFUSAL_LINES_PER_APP => true,
        Some(n) => {
            *n += 1;
            false
        }
        None => false,
    };
    if app_full || state.lines >= REFUSAL_LINES {
        state.left_out += 1;
        return;
    }
    state.lines += 1;
    let left_out = std::mem::take(&mut state.left_out);
    drop(state);
    info!(
        key = %npub(user),
        app = %npub(app),
        method = %action.method,
        kind = %action.kind.map_or_else(|| "-".to_owned(), |k| k.to_string()),
        reason = refusal.code(),
        left_out,
        "request refused"
    );
}

/// Perms for the operator's log: at most 200 characters.
pub(super) fn short_perms(perms: &Perms) -> String {
    let text = perms.to_string();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!(
            "{}… ({} characters)",
            text.get(..cut).unwrap_or_default(),
            text.len()
        ),
        None => text,
    }
}

/// The scheme a `nip04_*` or `nip44_*` method works in.
fn scheme_of(method: &str) -> Scheme {
    if method.starts_with("nip04") {
        Scheme::Nip04
    } else {
        Scheme::Nip44
    }
}

/// Clients wait forever on an empty result: say so instead. The plaintext
/// moves into the response, which wipes it when dropped.
fn non_empty(method: &str, mut text: Zeroizing<String>) -> Result<String, String> {
    if text.is_empty() {
        Err(format!("{method}: the plaintext is empty"))
    } else {
        Ok(std::mem::take(&mut *text))
    }
}

fn npub(p: &PublicKey) -> String {
    p.to_bech32().unwrap_or_default()
}
