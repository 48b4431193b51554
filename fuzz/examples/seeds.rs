//! Writes the starting inputs of every target into `fuzz/corpus/<target>/`
//! (the fuzzer grows and minimizes them from there; see FUZZING.md):
//!
//! ```sh
//! cargo run -p fuzz --example seeds            # every target
//! cargo run -p fuzz --example seeds -- TARGET  # one target (a new one)
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;

use base64::Engine;
use fuzz::support::{
    fixed_keys, fixture_attestation, fixture_document, fixture_event, join, FIXTURE,
};
use nostr::{EventBuilder, JsonUtil, Kind, RelayUrl, Tag, ToBech32};
use sha2::{Digest, Sha256};
use verifier::attestation::dev::{nsm_document, DevChain};
use verifier::custodian::message::{Call, CustodyRequest, StateName};
use verifier::event::Mode;
use verifier::protocol::{Reply, Request as StartRequest, StartResult};
use verifier::release::ReleaseSignature;
use verifier::rpc::bunker::bunker_url;
use verifier::rpc::cipher::{Conversation, Scheme};
use verifier::rpc::nip44::{self, ConversationKey};
use verifier::rpc::{Params, Request, Response};
use verifier::state::record::SecretString;
use verifier::state::{ChunkHeader, SealedChunk, StateIdentity};

