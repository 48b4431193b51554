//! The isolation rule (`verifier::rpc::isolation`) under attack, in
//! process on `Signer`: an app connected to a key tries to read the owner's
//! private key from the admin channel, to act as the owner there, and to use
//! other keys' and other apps' conversations. `parent/tests/attacks.rs`
//! performs the same through the real stack.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::in_process::{enclave, forbidden, import, now};
use enclave::signer::SignerConfig;
use nostr::{Keys, RelayUrl};
use verifier::event::{KIND_ADMIN, KIND_NIP46};
use verifier::rpc::admin::AdminRequest;
use verifier::rpc::cipher::{Conversation, Scheme};
use verifier::rpc::{seal_request, Params, Request};

#[test]
fn an_app_cannot_read_the_owners_key_from_the_admin_channel() {
    let e = enclave(SignerConfig::default());
    let (user, app) = e.user_with_app();
    let pk = user.public_key();
    let secret = user.secret_key().to_secret_hex();
    // The owner's import_key, as a relay (or the app) captured it, in both schemes.
    for scheme in [Scheme::Nip44, Scheme::Nip04] {
        let captured = seal_request(
            &user,
            &e.service,
            KIND_ADMIN,
            &import(&e.relay, &user).to_request(),
            scheme,
        )
        .unwrap();
        let method = match scheme {
            Scheme::Nip44 => "nip44_decrypt",
            Scheme::Nip04 => "nip04_decrypt",
        };
        let r = e.call(&app, &pk, method, &[&e.service.to_hex(), &captured.content]);
        assert!(!r.to_json().contains(&secret));
        assert!(forbidden(r).contains("service key"));
    }
    // The owner's admin requests to another enclave, whose service key this
    // one cannot know: refused by what the plaintext is.
    let elsewhere = Keys::generate().public_key();
    let captured = seal_request(
        &user,
        &elsewhere,
        KIND_ADMIN,
        &import(&e.relay, &user).to_request(),
        Scheme::Nip44,
    )
    .unwrap();
    let r = e.call(
        &app,
        &pk,
        "nip44_decrypt",
        &[&elsewhere.to_hex(), &captured.content],
    );
    assert!(!r.to_json().contains(&secret));
    forbidden(r);
    // The key itself, encrypted to the user by anyone: never handed out.
    let carrier = Keys::generate();
    let sealed = Conversation::nip44(carrier.secret_key(), &pk)
        .unwrap()
        .encrypt(&format!("here: {}", secret.to_uppercase()))
        .unwrap();
    let r = e.call(
        &app,
        &pk,
        "nip44_decrypt",
        &[&carrier.public_key().to_hex(), &sealed],
    );
    assert!(forbidden(r).contains("private key"));
}

#[test]
fn an_app_cannot_act_as_the_owner_on_the_admin_channel() {
    let e = enclave(SignerConfig::default());
    let (user, app) = e.user_with_app();
    let pk = user.public_key();
    let intruder = Keys::generate().public_key();
    let grant = AdminRequest::ConnectKey {
        keys: Keys::generate(),
        app: intruder,
        relays: vec![e.relay.clone()],
        policy: None,
    }
    .to_request()
    .to_json();
    // Encrypt an admin request to the service key: refused.
    let r = e.call(&app, &pk, "nip44_encrypt", &[&e.service.to_hex(), &grant]);
    assert!(forbidden(r).contains("service key"));
    let r = e.call(&app, &pk, "nip04_encrypt", &[&e.service.to_hex(), &grant]);
    forbidden(r);
    // Or to any other peer: the plaintext is a protocol message.
    let r = e.call(&app, &pk, "nip44_encrypt", &[&intruder.to_hex(), &grant]);
    forbidden(r);
    // Sign an admin request, or a NIP-46 one, as the user: refused.
    for (kind, to) in [
        (KIND_ADMIN, e.service),
        (KIND_NIP46, pk),
        (KIND_NIP46, intruder),
    ] {
        let template = serde_json::json!({
            "kind": kind, "content": "x", "tags": [["p", to.to_hex()]],
            "created_at": now(),
        })
        .to_string();
        let r = e.call(&app, &pk, "sign_event", &[&template]);
        assert!(forbidden(r).contains(&kind.to_string()));
    }
    // Nothing changed: no other app, the key still held.
    assert!(!e.allows(&pk, &intruder));
    // What apps may do still works: encrypt to oneself, to a stranger.
    for peer in [pk, intruder] {
        let sealed = e
            .call(&app, &pk, "nip44_encrypt", &[&peer.to_hex(), "a note"])
            .into_result()
            .unwrap();
        let back = e
            .call(&app, &pk, "nip44_decrypt", &[&peer.to_hex(), &sealed])
            .into_result();
        assert_eq!(back, Ok("a note".into()));
    }
}

