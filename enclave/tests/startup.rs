//! Start-up against a fake parent that answers `start` with whatever the
//! test chooses: the enclave must accept only signature events that match
//! its own attestation, and a lying parent can only make it stop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use enclave::attester::dev::{DevAttester, DevMeasurements};
use enclave::attester::Attester;
use enclave::link::ParentAddr;
use enclave::startup::{start, Admitted, StartupError};
use futures_util::{SinkExt, StreamExt};
use nostr::{Event, JsonUtil, Keys, Timestamp};
use parent::dev_stack::release::DevMaintainers;
use parent::dev_stack::signatures::DevSignatures;
use tokio_tungstenite::tungstenite::Message;
use verifier::attestation::dev::{builder_certificate, Validity};
use verifier::attestation::Attestation;
use verifier::event::build_signature::BuildSignature;
use verifier::event::{npub, Mode};
use verifier::protocol::{Reply, Request, StartResult};
use verifier::release::ReleasePolicy;
use verifier::signing_cert::SigningCert;

const INSTANCE_ID: &str = "i-0123456789abcdef0";

fn now() -> u64 {
    enclave::unix_now()
}

fn measured(cert: &[u8]) -> DevMeasurements {
    DevMeasurements {
        binary_sha384: [1; 48],
        instance_id: INSTANCE_ID.into(),
        signing_cert_der: cert.to_vec(),
    }
}

/// A dev enclave measured with `cert` and `INSTANCE_ID`.
fn attester(cert: &[u8]) -> Arc<dyn Attester> {
    Arc::new(DevAttester::new(&measured(cert), now()).unwrap())
}

/// A parent that answers one `start` with `answer(request)`.
async fn fake_parent(
    answer: impl FnOnce(&Request) -> String + Send + 'static,
) -> (SocketAddr, tokio::task::JoinHandle<Request>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        let Some(Ok(Message::Text(text))) = ws.next().await else {
            panic!("no request")
        };
        let request = Request::from_json(text.as_str()).unwrap();
        ws.send(Message::text(answer(&request))).await.unwrap();
        let _ = ws.close(None).await;
        request
    });
    (addr, task)
}

fn ok_reply(build: &Event, instance: &Event, prod: bool) -> String {
    released_reply(build, instance, prod, vec![])
}

fn released_reply(build: &Event, instance: &Event, prod: bool, releases: Vec<Event>) -> String {
    let result = StartResult {
        build: build.clone(),
        instance: instance.clone(),
        announce_relays: vec!["ws://127.0.0.1:1".into()],
        prod,
        releases,
    };
    Reply::ok("start", &result).to_json()
}

async fn start_with(attester: &Arc<dyn Attester>, reply: String) -> Result<(), StartupError> {
    let policy = enclave::built_in_release_policy().unwrap();
    start_under(attester, reply, &policy).await.map(|_| ())
}

async fn start_under(
    attester: &Arc<dyn Attester>,
    reply: String,
    policy: &ReleasePolicy,
) -> Result<Admitted, StartupError> {
    let keys = Keys::generate();
    let (addr, parent) = fake_parent(move |_| reply).await;
    let result = start(
        attester,
        &keys,
        ParentAddr::Tcp(addr),
        Duration::from_secs(5),
        policy,
    )
    .await;
    parent.await.unwrap();
    result
}

fn refused(result: Result<(), StartupError>, needle: &str) {
    let err = result.expect_err("the enclave must refuse").0;
    assert!(err.contains(needle), "{needle:?} not in {err:?}");
}

