//! The enclave as a custodian (`--custody-for`): custody requests (kind
//! 24136) from other enclaves' service keys, carrying real dev-chain
//! instance events released by maintainers, handled by the signer as the
//! relays would deliver them, and the replies read back as the requester
//! would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use enclave::signer::custody::CustodyConfig;
use enclave::signer::{Signer, SignerConfig};
use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, RelayUrl, Tag, Timestamp};
use verifier::attestation::dev::{builder_certificate, nsm_document, DevChain, Validity};
use verifier::attestation::TrustedRoot;
use verifier::custodian::ledger::LedgerLimits;
use verifier::custodian::message::{Call, CustodyRequest, Reply, StateName};
use verifier::custodian::KIND_CUSTODY;
use verifier::event::build_signature::BuildSignature;
use verifier::event::instance::InstanceEvent;
use verifier::event::instance_signature::InstanceSignature;
use verifier::event::{npub, Mode};
use verifier::pcr::{pcr4_from_instance_id, pcr8_from_cert_der, pcr_digest};
use verifier::release::{parse_version, ReleasePolicy, ReleaseSignature, ReleaseTrust};
use verifier::rpc::cipher::{Conversation, Scheme};
use verifier::rpc::Response;
use verifier::signing_cert::SigningCert;
use verifier::state::{StateIdentity, StateKey};

const REPO: &str = "https://github.com/nostrband/noauth-enclaved";
const INSTANCE_ID: &str = "i-0123456789abcdef0";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One code, built once, run by launchers on a dev chain, released by
/// maintainers.
struct Code {
    chain: DevChain,
    builder: Keys,
    cert: Vec<u8>,
    maintainers: Vec<Keys>,
}

/// An enclave of that code: its service key, its launcher.
struct Enclave {
    service: Keys,
    launcher: Keys,
}

impl Code {
    fn new() -> Self {
        let builder = Keys::generate();
        let t = now() as i64;
        let cert = builder_certificate(
            &npub(&builder.public_key()),
            Validity::from(t - 3600, 86_400),
        )
        .unwrap();
        Self {
            chain: DevChain::generate(t - 60).unwrap(),
            builder,
            cert,
            maintainers: (0..3).map(|_| Keys::generate()).collect(),
        }
    }

    fn pcrs(&self) -> BTreeMap<u8, verifier::pcr::Pcr> {
        BTreeMap::from([
            (0, pcr_digest(b"image")),
            (1, pcr_digest(b"kernel")),
            (2, pcr_digest(b"application")),
            (4, pcr4_from_instance_id(INSTANCE_ID)),
            (8, pcr8_from_cert_der(&self.cert)),
        ])
    }

    fn policy(&self, threshold: usize) -> ReleasePolicy {
        let npubs: Vec<String> = self
            .maintainers
            .iter()
            .map(|k| npub(&k.public_key()))
            .collect();
        ReleasePolicy {
            repository: REPO.into(),
            trust: ReleaseTrust::new(&npubs, threshold, Some("0.1.0")).unwrap(),
        }
    }