#[test]
fn an_app_cannot_use_another_held_keys_or_apps_conversations() {
    let e = enclave(SignerConfig::default());
    let (user, app) = e.user_with_app();
    let (other, other_app) = e.user_with_app();
    let pk = user.public_key();
    // Another held key is never a peer.
    let r = e.call(
        &app,
        &pk,
        "nip44_encrypt",
        &[&other.public_key().to_hex(), "hi"],
    );
    assert_eq!(
        r.into_result(),
        Err(format!(
            "nip44_encrypt: {}",
            verifier::rpc::isolation::PROTOCOL_PEER
        ))
    );
    // Another app's NIP-46 request to the same user, and the enclave's reply.
    let second = Keys::generate();
    e.grant(&user, &second.public_key());
    let request = Request::new("get_public_key", Params::default());
    let captured = seal_request(&second, &pk, KIND_NIP46, &request, Scheme::Nip44).unwrap();
    let reply = e.reply_event(&captured);
    // While that app is connected its key is not a peer at all; once it is
    // gone, its old traffic is still refused for what it is.
    for connected in [true, false] {
        if !connected {
            let revoke = AdminRequest::RevokeApp {
                app: second.public_key(),
            };
            assert!(e.admin(&user, &revoke).is_ok());
        }
        for content in [&captured.content, &reply.content] {
            let r = e.call(
                &app,
                &pk,
                "nip44_decrypt",
                &[&second.public_key().to_hex(), content],
            );
            let why = forbidden(r);
            let expected = if connected {
                verifier::rpc::isolation::PROTOCOL_PEER
            } else {
                "protocol"
            };
            assert!(why.contains(expected), "{why}");
        }
    }
    drop(other_app);
}

#[test]
fn neither_the_service_key_nor_the_users_own_becomes_an_app() {
    let e = enclave(SignerConfig::default());
    let (user, _app) = e.user_with_app();
    for app in [e.service, user.public_key()] {
        let grant = AdminRequest::Grant {
            app,
            policy: verifier::grant::Policy::full(),
        };
        let why = e.admin(&user, &grant).unwrap_err();
        assert!(why.contains("never one of the enclave's own keys"), "{why}");
        let connect = AdminRequest::ConnectKey {
            keys: user.clone(),
            app,
            relays: vec![e.relay.clone()],
            policy: None,
        };
        assert!(e.admin(&user, &connect).is_err());
        // A nostrconnect:// URI naming it (found by fuzzing): no connect
        // response is sent to it, and it is not made an app.
        let uri = format!(
            "nostrconnect://{}?relay=ws%3A%2F%2F127.0.0.1%3A1&secret=s",
            app.to_hex()
        );
        let uri = verifier::rpc::nostrconnect::NostrConnect::parse(&uri, 8).unwrap();
        let answer = AdminRequest::NostrConnect { uri, policy: None };
        let event = e.admin_event(&user, &answer);
        let outcome = e.signer.try_handle(&event, &e.relay, now()).unwrap();
        assert!(outcome.also.is_none());
        assert!(!e.allows(&user.public_key(), &app));
    }
}

#[test]
fn strangers_are_answered_only_on_the_relay_they_used() {
    let e = enclave(SignerConfig::default());
    let (a, b) = (
        RelayUrl::parse("wss://a.example").unwrap(),
        RelayUrl::parse("wss://b.example").unwrap(),
    );
    let (user, app) = (Keys::generate(), Keys::generate());
    let grant = AdminRequest::ConnectKey {
        keys: user.clone(),
        app: app.public_key(),
        relays: vec![a.clone(), b.clone()],
        policy: None,
    };
    assert_eq!(e.admin(&user, &grant), Ok("ok".into()));
    let pk = user.public_key();
    let ping = Request::new("ping", Params::default());
    let relays_of = |from: &Keys| {
        let event = seal_request(from, &pk, KIND_NIP46, &ping, Scheme::Nip44).unwrap();
        e.signer
            .try_handle(&event, &a, now())
            .unwrap()
            .reply
            .unwrap()
            .relays
    };
    assert_eq!(relays_of(&Keys::generate()), vec![a.clone()]);
    let mut allowed = relays_of(&app);
    allowed.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    assert_eq!(allowed, vec![a, b]);
}

