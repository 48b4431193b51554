//! The owner's answer to an app's `nostrconnect://` URI (the admin
//! method `nostrconnect`, `verifier::rpc::nostrconnect`): the app's client
//! key gets the owner's policy narrowed by the URI's perms, the key listens
//! on the URI's relays too (under the key's relay limits), and the app gets
//! the NIP-46 `connect` response it waits for, from the user's key, on the
//! URI's relays and the key's own, and nowhere else.

use nostr::{EventBuilder, Kind, PublicKey, Tag};
use verifier::event::KIND_NIP46;
use verifier::grant::{Action, Method, Perms, Policy};
use verifier::rpc::cipher::Conversation;
use verifier::rpc::nostrconnect::NostrConnect;

use super::{Change, Reply};
use crate::custody::{signing_keys, KeyStore, StoreError};

/// Grants `uri`'s app on `user`'s key and makes its `connect` response.
/// Nothing changes unless every limit holds (`KeyStore::nostrconnect`).
pub fn answer(
    store: &mut KeyStore,
    user: &PublicKey,
    uri: &NostrConnect,
    policy: Option<Policy>,
    pow: u8,
    now: u64,
) -> Result<(Reply, Change), StoreError> {
    let keys = signing_keys(store.get(user).ok_or(StoreError::NoKey)?.secret_key());
    let policy = uri.owner_policy(policy.as_ref());
    let asked = uri.asked();
    let narrowed = policy.perms.narrow(asked.as_ref());
    if narrowed == Perms::Listed(Vec::new()) && policy.perms != narrowed {
        return Err(StoreError::BadPolicy(
            "nostrconnect: the app asks for nothing that this policy grants".into(),
        ));
    }
    policy.check_at(now).map_err(StoreError::BadPolicy)?;
    let (relays, changed) = store.nostrconnect(
        user,
        uri.client,
        &policy,
        asked.as_ref(),
        &uri.relays,
        pow,
        now,
    )?;
    store.set_claims(user, &uri.client, &uri.claims());
    store.log_allowed(user, &uri.client, &Action::method(Method::Connect), now);
    let content = Conversation::nip44(keys.secret_key(), &uri.client)
        .and_then(|c| c.encrypt(&uri.response().to_json()))
        .map_err(|e| StoreError::BadPolicy(format!("nostrconnect: {e}")))?;
    let event = EventBuilder::new(Kind::from(KIND_NIP46), content)
        .tag(Tag::public_key(uri.client))
        .sign_with_keys(&keys)
        .map_err(|e| StoreError::BadPolicy(format!("nostrconnect: {e}")))?;
    // The URI's relays first: that is where the app waits.
    let mut to = uri.relays.clone();
    for relay in &relays {
        if !to.contains(relay) {
            to.push(relay.clone());
        }
    }
    let change = if changed {
        Change::Keys(relays)
    } else {
        Change::None
    };
    Ok((Reply { event, relays: to }, change))
}
