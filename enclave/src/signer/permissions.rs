//! nsec.app permission events (kind 30078, `t` = `nsec.app/perm`) of held
//! keys, as they arrive from relays: checked, decrypted and merged into
//! the apps' grants (`verifier::grant::nsecapp`, and
//! `KeyStore::apply_nsec_app` for how they combine with the owner's admin
//! grants). They are never answered. Only events the key itself signed
//! count, the payload must name that key, and test keys have none.

use nostr::{Event, ToBech32};
use tracing::info;
use verifier::grant::nsecapp::{is_perm_event, parse_payload, Merged, Payload, MAX_PAYLOAD};
use verifier::rpc::cipher::{Conversation, Scheme};
use verifier::rpc::isolation::check_app;

use super::{Change, Dropped, Outcome, Signer};

/// Handles `event`, a kind 30078 event, at `now`.
pub fn handle(signer: &Signer, event: &Event, now: u64) -> Result<Outcome, Dropped> {
    if !is_perm_event(event.kind.as_u16(), event.tags.iter().map(|t| t.as_slice())) {
        return Err(Dropped::Kind);
    }
    let user = event.pubkey;
    let secret = signer
        .store()
        .get(&user)
        .filter(|k| k.expires_at().is_none())
        .map(|k| k.secret_key())
        .ok_or(Dropped::NotOurs)?;
    // A replay of an event applied lately costs nothing more; one too
    // large to hold a payload is not decrypted.
    if signer.store().nsec_seen(&user, event.id.as_bytes()) {
        return Err(Dropped::Duplicate);
    }
    if event.content.len() > MAX_PAYLOAD / 3 * 4 + 64 {
        return Err(Dropped::TooLarge);
    }
    event.verify().map_err(|_| Dropped::Signature)?;
    let d = event.tags.iter().find_map(|t| match t.as_slice() {
        [name, value, ..] if name == "d" => Some(value.as_str()),
        _ => None,
    });
    let plaintext = Conversation::new(Scheme::Nip04, &secret, &user)
        .and_then(|c| c.decrypt(&event.content))
        .map_err(|_| Dropped::Undecryptable)?;
    let payload = parse_payload(&plaintext, &user, d).map_err(|_| Dropped::BadPermissions)?;
    drop(plaintext);
    let (Payload::App { app, .. } | Payload::Deleted { app, .. }) = &payload;
    // An app is never one of the enclave's own keys.
    check_app(signer, &user, app).map_err(|_| Dropped::OwnKeyAsApp)?;
    let applied = {
        let mut store = signer.store();
        store.nsec_applied(&user, event.id.to_bytes());
        store.apply_nsec_app(&user, payload, now)
    };
    let Some(applied) = applied else {
        return Ok(Outcome::default());
    };
    let npub = |p: &nostr::PublicKey| p.to_bech32().unwrap_or_default();
    if let Some((key, app)) = applied.dropped.first() {
        // One line per event, however many went (at most a few hundred).
        info!(
            dropped = applied.dropped.len(),
            first_key = %npub(key),
            first_app = %npub(app),
            "nsec.app grants dropped to make room: nsec.app's share of grant memory is full and those keys held more than their fair share"
        );
    }
    if applied.refused {
        info!(
            key = %npub(&user),
            app = %npub(&applied.app),
            "nsec.app permissions refused (no room, or too many apps): the app has nothing"
        );
    } else if applied.merged != Merged::Unchanged {
        info!(
            key = %npub(&user),
            app = %npub(&applied.app),
            change = ?applied.merged,
            "nsec.app permissions applied"
        );
    }
    Ok(Outcome {
        change: Change::synced(applied.relays_changed),
        ..Outcome::default()
    })
}