#[tokio::test]
async fn accepts_matching_events_and_sends_a_bound_attestation() {
    let dev = DevSignatures::generate(INSTANCE_ID, now()).unwrap();
    let attester = attester(&dev.cert_der);
    let keys = Keys::generate();
    let reply = ok_reply(&dev.build, &dev.instance, false);
    let (addr, parent) = fake_parent(move |_| reply).await;
    let admitted = start(
        &attester,
        &keys,
        ParentAddr::Tcp(addr),
        Duration::from_secs(5),
        &enclave::built_in_release_policy().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(admitted.mode, Mode::Dev);
    assert_eq!(admitted.signatures.build.event().id, dev.build.id);
    assert_eq!(admitted.announce_relays[0].as_str(), "ws://127.0.0.1:1");
    // The document the parent saw binds the service key.
    let request = parent.await.unwrap();
    assert_eq!(request.method, "start");
    let attestation = Attestation::from_base64(&request.params[0]).unwrap();
    assert_eq!(
        attestation.doc().public_key.as_deref(),
        Some(&keys.public_key().to_bytes()[..])
    );
}

#[tokio::test]
async fn refuses_an_instance_signature_for_another_instance() {
    let dev = DevSignatures::generate(INSTANCE_ID, now()).unwrap();
    let other = DevSignatures::generate("i-0fffffffffffffff0", now()).unwrap();
    let reply = ok_reply(&dev.build, &other.instance, false);
    refused(start_with(&attester(&dev.cert_der), reply).await, "PCR4");
}

#[tokio::test]
async fn refuses_a_build_signature_for_another_image() {
    let dev = DevSignatures::generate(INSTANCE_ID, now()).unwrap();
    let other = DevSignatures::generate(INSTANCE_ID, now()).unwrap();
    let reply = ok_reply(&other.build, &dev.instance, false);
    refused(start_with(&attester(&dev.cert_der), reply).await, "PCR8");
}

#[tokio::test]
async fn refuses_a_certificate_naming_someone_else() {
    // The image is signed with a certificate whose OU names a stranger, and
    // the build event claiming it is by the builder: PCR8 matches, OU does not.
    let dev = DevSignatures::generate(INSTANCE_ID, now()).unwrap();
    let stranger = Keys::generate();
    let cert = builder_certificate(
        &npub(&stranger.public_key()),
        Validity::from(now() as i64 - 60, 86_400),
    )
    .unwrap();
    let build = BuildSignature::builder(&SigningCert::from_der(&cert).unwrap(), Mode::Dev)
        .unwrap()
        .custom_created_at(Timestamp::now())
        .sign_with_keys(&Keys::generate())
        .unwrap();
    let reply = ok_reply(&build, &dev.instance, false);
    refused(
        start_with(&attester(&cert), reply).await,
        "builder (OU or CN)",
    );
}

#[tokio::test]
async fn refuses_events_with_a_bad_signature() {
    let dev = DevSignatures::generate(INSTANCE_ID, now()).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&dev.instance.as_json()).unwrap();
    let sig = json["sig"].as_str().unwrap().to_owned();
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    json["sig"] = format!("{flipped}{}", &sig[1..]).into();
    let reply = Reply {
        id: "start".into(),
        result: serde_json::json!({
            "build": serde_json::from_str::<serde_json::Value>(&dev.build.as_json()).unwrap(),
            "instance": json,
            "instanceAnnounceRelays": ["ws://127.0.0.1:1"],
            "prod": false,
        })
        .to_string(),
        error: None,
    }
    .to_json();
    refused(
        start_with(&attester(&dev.cert_der), reply).await,
        "signature",
    );
}

#[tokio::test]
async fn refuses_prod_with_dev_signatures() {
    let dev = DevSignatures::generate(INSTANCE_ID, now()).unwrap();
    let reply = ok_reply(&dev.build, &dev.instance, true);
    refused(start_with(&attester(&dev.cert_der), reply).await, "prod");
}

#[tokio::test]
async fn stops_on_errors_and_nonsense_from_the_parent() {
    let dev = DevSignatures::generate(INSTANCE_ID, now()).unwrap();
    let a = attester(&dev.cert_der);
    refused(
        start_with(&a, Reply::error("start", "no files").to_json()).await,
        "no files",
    );
    refused(start_with(&a, "not json".into()).await, "malformed");
    refused(
        start_with(
            &a,
            Reply::ok(
                "other",
                &StartResult {
                    build: dev.build.clone(),
                    instance: dev.instance.clone(),
                    announce_relays: vec!["ws://127.0.0.1:1".into()],
                    prod: false,
                    releases: vec![],
                },
            )
            .to_json(),
        )
        .await,
        "reply to",
    );
    let no_relays = StartResult {
        build: dev.build.clone(),
        instance: dev.instance.clone(),
        announce_relays: vec![],
        prod: false,
        releases: vec![],
    };
    refused(
        start_with(&a, Reply::ok("start", &no_relays).to_json()).await,
        "no relays",
    );
    let bad_relay = StartResult {
        announce_relays: vec!["wss://user:pw@relay.example".into()],
        ..no_relays
    };
    refused(
        start_with(&a, Reply::ok("start", &bad_relay).to_json()).await,
        "credentials",
    );
}