#[test]
fn nip04_is_refused_on_the_admin_api_and_apps_cannot_use_other_apps_channels() {
    let e = enclave(SignerConfig::default());
    // An import sealed with NIP-04 (malleable: no MAC) is answered with an
    // error, in NIP-04, and nothing is imported.
    let user = Keys::generate();
    let event = seal_request(
        &user,
        &e.service,
        KIND_ADMIN,
        &import(&e.relay, &user).to_request(),
        Scheme::Nip04,
    )
    .unwrap();
    let r = e.handle(&event, &user).unwrap();
    assert_eq!(
        r.into_result(),
        Err(verifier::rpc::isolation::ADMIN_NEEDS_NIP44.to_owned())
    );
    assert!(!e.signer.store().holds(&user.public_key()));

    // An app may not decrypt (even block by block, as NIP-04 allows) what
    // the user exchanged with another app: that app's key is not a peer.
    let (user, app) = e.user_with_app();
    let pk = user.public_key();
    let other = Keys::generate();
    e.grant(&user, &other.public_key());
    let request = Request::new("get_public_key", Params::default());
    let captured = seal_request(&other, &pk, KIND_NIP46, &request, Scheme::Nip04).unwrap();
    let (ct, iv) = captured.content.split_once("?iv=").unwrap();
    let first_block = {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(ct)
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(&bytes[..16])
    };
    for content in [captured.content.clone(), format!("{first_block}?iv={iv}")] {
        for method in ["nip04_decrypt", "nip44_decrypt", "nip04_encrypt"] {
            let r = e.call(&app, &pk, method, &[&other.public_key().to_hex(), &content]);
            assert_eq!(
                r.into_result(),
                Err(format!(
                    "{method}: {}",
                    verifier::rpc::isolation::PROTOCOL_PEER
                )),
                "{method}"
            );
        }
    }
    // A NIP-04 failure says one thing, whatever the cause.
    let stranger = Keys::generate().public_key().to_hex();
    for junk in ["AAAA?iv=AAAAAAAAAAAAAAAAAAAAAA==", "not base64?iv=x"] {
        let r = e.call(&app, &pk, "nip04_decrypt", &[&stranger, junk]);
        assert_eq!(
            r.into_result(),
            Err(verifier::rpc::isolation::NIP04_DECRYPT_FAILED.to_owned())
        );
    }
}

/// `text` sealed with NIP-04 from `from` to `to`, as (ciphertext blocks, iv).
fn nip04_blocks(from: &Keys, to: &nostr::PublicKey, text: &str) -> (Vec<[u8; 16]>, [u8; 16]) {
    use base64::Engine;
    let sealed = Conversation::new(Scheme::Nip04, from.secret_key(), to)
        .unwrap()
        .encrypt(text)
        .unwrap();
    let (ct, iv) = sealed.split_once("?iv=").unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let ct = b64.decode(ct).unwrap();
    let iv: [u8; 16] = b64.decode(iv).unwrap().try_into().unwrap();
    (ct.chunks(16).map(|c| c.try_into().unwrap()).collect(), iv)
}

/// A NIP-04 content of `blocks` after `iv`.
fn nip04_content(blocks: &[[u8; 16]], iv: &[u8; 16]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("{}?iv={}", b64.encode(blocks.concat()), b64.encode(iv))
}

