//! NIP-46 and admin messages, their ciphers, connection URIs, event
//! templates and relay lists.

use nostr::{Event, JsonUtil, PublicKey};
use verifier::event::relay_list::{outbox_of, write_relays};
use verifier::rpc::admin::AdminRequest;
use verifier::rpc::bunker::{bunker_url, parse_bunker_url};
use verifier::rpc::cipher::{Conversation, Scheme};
use verifier::rpc::isolation::{holds_key_material, KEY_RUN};
use verifier::rpc::nip44::{self, ConversationKey};
use verifier::rpc::nostrconnect::NostrConnect;
use verifier::rpc::relays::{parse_relay_url, parse_relays_csv};
use verifier::rpc::status::KeyStatus;
use verifier::rpc::{Params, Request, Response};

use crate::support::{fields, fixed_keys, text};

/// The most relays the enclave takes in one parameter.
const MAX_RELAYS: usize = 8;

/// A decrypted request or response, as JSON. What parses survives a
/// round trip; a request that parses is also read as an admin request.
pub fn rpc_message(data: &[u8]) {
    let Some(t) = text(data) else {
        return;
    };
    if let Ok(request) = Request::parse(t) {
        match Request::parse(&request.to_json()) {
            Ok(again) => assert!(again == request, "request round trip"),
            Err(e) => panic!("a parsed request does not parse again: {e}"),
        }
        admin_round_trip(&request);
    }
    if let Ok(response) = Response::parse(t) {
        match Response::parse(&response.to_json()) {
            Ok(again) => assert!(again == response, "response round trip"),
            Err(e) => panic!("a parsed response does not parse again: {e}"),
        }
    }
}

/// Admin parameters: the first line is the method, the rest are its
/// parameters separated by NUL; `$nsec`, `$npub` and `$hex` stand for a
/// fixed key so that valid requests are within reach.
pub fn admin_params(data: &[u8]) {
    let Some(t) = text(data) else {
        return;
    };
    let (method, rest) = t.split_once('\n').unwrap_or((t, ""));
    let keys = fixed_keys(0);
    let expand = |p: String| {
        p.replace("$nsec", &keys.secret_key().to_secret_hex())
            .replace("$npub", &npub(&keys.public_key()))
            .replace("$hex", &keys.public_key().to_hex())
    };
    let params: Vec<String> = if rest.is_empty() {
        Vec::new()
    } else {
        fields(rest).into_iter().map(expand).collect()
    };
    let request = Request {
        id: "fuzz".into(),
        method: method.to_owned(),
        params: Params::new(params),
    };
    admin_round_trip(&request);
}

fn npub(key: &PublicKey) -> String {
    use nostr::ToBech32;
    key.to_bech32().unwrap_or_default()
}

/// An admin request that parses is sent again as its own request, which
/// must parse to the same thing.
fn admin_round_trip(request: &Request) {
    if let Ok(admin) = AdminRequest::parse(request, MAX_RELAYS) {
        match AdminRequest::parse(&admin.to_request(), MAX_RELAYS) {
            Ok(again) => assert!(again == admin, "admin request round trip"),
            Err(e) => panic!("an admin request does not parse again: {e}"),
        }
    }
}

/// NIP-44 v2 payloads under a fixed conversation key; and the input as a
/// plaintext, which must decrypt back to itself.
pub fn nip44_decrypt(data: &[u8]) {
    let key = ConversationKey::from_bytes([7; 32]);
    if let Some(t) = text(data) {
        let _ = nip44::decrypt(&key, t);
        let keys = fixed_keys(1);
        let _ = Conversation::open(keys.secret_key(), &fixed_keys(2).public_key(), t);
    }
    if let Ok(payload) = nip44::encrypt(&key, data) {
        match nip44::decrypt(&key, &payload) {
            Ok(plain) => assert_eq!(plain.as_slice(), data, "NIP-44 round trip"),
            Err(e) => panic!("NIP-44 cannot decrypt its own payload: {e}"),
        }
    }
}

/// NIP-04 payloads (`base64?iv=base64`) between two fixed keys.
pub fn nip04_decrypt(data: &[u8]) {
    let Some(t) = text(data) else {
        return;
    };
    let ours = fixed_keys(1);
    let peer = fixed_keys(2).public_key();
    if let Ok(conversation) = Conversation::new(Scheme::Nip04, ours.secret_key(), &peer) {
        let _ = conversation.decrypt(t);
    }
}

