//! The metadata server over TCP on 127.0.0.1, driven by a real WebSocket
//! client speaking the original wire format.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use nostr::{JsonUtil, Keys, Timestamp};
use parent::metadata::{MetadataConfig, MetadataServer};
use parent::signature_files::SignatureFiles;
use parent::transport::{ListenAddr, Listener};
use tokio_tungstenite::tungstenite::Message;
use verifier::attestation::dev::{builder_certificate, nsm_document, DevChain, Validity};
use verifier::attestation::TrustedRoot;
use verifier::event::build_signature::BuildSignature;
use verifier::event::instance_signature::InstanceSignature;
use verifier::event::{npub, Mode};
use verifier::pcr::{pcr4_from_instance_id, pcr8_from_cert_der, pcr_digest};
use verifier::protocol::{Reply, Request, StartResult, MAX_STATE_MESSAGE};
use verifier::release::{parse_version, ReleaseSignature};
use verifier::signing_cert::SigningCert;

const INSTANCE_ID: &str = "i-0123456789abcdef0";

struct Setup {
    chain: DevChain,
    service: Keys,
    cert: Vec<u8>,
    dir: PathBuf,
    build: nostr::Event,
    instance: nostr::Event,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Setup {
    fn new(name: &str) -> Self {
        let builder = Keys::generate();
        let launcher = Keys::generate();
        let cert = builder_certificate(
            &npub(&builder.public_key()),
            Validity::from(now() - 86_400, 86_400 * 365),
        )
        .unwrap();
        let sign = |b: nostr::EventBuilder, k: &Keys| {
            b.custom_created_at(Timestamp::now())
                .sign_with_keys(k)
                .unwrap()
        };
        let build = sign(
            BuildSignature::builder(&SigningCert::from_der(&cert).unwrap(), Mode::Dev).unwrap(),
            &builder,
        );
        let instance = sign(
            InstanceSignature::builder(&pcr4_from_instance_id(INSTANCE_ID), Mode::Dev).unwrap(),
            &launcher,
        );
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("metadata-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let setup = Self {
            chain: DevChain::generate(now() - 60).unwrap(),
            service: Keys::generate(),
            cert,
            dir,
            build,
            instance,
        };
        setup.write(&setup.build, &setup.instance);
        setup
    }

    fn write(&self, build: &nostr::Event, instance: &nostr::Event) {
        std::fs::write(self.dir.join("build.json"), build.as_json()).unwrap();
        std::fs::write(self.dir.join("instance.json"), instance.as_json()).unwrap();
    }

    fn files(&self) -> SignatureFiles {
        SignatureFiles {
            build: self.dir.join("build.json"),
            instance: self.dir.join("instance.json"),
            releases: self
                .dir
                .join("release")
                .is_dir()
                .then(|| self.dir.join("release")),
        }
    }

    /// An attestation from this enclave, with `pcr4` and `pcr8` as given.
    fn attestation(&self, instance_id: &str) -> Vec<u8> {
        let pcrs = BTreeMap::from([
            (0, pcr_digest(b"image")),
            (1, pcr_digest(b"kernel")),
            (2, pcr_digest(b"application")),
            (4, pcr4_from_instance_id(instance_id)),
            (8, pcr8_from_cert_der(&self.cert)),
        ]);
        let doc = nsm_document(
            &format!("{instance_id}-enc01"),
            now() as u64 * 1000,
            &pcrs,
            &self.service.public_key().to_bytes(),
        );
        self.chain.attest(doc)
    }

    async fn server(&self) -> String {
        let listener = Listener::bind(&"tcp:127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let ListenAddr::Tcp(addr) = listener.local_addr().unwrap() else {
            unreachable!()
        };
        let server = MetadataServer::new(MetadataConfig {
            files: self.files(),
            root: TrustedRoot::from_der_or_pem(self.chain.root.der()).unwrap(),
            announce_relays: vec!["ws://127.0.0.1:1/".into()],
            prod: false,
            max_connections: 4,
            state: None,
        });
        tokio::spawn(server.run(listener));
        format!("ws://{addr}")
    }
}

/// Sends one text message and returns the reply.
async fn ask(url: &str, text: String) -> Reply {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text(text)).await.unwrap();
    let Some(Ok(Message::Text(reply))) = ws.next().await else {
        panic!("no reply")
    };
    Reply::from_json(reply.as_str()).unwrap()
}