fn write(target: &str, data: &[u8]) {
    if std::env::args().nth(1).is_some_and(|only| only != target) {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    let name = hex::encode(&Sha256::digest(data)[..20]);
    std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
}

fn tag_value(name: &str) -> String {
    fixture_event()
        .tags
        .iter()
        .find(|t| t.kind().to_string() == name)
        .and_then(|t| t.content())
        .unwrap()
        .to_owned()
}

const TEMPLATE: &str = r#"{"kind":1,"content":"hello","tags":[["t","fuzz"],["p","0000000000000000000000000000000000000000000000000000000000000001"]],"created_at":1800000000}"#;
const POLICY: &str = r#"{"perms":"sign_event:1,sign_event:7-9,nip44_encrypt","ttl":3600,"uses":10,"rate":"5/10s,100/h","created_at_window":600}"#;

fn main() {
    // Attestation documents: the real one, as bytes and base64, and a dev one.
    let doc = fixture_document();
    write("attestation_document", doc);
    write(
        "attestation_document",
        base64::engine::general_purpose::STANDARD
            .encode(doc)
            .as_bytes(),
    );
    let chain = DevChain::generate(1_800_000_000).unwrap();
    let dev = chain.attest(nsm_document(
        "i-0-enc0",
        1_800_000_000_000,
        &Default::default(),
        &[2; 33],
    ));
    write("attestation_document", &dev);
    let real = fixture_attestation().doc();
    write("attestation_payload", &real.to_cbor());
    let mut bundle: Vec<&[u8]> = vec![&real.certificate];
    bundle.extend(real.cabundle.iter().map(Vec::as_slice));
    write("certificate_bundle", &join(&bundle));
    write(
        "certificate_bundle",
        &join(&[chain.leaf.der(), chain.root.der(), chain.intermediate.der()]),
    );

    // Events: the instance event and its two signature events.
    write("instance_event", FIXTURE.as_bytes());
    write("signature_events", tag_value("build").as_bytes());
    write("signature_events", tag_value("instance").as_bytes());

    // Release signatures of the fixture's PCR0/1/2, prod and dev, one of
    // other PCRs, and a docker release (the kind collision); policies.
    let pcrs = [real.pcr(0), real.pcr(1), real.pcr(2)];
    let version = verifier::release::parse_version("1.2.3").unwrap();
    let repo = "https://github.com/nostrband/noauth-enclaved";
    for (n, mode) in [(0, Mode::Prod), (1, Mode::Dev)] {
        let event = ReleaseSignature::builder(repo, &version, mode, &pcrs)
            .unwrap()
            .custom_created_at(nostr::Timestamp::from_secs(1_800_000_000))
            .sign_with_keys(&fixed_keys(n))
            .unwrap();
        write("release_signature", event.as_json().as_bytes());
    }
    let other = [real.pcr(1), real.pcr(0), real.pcr(2)];
    let event = ReleaseSignature::builder(repo, &version, Mode::Prod, &other)
        .unwrap()
        .sign_with_keys(&fixed_keys(2))
        .unwrap();
    write("release_signature", event.as_json().as_bytes());
    let docker = EventBuilder::new(Kind::from_u16(63795), "")
        .tags([
            Tag::parse(["t", "prod"]).unwrap(),
            Tag::parse(["r", repo]).unwrap(),
            Tag::parse(["v", "1.2.3"]).unwrap(),
            Tag::parse(["x", &"ab".repeat(32), "docker"]).unwrap(),
        ])
        .sign_with_keys(&fixed_keys(3))
        .unwrap();
    write("release_signature", docker.as_json().as_bytes());
    write(
        "release_policy",
        include_bytes!("../../release-policy.json"),
    );
    let maintainers: Vec<String> = (0..3)
        .map(|n| fixed_keys(n).public_key().to_bech32().unwrap())
        .collect();
    let policy = verifier::release::ReleasePolicy {
        repository: repo.into(),
        trust: verifier::release::ReleaseTrust::new(&maintainers, 2, Some("0.1.0")).unwrap(),
    };
    write("release_policy", policy.to_json().as_bytes());

    // Sealed state chunks, under the fixed state key: an empty one and one
    // of two with a payload.
    let key = fuzz::state::fixed_state_key();
    let identity = StateIdentity::new(fixed_keys(0).public_key(), "main").unwrap();
    for (index, count, plaintext) in [(0, 1, &b""[..]), (1, 2, &b"{\"keys\":[]}"[..])] {
        let header = ChunkHeader {
            identity: identity.clone(),
            epoch: 1,
            version: 7,
            policy: [9; 32],
            key_id: key.id(),
            index,
            count,
        };
        let chunk = SealedChunk::seal(&key, header, plaintext).unwrap();
        write("state_chunk", &chunk.bytes);
    }

    // Custody requests: a seal, then a claim, a commit and a heartbeat of
    // the same state, one per line.
    let launcher = fixed_keys(4).public_key();
    let state = StateName::of(&StateIdentity::new(launcher, "main").unwrap());
    let custody_policy = verifier::release::ReleasePolicy {
        repository: "https://github.com/nostrband/noauth-enclaved".into(),
        trust: verifier::release::ReleaseTrust::new(
            &[fixed_keys(5).public_key().to_hex()],
            1,
            Some("0.1.0"),
        )
        .unwrap(),
    };
    let calls = [
        Call::Seal {
            state: state.clone(),
            key: SecretString(zeroize::Zeroizing::new("5a".repeat(32))),
            key_id: "a5".repeat(16),
            policy: custody_policy.to_json(),
            custodians: vec![fixed_keys(6).public_key().to_hex()],
            version: 1,
            hash: "01".repeat(32),
        },
        Call::Claim {
            state: state.clone(),
            epoch: 2,
        },
        Call::Commit {
            state: state.clone(),
            epoch: 2,
            version: 2,
            hash: "02".repeat(32),
            key_id: "a5".repeat(16),
        },
        Call::Heartbeat { state, epoch: 2 },
    ];
    let lines: Vec<String> = calls
        .into_iter()
        .map(|call| {
            CustodyRequest {
                instance: "{}".into(),
                call,
            }
            .to_json()
        })
        .collect();
    write("custody_request", lines.join("\n").as_bytes());
    write("custody_request", lines[0].as_bytes());

    // The metadata protocol, both ways.
    let start = StartRequest::start(doc);
    write(
        "metadata_request",
        serde_json::to_string(&start).unwrap().as_bytes(),
    );
    let result = StartResult {
        build: nostr::Event::from_json(tag_value("build")).unwrap(),
        instance: nostr::Event::from_json(tag_value("instance")).unwrap(),
        announce_relays: vec!["wss://relay.example".into()],
        prod: true,
        releases: vec![],
    };
    write(
        "metadata_reply",
        Reply::ok("start", &result).to_json().as_bytes(),
    );
    write(
        "metadata_reply",
        Reply::error("start", "refused").to_json().as_bytes(),
    );

    // NIP-46 and admin messages.
    let request = Request::new("sign_event", Params::new([TEMPLATE]));
    write("rpc_message", request.to_json().as_bytes());
    write(
        "rpc_message",
        Response::ok(&request.id, "pong").to_json().as_bytes(),
    );
    write(
        "rpc_message",
        br#"{"id":"1","method":"connect_key","params":["00","11","wss://r.example"]}"#,
    );
    for seed in [
        "import_key\n$nsec\0wss://relay.example".to_owned(),
        "connect_key\n$nsec\0$hex\0wss://relay.example".to_owned(),
        format!("connect_key\n$nsec\0$hex\0wss://relay.example\0{POLICY}"),
        format!("create_bunker_url\n{POLICY}"),
        format!("grant\n$hex\0{POLICY}"),
        "list_apps\n3".to_owned(),
        "get_log\n".to_owned(),
        "revoke_app\n$npub".to_owned(),
        "generate_test_key\nwss://a.example,wss://b.example".to_owned(),
        "nostrconnect\nnostrconnect://$hex?relay=wss%3A%2F%2Fr.example&secret=s3cr3t&perms=sign_event%3A1".to_owned(),
    ] {
        write("admin_params", seed.as_bytes());
    }

    // Ciphers.
    let key = ConversationKey::from_bytes([7; 32]);
    write(
        "nip44_decrypt",
        nip44::encrypt(&key, b"{\"id\":\"1\"}").unwrap().as_bytes(),
    );
    let app = fixed_keys(2);
    let ours = fixed_keys(1).public_key();
    let c44 = Conversation::new(Scheme::Nip44, app.secret_key(), &ours).unwrap();
    write(
        "nip44_decrypt",
        c44.encrypt("a request").unwrap().as_bytes(),
    );
    let c04 = Conversation::new(Scheme::Nip04, app.secret_key(), &ours).unwrap();
    write(
        "nip04_decrypt",
        c04.encrypt("a request").unwrap().as_bytes(),
    );

    // URIs.
    let relays = [
        RelayUrl::parse("wss://relay.example").unwrap(),
        RelayUrl::parse("ws://127.0.0.1:7777").unwrap(),
    ];
    write(
        "bunker_uri",
        bunker_url(&ours, &relays, Some("secret")).as_bytes(),
    );
    write(
        "bunker_uri",
        bunker_url(&ours, &relays[..1], None).as_bytes(),
    );
    let client = app.public_key().to_hex();
    write(
        "nostrconnect_uri",
        format!("nostrconnect://{client}?relay=wss%3A%2F%2Frelay.example&relay=ws%3A%2F%2F127.0.0.1%3A7777&secret=0s1&perms=sign_event%3A1%2Cnip44_encrypt&name=An%20app&url=https%3A%2F%2Fapp.example&image=https%3A%2F%2Fapp.example%2Fi.png").as_bytes(),
    );
    write(
        "nostrconnect_uri",
        format!("nostrconnect://{client}?relay=wss://relay.example&secret=x&metadata=%7B%22name%22%3A%22old%22%7D").as_bytes(),
    );

    // Templates and relay lists.
    write("sign_event_template", TEMPLATE.as_bytes());
    write(
        "sign_event_template",
        br#"{"kind":30078,"content":"","tags":[["d","x"],["t","nsec-app-perm"]]}"#,
    );
    let list = EventBuilder::new(Kind::RelayList, "")
        .tags([
            Tag::parse(["r", "wss://relay.example"]).unwrap(),
            Tag::parse(["r", "wss://read.example", "read"]).unwrap(),
            Tag::parse(["r", "wss://write.example", "write"]).unwrap(),
        ])
        .sign_with_keys(&app)
        .unwrap();
    write("relay_list", list.as_json().as_bytes());
    write("relay_list", b"wss://relay.example,ws://127.0.0.1:7777");

    // Grants.
    write("perms", b"sign_event:1,sign_event:7-9,nip44_encrypt:0000000000000000000000000000000000000000000000000000000000000001\nsign_event:1-8,nip04_decrypt\n\x02\x00\x01\x02\x00\x08");
    write("perms", b"basic\nfull\n\x02\x75\x33");
    write("perms", b"full\nsign_event:27235\n\x02\x6a\x63");
    write(
        "policy",
        format!("{POLICY}\n\x02\x00\x01\x02\x00\x01\x02\x00\x01\x07\x00\x00").as_bytes(),
    );
    write(
        "policy",
        br#"{"perms":"full","expires_at":1800000000,"rate":"none","created_at_window":"none"}"#,
    );
    let user = fixed_keys(0).public_key();
    let app5 = fixed_keys(5).public_key();
    let perm = |p: &str, v: &str| serde_json::json!({"id": "x", "npub": user.to_bech32().unwrap(), "appNpub": app5.to_bech32().unwrap(), "perm": p, "value": v, "timestamp": 1});
    let payload = serde_json::json!({
        "appNpub": app5.to_bech32().unwrap(), "npub": user.to_bech32().unwrap(),
        "name": "An app", "icon": "", "url": "https://app.example",
        "timestamp": 1, "updateTimestamp": 2, "permUpdateTimestamp": 2,
        "perms": [perm("sign_event:1", "1"), perm("nip44_encrypt", "1"), perm("sign_event:0", "0")],
    });
    let deleted = serde_json::json!({"appNpub": app5.to_bech32().unwrap(), "npub": user.to_bech32().unwrap(), "updateTimestamp": 3, "deleted": true});
    write(
        "nsec_app_payload",
        format!("{payload}\0{deleted}").as_bytes(),
    );

    // Signer sequences (fields separated by tabs; see fuzz/src/signer.rs).
    let t = |s: &str| s.replace(" | ", "\t");
    for seq in [
        // An owner imports its key; an app connects, signs, encrypts, logs out.
        "req | 0 | admin | 44 | connect_key | $sk0 | $pk2 | $relay\nreq | 2 | 0 | 44 | connect | $pk0\nreq | 2 | 0 | 44 | sign_event | {\"kind\":1,\"content\":\"x\",\"tags\":[],\"created_at\":$now}\nreq | 2 | 0 | 04 | nip04_encrypt | $pk4 | hi\nreq | 2 | 0 | 44 | logout\nreq | 2 | 0 | 44 | ping",
        // A scoped secret: refused kinds, rate limits, the log.
        "req | 0 | admin | 44 | import_key | $sk0 | $relay\nreq | 0 | admin | 44 | create_bunker_url | {\"perms\":\"sign_event:1\",\"rate\":\"2/10s\"}\necho | 0\nreq | 0 | admin | 44 | list_apps\nreq | 0 | admin | 44 | get_log",
        // The enclave's own keys as peers, replays and echoes of replies.
        "req | 0 | admin | 44 | import_key | $sk0 | $relay\nreq | 0 | 0 | 44 | ping\nreq | 5 | admin | 44 | ping\nreq | 4 | 0 | 44 | connect | $pk0\nreplay | 3\necho | 0\necho | 1\nraw | 0 | 5 | 24135 | x\nwait | 700\nreplay | 0",
        // Key limits and deletion; a nostrconnect answer.
        "req | 0 | admin | 44 | import_key | $sk0 | $relay\nreq | 1 | admin | 44 | import_key | $sk1 | $relay\nreq | 4 | admin | 44 | generate_test_key | $relay\nreq | 2 | admin | 44 | import_key | $sk2 | $relay\nreq | 1 | admin | 44 | nostrconnect | nostrconnect://$pk3?relay=$relay&secret=abc&perms=sign_event%3A1\nreq | 1 | admin | 44 | delete_key\nreq | 3 | 1 | 44 | sign_event | {\"kind\":1,\"content\":\"\",\"tags\":[]}",
        // nsec.app permission events and a grant change.
        "req | 0 | admin | 44 | connect_key | $sk0 | $pk2 | $relay | {\"perms\":\"sign_event:1\"}\nreq | 0 | admin | 44 | grant | $pk2 | {\"perms\":\"none\"}\nraw | 0 | 0 | 30078 | garbage\nreq | 2 | 0 | 44 | nip44_decrypt | $pk0 | AAAA",
    ] {
        write("signer_sequence", t(seq).as_bytes());
    }
    println!(
        "seeds written under {}",
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .display()
    );
}
