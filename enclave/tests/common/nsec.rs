//! nsec.app permission events made here, as nsec.app makes them: signed
//! by the user's key, NIP-04 to itself, tagged `nsec.app/perm`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use enclave::signer::Dropped;
use nostr::{Event, EventBuilder, Keys, Kind, PublicKey, Tag, Timestamp, ToBech32};
use verifier::grant::nsecapp::{d_tag, KIND_APP_DATA, PERM_TAG};
use verifier::rpc::admin::AdminRequest;
use verifier::rpc::cipher::{Conversation, Scheme};

use super::clocked::admin_at;
use super::in_process::Enclave;

/// `author`'s permission event about `app`, its payload naming `named`.
pub(crate) fn perm_event(
    author: &Keys,
    named: &PublicKey,
    app: &PublicKey,
    body: serde_json::Value,
) -> Event {
    let mut body = body;
    body["npub"] = named.to_bech32().unwrap().into();
    body["appNpub"] = app.to_bech32().unwrap().into();
    let content = Conversation::new(Scheme::Nip04, author.secret_key(), &author.public_key())
        .unwrap()
        .encrypt(&body.to_string())
        .unwrap();
    EventBuilder::new(Kind::from(KIND_APP_DATA), content)
        .tag(Tag::identifier(d_tag(named, app)))
        .tag(Tag::hashtag(PERM_TAG))
        .custom_created_at(Timestamp::from(1_700_000_000))
        .sign_with_keys(author)
        .unwrap()
}

pub(crate) fn perms(updated: u64, perms_updated: u64, perms: &[(&str, &str)]) -> serde_json::Value {
    let perms: Vec<_> = perms
        .iter()
        .map(|(p, v)| serde_json::json!({"id": "1", "perm": p, "value": v, "timestamp": 1}))
        .collect();
    serde_json::json!({
        "name": "Coracle", "icon": "https://coracle.example/i.png", "url": "https://coracle.example",
        "timestamp": 1, "updateTimestamp": updated, "permUpdateTimestamp": perms_updated,
        "userAgent": "test", "token": "abc", "perms": perms,
    })
}

pub(crate) fn deleted(updated: u64) -> serde_json::Value {
    serde_json::json!({"updateTimestamp": updated, "deleted": true})
}

pub(crate) fn imported(e: &Enclave, t: u64) -> Keys {
    let user = Keys::generate();
    let import = AdminRequest::ImportKey {
        keys: user.clone(),
        relays: vec![e.relay.clone()],
        apps: Default::default(),
    };
    assert_eq!(admin_at(e, &user, &import, t), Ok("ok".into()));
    user
}

pub(crate) fn deliver(e: &Enclave, event: &Event, t: u64) -> Result<(), Dropped> {
    let outcome = e.signer.try_handle(event, &e.relay, t)?;
    assert!(
        outcome.reply.is_none(),
        "permission events are never answered"
    );
    Ok(())
}

/// `user`'s permission event about `app` with `body`, applied at `t`.
pub(crate) fn set(e: &Enclave, user: &Keys, app: &Keys, body: serde_json::Value, t: u64) {
    let event = perm_event(user, &user.public_key(), &app.public_key(), body);
    deliver(e, &event, t).unwrap();
}

/// Milliseconds of the unix time `t`.
pub(crate) fn ms(t: u64) -> u64 {
    t * 1000
}