async fn start(url: &str, attestation: &[u8]) -> Reply {
    let request = Request::start(attestation);
    ask(url, serde_json::to_string(&request).unwrap()).await
}

#[tokio::test]
async fn answers_start_with_the_signature_events() {
    let s = Setup::new("ok");
    let url = s.server().await;
    let reply = start(&url, &s.attestation(INSTANCE_ID)).await;
    assert_eq!(reply.id, "start");
    assert_eq!(reply.error, None);
    let result = StartResult::from_json(&reply.result).unwrap();
    assert_eq!(result.build, s.build);
    assert_eq!(result.instance, s.instance);
    assert_eq!(result.announce_relays, vec!["ws://127.0.0.1:1/".to_owned()]);
    assert!(!result.prod);
}

/// A release signature by a fresh maintainer of an image whose PCR0 is
/// the digest of `image` (PCR1 and PCR2 as [`Setup::attestation`]'s).
fn release_of(image: &[u8]) -> nostr::Event {
    let pcrs = [
        pcr_digest(image),
        pcr_digest(b"kernel"),
        pcr_digest(b"application"),
    ];
    ReleaseSignature::builder(
        "https://github.com/example/enclaved",
        &parse_version("1.2.3").unwrap(),
        Mode::Dev,
        &pcrs,
    )
    .unwrap()
    .custom_created_at(Timestamp::now())
    .sign_with_keys(&Keys::generate())
    .unwrap()
}

#[tokio::test]
async fn serves_only_the_release_signatures_of_the_attested_image() {
    let s = Setup::new("releases");
    let dir = s.dir.join("release");
    std::fs::create_dir_all(&dir).unwrap();
    let ours = [release_of(b"image"), release_of(b"image")];
    let other = release_of(b"another image");
    for (i, event) in ours.iter().chain([&other]).enumerate() {
        std::fs::write(dir.join(format!("{i}.json")), event.as_json()).unwrap();
    }
    // Not JSON signatures: ignored by name.
    std::fs::write(dir.join("README.txt"), "notes").unwrap();
    let url = s.server().await;
    let reply = start(&url, &s.attestation(INSTANCE_ID)).await;
    assert_eq!(reply.error, None);
    let result = StartResult::from_json(&reply.result).unwrap();
    let mut served: Vec<_> = result.releases.iter().map(|e| e.id).collect();
    let mut expected: Vec<_> = ours.iter().map(|e| e.id).collect();
    served.sort();
    expected.sort();
    assert_eq!(served, expected);

    // A file in the directory that is not a release signature stops the
    // answer with its name, rather than being passed on or dropped silently.
    std::fs::write(dir.join("bad.json"), s.build.as_json()).unwrap();
    let reply = start(&url, &s.attestation(INSTANCE_ID)).await;
    let error = reply.error.unwrap();
    assert!(
        error.contains("bad.json") && error.contains("not a valid release signature"),
        "{error}"
    );
    std::fs::remove_file(dir.join("bad.json")).unwrap();

    // More signatures than an enclave accepts.
    for i in 0..17 {
        let e = release_of(b"image");
        std::fs::write(dir.join(format!("many-{i}.json")), e.as_json()).unwrap();
    }
    let reply = start(&url, &s.attestation(INSTANCE_ID)).await;
    let error = reply.error.unwrap();
    assert!(error.contains("more than the 16"), "{error}");
}

#[tokio::test]
async fn refuses_a_forged_attestation() {
    let s = Setup::new("forged");
    let url = s.server().await;
    // Signed by a chain the parent does not trust.
    let other = Setup::new("forged-other");
    let reply = start(&url, &other.attestation(INSTANCE_ID)).await;
    let error = reply.error.unwrap();
    assert!(error.contains("attestation refused"), "{error}");
    assert_eq!(reply.result, "");
    // Not an attestation at all.
    let reply = ask(
        &url,
        r#"{"id":"x","method":"start","params":["AAAA"]}"#.into(),
    )
    .await;
    assert_eq!(reply.id, "x");
    assert!(reply.error.unwrap().contains("attestation refused"));
}