#[tokio::test]
async fn gives_up_when_no_parent_answers() {
    let dev = DevSignatures::generate(INSTANCE_ID, now()).unwrap();
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let err = start(
        &attester(&dev.cert_der),
        &Keys::generate(),
        ParentAddr::Tcp(closed),
        Duration::from_millis(500),
        &enclave::built_in_release_policy().unwrap(),
    )
    .await
    .unwrap_err();
    assert!(err.0.contains("cannot reach the parent"), "{err}");
}

/// A prod enclave (prod build and instance signatures) and three
/// maintainers of whom two must sign.
struct ProdSetup {
    dev: DevSignatures,
    attester: Arc<dyn Attester>,
    maintainers: DevMaintainers,
}

impl ProdSetup {
    fn new() -> Self {
        let dev = DevSignatures::generate_in(INSTANCE_ID, now(), Mode::Prod).unwrap();
        let attester = attester(&dev.cert_der);
        let maintainers = DevMaintainers::generate(3, 2, "0.1.0").unwrap();
        Self {
            dev,
            attester,
            maintainers,
        }
    }

    /// Release signatures of this enclave's own measurements.
    fn sign(&self, signers: usize, version: &str, mode: Mode) -> Vec<Event> {
        let m = measured(&self.dev.cert_der).measurements();
        self.maintainers
            .sign(signers, &m, version, mode, now())
            .unwrap()
    }

    async fn start(&self, prod: bool, releases: Vec<Event>) -> Result<Admitted, StartupError> {
        let reply = released_reply(&self.dev.build, &self.dev.instance, prod, releases);
        start_under(&self.attester, reply, &self.maintainers.policy).await
    }
}

fn refused_admission(result: Result<Admitted, StartupError>, needle: &str) {
    refused(result.map(|_| ()), needle);
}

#[tokio::test]
async fn prod_starts_with_k_maintainer_signatures_of_its_own_version() {
    let s = ProdSetup::new();
    let releases = s.sign(2, enclave::SOFTWARE_VERSION, Mode::Prod);
    let admitted = s.start(true, releases).await.unwrap();
    assert_eq!(admitted.mode, Mode::Prod);
    let release = admitted.release.release.as_ref().unwrap();
    assert_eq!(release.version.to_string(), enclave::SOFTWARE_VERSION);
    assert_eq!(release.signers.len(), 2);
    // The signatures it holds are the ones its announcements will carry.
    assert_eq!(admitted.release.signatures.len(), 2);
}

#[tokio::test]
async fn prod_refuses_to_start_without_a_release() {
    let s = ProdSetup::new();
    refused_admission(s.start(true, vec![]).await, "0 of the 2");
    // One maintainer is not k of them.
    let one = s.sign(1, enclave::SOFTWARE_VERSION, Mode::Prod);
    refused_admission(s.start(true, one).await, "1 of the 2");
    // The same maintainer twice counts once.
    let mut twice = s.sign(1, enclave::SOFTWARE_VERSION, Mode::Prod);
    let again = s.sign(1, enclave::SOFTWARE_VERSION, Mode::Prod);
    twice.extend(again);
    refused_admission(s.start(true, twice).await, "1 of the 2");
}

#[tokio::test]
async fn prod_refuses_a_dev_release() {
    let s = ProdSetup::new();
    let releases = s.sign(3, enclave::SOFTWARE_VERSION, Mode::Dev);
    refused_admission(
        s.start(true, releases).await,
        "where only prod releases count",
    );
}

