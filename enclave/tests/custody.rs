//! The enclave as a custodian (`--custody-for`): custody requests (kind
//! 24136) from other enclaves' service keys, carrying real dev-chain
//! instance events released by maintainers, handled by the signer as the
//! relays would deliver them, and the replies read back as the requester
//! would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::released::{custodian, now, seal, Code, Enclave};
use enclave::signer::{Signer, SignerConfig};
use nostr::{Event, JsonUtil, Keys, RelayUrl};
use verifier::custodian::message::{Call, Reply, StateName};
use verifier::rpc::cipher::Conversation;
use verifier::rpc::Response;
use verifier::state::{StateIdentity, StateKey};

fn refused(reply: &Reply) -> (&str, &str) {
    match reply {
        Reply::Refused { code, reason, .. } => (code, reason),
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn a_custodian_keeps_a_released_enclaves_key_and_fences_as_the_rules_say() {
    let code = Code::new();
    let launcher = Keys::generate();
    let c = custodian(&code, &[&launcher], 0);
    let first = Enclave::of(&launcher);
    let key = StateKey::generate().unwrap();
    let event = first.request(
        &c,
        &code.instance_event(&first, 2),
        seal(&first, &code, &key),
        0,
    );
    assert_eq!(
        first.ask(&c, &event),
        Reply::Ok {
            epoch: 1,
            version: 1
        }
    );

    // A successor of the same launcher, at once: the first holds the lease.
    let second = Enclave::of(&launcher);
    let claim = Call::Claim {
        state: StateName::of(&StateIdentity::new(launcher.public_key(), "main").unwrap()),
        epoch: 2,
    };
    let event = second.request(&c, &code.instance_event(&second, 2), claim.clone(), 0);
    assert_eq!(refused(&second.ask(&c, &event)).0, "leased");
    // The first renews; a replay of its request is dropped as seen.
    let heartbeat = Call::Heartbeat {
        state: StateName::of(&StateIdentity::new(launcher.public_key(), "main").unwrap()),
        epoch: 1,
    };
    let event = first.request(&c, &code.instance_event(&first, 2), heartbeat, 0);
    assert!(matches!(first.ask(&c, &event), Reply::Ok { epoch: 1, .. }));
    assert!(c
        .try_handle(&event, &RelayUrl::parse("ws://127.0.0.1:1").unwrap(), now())
        .is_err());

    // Code released by too few maintainers asks for the state.
    let weak = Enclave::of(&launcher);
    let event = weak.request(&c, &code.instance_event(&weak, 1), claim.clone(), 0);
    let reply = weak.ask(&c, &event);
    assert!(
        refused(&reply).1.contains("release_signatures"),
        "{reply:?}"
    );

    // Another launcher's enclave, released all the same.
    let other = Keys::generate();
    let stranger = Enclave::of(&other);
    let event = stranger.request(&c, &code.instance_event(&stranger, 2), claim, 0);
    assert_eq!(refused(&stranger.ask(&c, &event)).0, "wrong-launcher");
    let event = stranger.request(
        &c,
        &code.instance_event(&stranger, 2),
        seal(&stranger, &code, &key),
        0,
    );
    assert_eq!(refused(&stranger.ask(&c, &event)).0, "not-served");
}

#[test]
fn an_unverified_requester_pays_proof_of_work_first() {
    let code = Code::new();
    let launcher = Keys::generate();
    let c = custodian(&code, &[&launcher], 8);
    let e = Enclave::of(&launcher);
    let key = StateKey::generate().unwrap();
    let instance = code.instance_event(&e, 2);
    let event = e.request(&c, &instance, seal(&e, &code, &key), 0);
    let reply = e.ask(&c, &event);
    assert!(
        refused(&reply).1.contains("8 bits of proof of work"),
        "{reply:?}"
    );
    let event = e.request(&c, &instance, seal(&e, &code, &key), 8);
    assert_eq!(
        e.ask(&c, &event),
        Reply::Ok {
            epoch: 1,
            version: 1
        }
    );
    // Verified now: its heartbeats need none.
    let heartbeat = Call::Heartbeat {
        state: StateName::of(&StateIdentity::new(launcher.public_key(), "main").unwrap()),
        epoch: 1,
    };
    let event = e.request(&c, &instance, heartbeat, 0);
    assert!(matches!(e.ask(&c, &event), Reply::Ok { .. }));
}

#[test]
fn an_enclave_that_is_no_custodian_says_so() {
    let code = Code::new();
    let launcher = Keys::generate();
    let plain = Signer::new(
        Keys::generate(),
        RelayUrl::parse("ws://127.0.0.1:1").unwrap(),
        SignerConfig::default(),
    );
    let e = Enclave::of(&launcher);
    let key = StateKey::generate().unwrap();
    let event = e.request(
        &plain,
        &code.instance_event(&e, 2),
        seal(&e, &code, &key),
        0,
    );
    assert_eq!(refused(&e.ask(&plain, &event)).0, "not-served");
}

#[tokio::test]
async fn an_enclaves_custody_client_gets_its_replies_through_its_signer() {
    let code = Code::new();
    let launcher = Keys::generate();
    let custodian = custodian(&code, &[&launcher], 0);
    let relay = RelayUrl::parse("ws://127.0.0.1:1").unwrap();
    let e = Enclave::of(&launcher);
    let ours = Signer::new(e.service.clone(), relay.clone(), SignerConfig::default());
    let client = ours.custody_client();
    let key = StateKey::generate().unwrap();
    assert_eq!(
        client
            .request(&custodian.service_key(), seal(&e, &code, &key), 0)
            .unwrap_err(),
        enclave::continuity::client::CallError::NoInstance
    );
    client.set_instance(code.instance_event(&e, 2).as_json());
    // The relay: our request to the custodian, its reply back to our signer.
    let deliver = |event: Event| {
        let (custodian, ours, relay) = (&custodian, &ours, relay.clone());
        async move {
            let outcome = custodian
                .try_handle(&event, &relay, now())
                .map_err(|e| format!("{e:?}"))?;
            let reply = outcome.reply.ok_or("no reply")?;
            let back = ours.try_handle(&reply.event, &relay, now()).unwrap();
            assert!(back.reply.is_none(), "a reply is never answered");
            Ok(())
        }
    };
    let reply = client
        .call(&custodian.service_key(), seal(&e, &code, &key), 0, deliver)
        .await
        .unwrap();
    assert_eq!(
        reply,
        Reply::Ok {
            epoch: 1,
            version: 1
        }
    );
    let heartbeat = Call::Heartbeat {
        state: StateName::of(&StateIdentity::new(launcher.public_key(), "main").unwrap()),
        epoch: 1,
    };
    let reply = client
        .call(&custodian.service_key(), heartbeat.clone(), 0, deliver)
        .await
        .unwrap();
    assert!(matches!(reply, Reply::Ok { epoch: 1, .. }));

    // A reply from anyone but the custodian asked, or to no request
    // waiting, is not taken.
    let (event, waiting) = client
        .request(&custodian.service_key(), heartbeat, 0)
        .unwrap();
    // The id is in the request (NIP-44 is symmetric: we can read our own).
    let (_, plaintext) = Conversation::open(
        e.service.secret_key(),
        &custodian.service_key(),
        &event.content,
    )
    .unwrap();
    let id = verifier::rpc::Request::parse(&plaintext).unwrap().id;
    let fake = Reply::Ok {
        epoch: 9,
        version: 9,
    }
    .to_json();
    // A stranger's reply event with the right id, as a relay delivers it:
    // dropped, neither taken nor answered.
    let stranger_keys = Keys::generate();
    let forged = Response::ok(&id, fake.clone());
    let content = Conversation::new(
        verifier::rpc::cipher::Scheme::Nip44,
        stranger_keys.secret_key(),
        &ours.service_key(),
    )
    .unwrap()
    .encrypt(&forged.to_json())
    .unwrap();
    let event = nostr::EventBuilder::new(
        nostr::Kind::from_u16(verifier::custodian::KIND_CUSTODY),
        content,
    )
    .tag(nostr::Tag::public_key(ours.service_key()))
    .sign_with_keys(&stranger_keys)
    .unwrap();
    assert!(ours.try_handle(&event, &relay, now()).is_err());
    let stranger = stranger_keys.public_key();
    assert!(!client.deliver(&stranger, &Response::ok(&id, fake.clone())));
    assert!(!client.deliver(
        &custodian.service_key(),
        &Response::ok("other", fake.clone())
    ));
    assert!(client.deliver(&custodian.service_key(), &Response::ok(&id, fake)));
    assert_eq!(
        waiting.await.unwrap().unwrap(),
        Reply::Ok {
            epoch: 9,
            version: 9
        }
    );
}