/// The review's NIP-04 attack: the owner once sent their key over NIP-04 to
/// their own other device; an app that may decrypt NIP-04 cuts the
/// ciphertext where the key starts and masks the first block through the
/// IV, so the plaintext no longer holds the whole key, and XORs it back.
#[test]
fn nip04_cut_and_masked_ciphertexts_do_not_give_an_app_the_key() {
    use verifier::grant::{Perms, Policy, Rates};
    let e = enclave(SignerConfig::default());
    let (user, app) = e.user_with_app();
    let pk = user.public_key();
    let device = Keys::generate();
    let hex = user.secret_key().to_secret_hex();
    // "backup: " is 8 bytes: blocks 1 to 3 hold nothing but the key.
    let (blocks, _iv) = nip04_blocks(
        &user,
        &device.public_key(),
        &format!("backup: {hex} (keep it safe)"),
    );
    let mask = [0x05u8; 16];
    let masked_iv: [u8; 16] = std::array::from_fn(|i| blocks[0][i] ^ mask[i]);
    let cut = nip04_content(&blocks[1..], &masked_iv);
    let scoped = |perms: &str| {
        let mut policy = Policy::new(Perms::parse(perms).unwrap());
        policy.rates = Rates::none();
        let grant = AdminRequest::Grant {
            app: app.public_key(),
            policy,
        };
        assert_eq!(e.admin(&user, &grant), Ok("ok".into()));
    };
    let device_hex = device.public_key().to_hex();
    let decrypt = |content: &str| e.call(&app, &pk, "nip04_decrypt", &[&device_hex, content]);

    // A scoped app that may decrypt NIP-04 from any peer (nsec.app's
    // `basic` names it so): NIP-04 only from peers its grant names.
    scoped("basic");
    let r = decrypt(&cut);
    assert!(!r.to_json().contains(&hex[16..32]));
    assert!(forbidden(r).contains("NIP-04 has no MAC"));
    // It still decrypts NIP-44, whose MAC stops every cut.
    let sealed = Conversation::nip44(device.secret_key(), &pk)
        .unwrap()
        .encrypt("hello")
        .unwrap();
    let back = e.call(&app, &pk, "nip44_decrypt", &[&device_hex, &sealed]);
    assert_eq!(back.into_result(), Ok("hello".into()));

    // Granted that very peer, or full access: a cut that keeps any 16
    // characters of the key unmasked is refused, in whatever case.
    scoped(&format!("nip04_decrypt:{device_hex}"));
    for grant in ["peer", "full"] {
        if grant == "full" {
            e.grant(&user, &app.public_key());
        }
        let r = decrypt(&cut);
        assert!(!r.to_json().contains(&hex[16..32]), "{grant}");
        assert!(forbidden(r).contains("private key"), "{grant}");
        // The same key in upper case, and its nsec, cut the same way.
        let nsec = nostr::ToBech32::to_bech32(user.secret_key()).unwrap();
        for text in [
            format!("backup: {} (keep it safe)", hex.to_uppercase()),
            format!("backup: {nsec} (keep it safe)"),
        ] {
            let (blocks, _) = nip04_blocks(&user, &device.public_key(), &text);
            let masked_iv: [u8; 16] = std::array::from_fn(|i| blocks[0][i] ^ mask[i]);
            let r = decrypt(&nip04_content(&blocks[1..], &masked_iv));
            assert!(forbidden(r).contains("private key"), "{grant}: {text}");
        }
    }
    // An ordinary message from that peer is still read.
    let (blocks, iv) = nip04_blocks(&device, &pk, "see you at 8");
    assert_eq!(
        decrypt(&nip04_content(&blocks, &iv)).into_result(),
        Ok("see you at 8".into())
    );
}

/// The isolation check and the decision see one state of the grant: an
/// owner widening a grant while an app's request is between the two
/// cannot let that request use the service key's conversation.
#[test]
fn a_grant_widened_during_a_request_does_not_skip_the_isolation_rule() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use verifier::grant::{Perms, Policy};
    let e = enclave(SignerConfig {
        limits: enclave::custody::Limits {
            admission: enclave::custody::AdmissionLimits::off(),
            ..Default::default()
        },
        ..SignerConfig::default()
    });
    let (user, app) = e.user_with_app();
    let (pk, apk) = (user.public_key(), app.public_key());
    let narrow = Policy::new(Perms::parse("sign_event:1").unwrap());
    let wide = Policy::full();
    let stop = AtomicBool::new(false);
    let passed = std::thread::scope(|s| {
        s.spawn(|| {
            let mut flip = false;
            while !stop.load(Ordering::Relaxed) {
                let policy = if flip { &wide } else { &narrow };
                let _ = e.signer.store().grant(&pk, apk, policy, "grant", 0, now());
                flip = !flip;
            }
        });
        let mut passed = 0;
        for _ in 0..1000 {
            let r = e.call(&app, &pk, "nip44_encrypt", &[&e.service.to_hex(), "hello"]);
            if r.into_result().is_ok() {
                passed += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        passed
    });
    assert_eq!(
        passed, 0,
        "requests that used the service key's conversation"
    );
}
