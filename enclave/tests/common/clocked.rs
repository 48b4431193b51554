//! Requests to the signer in process at a time of the test's choosing:
//! for grants, whose expiry, rates and created_at window depend on it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use nostr::{EventBuilder, Keys, Kind, PublicKey, Tag, Timestamp};
use verifier::event::{KIND_ADMIN, KIND_NIP46};
use verifier::grant::{Perms, Policy};
use verifier::rpc::admin::AdminRequest;
use verifier::rpc::cipher::{Conversation, Scheme};
use verifier::rpc::{open_response, Params, Request, Response};

use super::in_process::Enclave;

/// A request event of `kind` from `from` to `to` dated `at`.
pub(crate) fn sealed(
    from: &Keys,
    to: &PublicKey,
    kind: u16,
    request: &Request,
    at: u64,
) -> nostr::Event {
    let content = Conversation::new(Scheme::Nip44, from.secret_key(), to)
        .unwrap()
        .encrypt(&request.to_json())
        .unwrap();
    EventBuilder::new(Kind::from(kind), content)
        .tag(Tag::public_key(*to))
        .custom_created_at(Timestamp::from(at))
        .sign_with_keys(from)
        .unwrap()
}

/// `app` calls `method` on `user`'s key at `at`.
pub(crate) fn call_at(
    e: &Enclave,
    app: &Keys,
    user: &PublicKey,
    method: &str,
    params: &[&str],
    at: u64,
) -> Response {
    let request = Request::new(method, Params::new(params.iter().copied()));
    let event = sealed(app, user, KIND_NIP46, &request, at);
    let reply = e
        .signer
        .try_handle(&event, &e.relay, at)
        .unwrap()
        .reply
        .unwrap();
    open_response(app, &reply.event).unwrap()
}

/// The owner's admin request at `at`.
pub(crate) fn admin_at(
    e: &Enclave,
    user: &Keys,
    request: &AdminRequest,
    at: u64,
) -> Result<String, String> {
    let event = sealed(user, &e.service, KIND_ADMIN, &request.to_request(), at);
    let reply = e
        .signer
        .try_handle(&event, &e.relay, at)
        .unwrap()
        .reply
        .unwrap();
    open_response(user, &reply.event).unwrap().into_result()
}

pub(crate) fn note(kind: u16, at: u64) -> String {
    serde_json::json!({"kind": kind, "content": "hello", "tags": [], "created_at": at}).to_string()
}

pub(crate) fn scoped(perms: &str) -> Policy {
    Policy::new(Perms::parse(perms).unwrap())
}

/// The user's key imported; a bunker secret for `policy`, spent by a new
/// app whose connect asks for `asked` and says `claims`.
pub(crate) fn connected(
    e: &Enclave,
    policy: Policy,
    asked: &str,
    claims: &str,
    at: u64,
) -> (Keys, Keys) {
    let user = Keys::generate();
    let import = AdminRequest::ImportKey {
        keys: user.clone(),
        relays: vec![e.relay.clone()],
        apps: Default::default(),
    };
    assert_eq!(admin_at(e, &user, &import, at), Ok("ok".into()));
    let url = admin_at(
        e,
        &user,
        &AdminRequest::CreateBunkerUrl {
            policy: Some(policy),
        },
        at,
    )
    .unwrap();
    let secret = url.split("secret=").nth(1).unwrap().to_owned();
    let app = Keys::generate();
    let pk = user.public_key().to_hex();
    let r = call_at(
        e,
        &app,
        &user.public_key(),
        "connect",
        &[&pk, &secret, asked, claims],
        at,
    );
    assert_eq!(r.into_result(), Ok("ack".into()));
    (user, app)
}

pub(crate) fn refused(r: Response) -> String {
    r.into_result().unwrap_err()
}