    /// `e`'s instance event, released by the first `signers` maintainers.
    fn instance_event(&self, e: &Enclave, signers: usize) -> Event {
        let pcrs = self.pcrs();
        let t = now();
        let doc = nsm_document(
            &format!("{INSTANCE_ID}-enc0123456789abcdef"),
            t * 1000,
            &pcrs,
            &e.service.public_key().to_bytes(),
        );
        let document = self.chain.attest(doc);
        let sign = |b: EventBuilder, k: &Keys| {
            b.custom_created_at(Timestamp::from_secs(t))
                .sign_with_keys(k)
                .unwrap()
        };
        let build = sign(
            BuildSignature::builder(&SigningCert::from_der(&self.cert).unwrap(), Mode::Dev)
                .unwrap(),
            &self.builder,
        );
        let instance = sign(
            InstanceSignature::builder(&pcr4_from_instance_id(INSTANCE_ID), Mode::Dev).unwrap(),
            &e.launcher,
        );
        let version = parse_version("0.1.0").unwrap();
        let code = [pcrs[&0], pcrs[&1], pcrs[&2]];
        let releases: Vec<Event> = self
            .maintainers
            .iter()
            .take(signers)
            .map(|k| {
                sign(
                    ReleaseSignature::builder(REPO, &version, Mode::Dev, &code).unwrap(),
                    k,
                )
            })
            .collect();
        let template = InstanceEvent {
            repo: REPO,
            name: "enclaved",
            version: "0.1.0",
            module_id: &format!("{INSTANCE_ID}-enc0123456789abcdef"),
            pcrs: &pcrs,
            mode: Mode::Dev,
            admin_relay: "wss://relay.example",
            expiration: t + 3600,
            alt: "enclaved instance",
            build: &build,
            instance: &instance,
            releases: &releases,
            attestation: &document,
            created_at: t,
        };
        template
            .builder()
            .unwrap()
            .sign_with_keys(&e.service)
            .unwrap()
    }
}

impl Enclave {
    fn of(launcher: &Keys) -> Self {
        Self {
            service: Keys::generate(),
            launcher: launcher.clone(),
        }
    }

    /// A custody request event to `custodian`, with `pow` bits.
    fn request(&self, to: &Signer, instance: &Event, call: Call, pow: u8) -> Event {
        let request = CustodyRequest {
            instance: instance.as_json(),
            call,
        }
        .to_rpc();
        let conversation =
            Conversation::new(Scheme::Nip44, self.service.secret_key(), &to.service_key()).unwrap();
        let content = conversation.encrypt(&request.to_json()).unwrap();
        EventBuilder::new(Kind::from_u16(KIND_CUSTODY), content)
            .tag(Tag::public_key(to.service_key()))
            .pow(pow)
            .sign_with_keys(&self.service)
            .unwrap()
    }

    /// What `custodian` answers to `event`.
    fn ask(&self, custodian: &Signer, event: &Event) -> Reply {
        let relay = RelayUrl::parse("ws://127.0.0.1:1").unwrap();
        let outcome = custodian.try_handle(event, &relay, now()).unwrap();
        let reply = outcome.reply.expect("a reply");
        assert_eq!(reply.event.kind.as_u16(), KIND_CUSTODY);
        assert_eq!(
            reply.relays,
            vec![relay],
            "answered only where it was asked"
        );
        let (_, plaintext) = Conversation::open(
            self.service.secret_key(),
            &reply.event.pubkey,
            &reply.event.content,
        )
        .unwrap();
        let result = Response::parse(&plaintext).unwrap().into_result().unwrap();
        Reply::from_json(&result).unwrap()
    }
}

fn custodian(code: &Code, serves: &[&Keys], pow_bits: u8) -> Signer {
    let config = SignerConfig {
        custody: Some(CustodyConfig {
            serves: serves.iter().map(|k| k.public_key()).collect(),
            limits: LedgerLimits::default(),
            root: TrustedRoot::from_der_or_pem(code.chain.root.der()).unwrap(),
            pow_bits,
        }),
        ..SignerConfig::default()
    };
    Signer::new(
        Keys::generate(),
        RelayUrl::parse("ws://127.0.0.1:1").unwrap(),
        config,
    )
}

fn seal(e: &Enclave, code: &Code, key: &StateKey) -> Call {
    Call::Seal {
        state: StateName::of(&StateIdentity::new(e.launcher.public_key(), "main").unwrap()),
        key: verifier::state::record::SecretString(zeroize::Zeroizing::new(hex::encode(
            key.bytes(),
        ))),
        key_id: key.id().to_string(),
        policy: code.policy(2).to_json(),
        custodians: vec![],
        version: 1,
        hash: hex::encode([1; 32]),
    }
}

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
    let stranger = Keys::generate().public_key();
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