/// `bunker://` URLs: what parses is printed and parsed to the same.
pub fn bunker_uri(data: &[u8]) {
    let Some(t) = text(data) else {
        return;
    };
    if let Ok(bunker) = parse_bunker_url(t) {
        let url = bunker_url(
            &bunker.signer,
            &bunker.relays,
            bunker.secret.as_deref().map(|s| s.as_str()),
        );
        match parse_bunker_url(&url) {
            Ok(again) => assert!(again == bunker, "bunker URL round trip"),
            Err(e) => panic!("a printed bunker URL does not parse: {e}"),
        }
    }
}

/// `nostrconnect://` URIs: what parses is printed and parsed to the same.
pub fn nostrconnect_uri(data: &[u8]) {
    let Some(t) = text(data) else {
        return;
    };
    if let Ok(uri) = NostrConnect::parse(t, MAX_RELAYS) {
        let _ = uri.claims();
        let _ = uri.response();
        match NostrConnect::parse(&uri.to_uri(), MAX_RELAYS) {
            Ok(again) => assert!(again == uri, "nostrconnect URI round trip"),
            Err(e) => panic!("a printed nostrconnect URI does not parse: {e}"),
        }
    }
}

/// `sign_event` templates; a template that parses can be signed.
pub fn sign_event_template(data: &[u8]) {
    let Some(t) = text(data) else {
        return;
    };
    let keys = fixed_keys(3);
    if let Ok(unsigned) = enclave::signer::template::parse(t, &keys.public_key()) {
        assert_eq!(
            unsigned.pubkey,
            keys.public_key(),
            "template of another author"
        );
        if let Ok(event) = unsigned.sign_with_keys(&keys) {
            assert!(event.verify().is_ok(), "a signed template does not verify");
        }
    }
}

/// Relay lists (kinds 10002 and 3) as event JSON, and relay URLs and
/// comma-separated lists as the admin API takes them.
pub fn relay_list(data: &[u8]) {
    let Some(t) = text(data) else {
        return;
    };
    if let Ok(event) = Event::from_json(t) {
        let relays = write_relays(&event);
        assert!(relays.len() <= verifier::event::relay_list::MAX_RELAYS_PER_LIST);
        let _ = outbox_of([&event], &event.pubkey);
    }
    if let Ok(list) = parse_relays_csv(t, MAX_RELAYS) {
        assert!(list.len() <= MAX_RELAYS, "more relays than the cap");
    }
    let _ = parse_relay_url(t);
}

/// `key_status` results, as `verifier key status` reads them from an
/// enclave: what parses is described and survives a round trip.
pub fn key_status(data: &[u8]) {
    let Some(t) = text(data) else {
        return;
    };
    if let Ok(status) = KeyStatus::from_json(t) {
        let _ = status.describe();
        assert!(
            KeyStatus::from_json(&status.to_json()).as_ref() == Ok(&status),
            "key status round trip"
        );
    }
}

/// The key-material rule (`isolation::holds_key_material`) on any text,
/// and on any text with a run of a fixed key's hex, nsec or bytes put in
/// it (where, which run, which form and case chosen by the input): such a
/// text is always caught.
pub fn key_material(data: &[u8]) {
    let keys = fixed_keys(1);
    let secret = keys.secret_key();
    let text_of = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let _ = holds_key_material(secret, &text_of(data));
    let [form, start, at, case, rest @ ..] = data else {
        return;
    };
    let hex = secret.to_secret_hex();
    let nsec = nostr::ToBech32::to_bech32(secret).unwrap_or_default();
    let raw = secret.to_secret_bytes();
    let run: Vec<u8> = match form % 3 {
        0 => hex.as_bytes().to_vec(),
        1 => nsec.as_bytes().to_vec(),
        // The raw bytes are put in only where they are valid UTF-8.
        _ => raw.to_vec(),
    };
    let from = usize::from(*start) % (run.len() - KEY_RUN + 1);
    let mut piece = run.get(from..from + KEY_RUN).unwrap_or_default().to_vec();
    if form % 3 != 2 && case % 2 == 1 {
        piece.make_ascii_uppercase();
    }
    let Ok(piece) = String::from_utf8(piece) else {
        return;
    };
    let mut plain = text_of(rest);
    let mut cut = usize::from(*at).min(plain.len());
    while !plain.is_char_boundary(cut) {
        cut -= 1;
    }
    plain.insert_str(cut, &piece);
    assert!(
        holds_key_material(secret, &plain),
        "a run of the key was missed"
    );
}
