//! One NIP-46 `sign_event` request handled in process by the signer
//! (verify, dedupe, decrypt, authorize, sign, encrypt, sign the reply),
//! beside the same primitives called directly. See BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use enclave::signer::{Signer, SignerConfig};
use nostr::{EventBuilder, JsonUtil, Keys, Kind, RelayUrl, Tag, Timestamp, UnsignedEvent};
use verifier::event::{KIND_ADMIN, KIND_NIP46};
use verifier::grant::{Perms, Policy, Rates};
use verifier::rpc::admin::AdminRequest;
use verifier::rpc::cipher::Scheme;
use verifier::rpc::nip44::{self, ConversationKey};
use verifier::rpc::{seal_request, Params, Request, Response};

const TEMPLATE: &str = r#"{"kind":1,"content":"a note of ordinary length, signed in the enclave for a benchmark","tags":[["t","bench"]],"created_at":1700000000}"#;

fn bench(c: &mut Criterion) {
    let relay = RelayUrl::parse("wss://relay.example").unwrap();
    let service = Keys::generate();
    let signer = Signer::new(service.clone(), relay.clone(), SignerConfig::default());
    let user = Keys::generate();
    let app = Keys::generate();
    let grant = AdminRequest::ConnectKey {
        keys: user.clone(),
        app: app.public_key(),
        relays: vec![relay.clone()],
        policy: None,
    };
    let now = Timestamp::now().as_secs();
    let event = seal_request(
        &user,
        &service.public_key(),
        KIND_ADMIN,
        &grant.to_request(),
        Scheme::Nip44,
    )
    .unwrap();
    assert!(signer.handle(&event, &relay, now).reply.is_some());

    // A second app with a scoped grant: two kinds, a use count, no rate
    // limit (criterion's thousands of requests a second would be refused,
    // and refusals skip signing), and created_at checked against the clock.
    let scoped = Keys::generate();
    let mut policy =
        Policy::new(Perms::parse("sign_event:1,sign_event:1111,nip44_encrypt").unwrap());
    policy.rates = Rates::none();
    policy.uses = Some(u64::MAX);
    let grant = AdminRequest::Grant {
        app: scoped.public_key(),
        policy,
    };
    let event = seal_request(
        &user,
        &service.public_key(),
        KIND_ADMIN,
        &grant.to_request(),
        Scheme::Nip44,
    )
    .unwrap();
    assert!(signer.handle(&event, &relay, now).reply.is_some());

    let template = TEMPLATE.replace("1700000000", &now.to_string());
    let request = |app: &Keys| {
        let r = Request::new("sign_event", Params::new([template.as_str()]));
        seal_request(app, &user.public_key(), KIND_NIP46, &r, Scheme::Nip44).unwrap()
    };
    let mut group = c.benchmark_group("sign_event");
    for (name, from) in [("handled", &app), ("handled_scoped", &scoped)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || request(from),
                |event| {
                    let outcome = signer.handle(&event, &relay, Timestamp::now().as_secs());
                    assert!(outcome.reply.is_some());
                    outcome
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.bench_function("primitives", |b| {
        b.iter_batched(
            || request(&app),
            |event| {
                // What handling cannot avoid: check the request, derive the
                // conversation key, decrypt, sign the event, encrypt and
                // sign the reply.
                event.verify().unwrap();
                let key = ConversationKey::derive(user.secret_key(), &app.public_key()).unwrap();
                let plaintext = nip44::decrypt(&key, &event.content).unwrap();
                let signed = UnsignedEvent::new(
                    user.public_key(),
                    Timestamp::from(1_700_000_000),
                    Kind::from(1),
                    [Tag::hashtag("bench")],
                    "a note",
                )
                .sign_with_keys(&user)
                .unwrap();
                assert!(!plaintext.is_empty());
                let response = Response::ok("id", signed.as_json()).to_json();
                let reply = nip44::encrypt(&key, response.as_bytes()).unwrap();
                EventBuilder::new(Kind::from(KIND_NIP46), reply)
                    .tag(Tag::public_key(app.public_key()))
                    .sign_with_keys(&user)
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    // What `handled` pays on top since the store keeps only secret keys.
    group.bench_function("derive_keys", |b| {
        b.iter(|| enclave::custody::signing_keys(user.secret_key().clone()))
    });
    group.finish();
    // Every scoped request above was allowed: none was refused and cheap.
    let refused = signer
        .store()
        .log()
        .entries(&user.public_key(), 0)
        .iter()
        .filter(|e| e.view().decision == "refused")
        .count();
    assert_eq!(refused, 0, "scoped requests were refused");
}

criterion_group!(benches, bench);
criterion_main!(benches);