#[tokio::test]
async fn refuses_build_or_instance_files_that_do_not_match() {
    let s = Setup::new("mismatch");
    let url = s.server().await;
    // The enclave runs on another EC2 instance than instance.json names.
    let reply = start(&url, &s.attestation("i-0aaaaaaaaaaaaaaaa")).await;
    let error = reply.error.unwrap();
    assert!(
        error.contains("does not match") && error.contains("PCR4"),
        "{error}"
    );

    // build.json for another image; the files are read again per request.
    let other = Setup::new("mismatch-other");
    s.write(&other.build, &s.instance);
    let reply = start(&url, &s.attestation(INSTANCE_ID)).await;
    let error = reply.error.unwrap();
    assert!(error.contains("PCR8"), "{error}");
}

#[tokio::test]
async fn answers_bad_requests_with_errors() {
    let s = Setup::new("bad");
    let url = s.server().await;
    for (text, expect) in [
        (
            r#"{"id":"1","method":"stop","params":[]}"#.to_owned(),
            "unknown method",
        ),
        (
            r#"{"id":"2","method":"start","params":[]}"#.to_owned(),
            "one parameter",
        ),
        ("not json".to_owned(), "malformed"),
    ] {
        let reply = ask(&url, text).await;
        let error = reply.error.unwrap();
        assert!(error.contains(expect), "{error}");
    }
    // A start request over its own cap, within the state methods' cap, is
    // answered with an error.
    let big = Request::start(&vec![0; 64 * 1024]);
    let error = ask(&url, serde_json::to_string(&big).unwrap())
        .await
        .error
        .unwrap();
    assert!(error.contains("start request"), "{error}");
    // Over the message cap: the connection is closed, not answered.
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let _ = ws
        .send(Message::text("x".repeat(MAX_STATE_MESSAGE + 1)))
        .await;
    assert!(!matches!(ws.next().await, Some(Ok(Message::Text(_)))));
    // The server still serves others.
    assert!(start(&url, &s.attestation(INSTANCE_ID))
        .await
        .error
        .is_none());
}

#[test]
fn refuses_to_start_with_missing_or_invalid_files() {
    let s = Setup::new("cli");
    let run = |build: &PathBuf, instance: &PathBuf| {
        std::process::Command::new(env!("CARGO_BIN_EXE_parent"))
            .args([
                "run",
                "--metadata",
                "tcp:127.0.0.1:0",
                "--announce-relay",
                "ws://127.0.0.1:1",
            ])
            .arg("--build")
            .arg(build)
            .arg("--instance")
            .arg(instance)
            .output()
            .unwrap()
    };
    let files = s.files();
    let missing = s.dir.join("missing.json");
    let o = run(&missing, &files.instance);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.json"));
    // Files swapped: a 63796 event is not a build signature.
    let o = run(&files.instance, &files.build);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a valid build signature"));
    let junk = s.dir.join("junk.json");
    std::fs::write(&junk, "{}").unwrap();
    let o = run(&files.build, &junk);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("junk.json"));
}

#[test]
fn runs_both_servers_and_stops_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let s = Setup::new("sigterm");
    let files = s.files();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_parent"))
        .args([
            "run",
            "--metadata",
            "tcp:127.0.0.1:0",
            "--socks",
            "tcp:127.0.0.1:0",
        ])
        .args([
            "--announce-relay",
            "ws://127.0.0.1:1",
            "--allow-egress",
            "127.0.0.1:1",
        ])
        .arg("--build")
        .arg(&files.build)
        .arg("--instance")
        .arg(&files.instance)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("metadata server listening on tcp:127.0.0.1:") {
            break;
        }
    }
    assert!(
        seen.iter()
            .any(|l| l.contains("SOCKS5 proxy listening on tcp:127.0.0.1:")),
        "{seen:#?}"
    );
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(lines.any(|l| l.unwrap().contains("stopping")));
}