#[tokio::test]
async fn prod_refuses_a_release_of_another_version() {
    let s = ProdSetup::new();
    let releases = s.sign(2, "99.0.0", Mode::Prod);
    refused_admission(s.start(true, releases).await, "signed version 99.0.0 of");
}

#[tokio::test]
async fn prod_refuses_signatures_by_strangers_or_of_other_measurements() {
    let s = ProdSetup::new();
    let strangers = DevMaintainers::generate(3, 2, "0.1.0").unwrap();
    let m = measured(&s.dev.cert_der).measurements();
    let by_strangers = strangers
        .sign(3, &m, enclave::SOFTWARE_VERSION, Mode::Prod, now())
        .unwrap();
    refused_admission(
        s.start(true, by_strangers).await,
        "is not a trusted maintainer",
    );
    // The maintainers signed another image: the parent cannot pass it off.
    let other = DevMeasurements {
        binary_sha384: [2; 48],
        ..measured(&s.dev.cert_der)
    };
    let of_other = s
        .maintainers
        .sign(
            3,
            &other.measurements(),
            enclave::SOFTWARE_VERSION,
            Mode::Prod,
            now(),
        )
        .unwrap();
    refused_admission(s.start(true, of_other).await, "0 of the 2");
}

#[tokio::test]
async fn prod_refuses_under_the_empty_built_in_policy() {
    // Until maintainers are named, no prod instance of this code starts.
    let s = ProdSetup::new();
    let releases = s.sign(3, enclave::SOFTWARE_VERSION, Mode::Prod);
    let reply = released_reply(&s.dev.build, &s.dev.instance, true, releases);
    refused(start_with(&s.attester, reply).await, "names no maintainers");
}

#[tokio::test]
async fn dev_starts_without_a_release_and_says_so() {
    let dev = DevSignatures::generate(INSTANCE_ID, now()).unwrap();
    let maintainers = DevMaintainers::generate(3, 2, "0.1.0").unwrap();
    let reply = ok_reply(&dev.build, &dev.instance, false);
    let admitted = start_under(&attester(&dev.cert_der), reply, &maintainers.policy)
        .await
        .unwrap();
    assert_eq!(admitted.mode, Mode::Dev);
    let why = admitted.release.release.unwrap_err().to_string();
    assert!(why.contains("0 of the 2"), "{why}");
}

#[tokio::test]
async fn keeps_only_valid_signatures_of_its_own_measurements() {
    let dev = DevSignatures::generate(INSTANCE_ID, now()).unwrap();
    let maintainers = DevMaintainers::generate(3, 2, "0.1.0").unwrap();
    let m = measured(&dev.cert_der).measurements();
    let mut releases = maintainers
        .sign(2, &m, enclave::SOFTWARE_VERSION, Mode::Dev, now())
        .unwrap();
    let other = DevMeasurements {
        binary_sha384: [2; 48],
        ..measured(&dev.cert_der)
    };
    releases.extend(
        maintainers
            .sign(
                1,
                &other.measurements(),
                enclave::SOFTWARE_VERSION,
                Mode::Dev,
                now(),
            )
            .unwrap(),
    );
    // Not a release signature at all.
    releases.push(dev.instance.clone());
    let reply = released_reply(&dev.build, &dev.instance, false, releases);
    let admitted = start_under(&attester(&dev.cert_der), reply, &maintainers.policy)
        .await
        .unwrap();
    assert_eq!(admitted.release.signatures.len(), 2);
    assert_eq!(
        admitted.release.ignored.len(),
        2,
        "{:?}",
        admitted.release.ignored
    );
    assert!(admitted.release.release.is_ok());
}

#[tokio::test]
async fn refuses_more_release_signatures_than_the_bound() {
    let s = ProdSetup::new();
    let one = s.sign(1, enclave::SOFTWARE_VERSION, Mode::Prod);
    let many: Vec<Event> = std::iter::repeat_n(one[0].clone(), 17).collect();
    refused_admission(
        s.start(true, many).await,
        "release signatures in the start result is too large: 17 (at most 16)",
    );
}
