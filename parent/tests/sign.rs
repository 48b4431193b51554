//! The build and launch signing commands against a real NIP-46 signer:
//! the project's own dev stack holds the builder's and launcher's keys,
//! `parent sign-build` and `parent sign-instance` have them sign, and the
//! events are then checked the way the parent and the enclave check them,
//! against a dev attestation with matching and with different PCRs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nostr::{Event, JsonUtil, Keys, ToBech32};
use parent::dev_stack::Stack;
use verifier::attestation::dev::{nsm_document, DevChain};
use verifier::attestation::{Attestation, TrustedRoot};
use verifier::pcr::{pcr4_from_instance_id, pcr8_from_cert, Pcr};
use verifier::verify::check_signatures;

mod common;
use common::{relay, stack_config, test_dir, verifier, Writers};

const INSTANCE_ID: &str = "i-0123456789abcdef0";

fn parent(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_parent"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Imports `keys` into the stack and returns a fresh bunker URL for them.
fn bunker_for(keys: &Keys, stack: &Stack, dir: &Path, name: &str) -> String {
    let file = dir.join(name);
    std::fs::write(&file, keys.secret_key().to_bech32().unwrap()).unwrap();
    let p = &stack.paths;
    let base = [
        "--instance",
        p.event.to_str().unwrap(),
        "--root",
        p.dev_root.to_str().unwrap(),
        "--pcrs",
        p.pcrs.to_str().unwrap(),
        "--key-file",
        file.to_str().unwrap(),
    ];
    let out = verifier(&[&["key", "import"][..], &base].concat());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = verifier(&[&["key", "bunker-url"][..], &base].concat());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The parent's and enclave's check of the two events against a dev
/// attestation with these PCR4 and PCR8.
fn accepted(build: &Event, instance: &Event, pcr4: Pcr, pcr8: Pcr) -> Result<(), String> {
    let now = parent::unix_now();
    let chain = DevChain::generate(i64::try_from(now).unwrap()).unwrap();
    let pcrs = BTreeMap::from([(4, pcr4), (8, pcr8)]);
    let doc = chain.attest(nsm_document("i-dev-enc", now * 1000, &pcrs, &[7; 32]));
    let root = TrustedRoot::from_der_or_pem(chain.root.der()).unwrap();
    let attestation = Attestation::parse(&doc)
        .unwrap()
        .verify(&root, now)
        .unwrap();
    check_signatures(&attestation, build.clone(), instance.clone())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn builder_and_launcher_sign_through_nip46() {
    let (_relay, url, relay_addr) = relay(Writers::default()).await;
    let dir = test_dir("sign");
    let mut stack = Stack::start(&stack_config(dir.clone(), url.clone(), relay_addr, 3600))
        .await
        .unwrap();
    stack.wait_for_event(Duration::from_secs(60)).await.unwrap();
    let (builder, launcher) = (Keys::generate(), Keys::generate());
    let s = |p: &Path| p.display().to_string();

    let (cert, key) = (dir.join("signing-cert.pem"), dir.join("signing-key.pem"));
    let (code, out) = parent(&[
        "signing-cert",
        "--builder",
        &builder.public_key().to_bech32().unwrap(),
        "--cert-out",
        &s(&cert),
        "--key-out",
        &s(&key),
    ]);
    assert_eq!(code, Some(0), "{out}");
    let pcr8 = pcr8_from_cert(&std::fs::read(&cert).unwrap()).unwrap();
    assert!(
        out.contains(&pcr8.to_string()),
        "signing-cert prints the PCR8"
    );

    // The launcher's key cannot sign the build: the certificate names the builder.
    let wrong = bunker_for(&launcher, &stack, &dir, "launcher.nsec");
    let build_json = dir.join("build/build.json");
    let (code, out) = parent(&[
        "sign-build",
        "--cert",
        &s(&cert),
        "--mode",
        "dev",
        "--bunker",
        &wrong,
        "--out",
        &s(&build_json),
        "--timeout",
        "20",
    ]);
    assert_ne!(code, Some(0));
    assert!(out.contains("not the builder"), "{out}");
    assert!(!build_json.exists());

    let bunker = bunker_for(&builder, &stack, &dir, "builder.nsec");
    let (code, out) = parent(&[
        "sign-build",
        "--cert",
        &s(&cert),
        "--mode",
        "dev",
        "--bunker",
        &bunker,
        "--out",
        &s(&build_json),
        "--timeout",
        "20",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let build = Event::from_json(std::fs::read_to_string(&build_json).unwrap()).unwrap();
    assert_eq!(build.pubkey, builder.public_key());

    let instance_json = dir.join("instance/instance.json");
    let bunker = bunker_for(&launcher, &stack, &dir, "launcher.nsec");
    let launcher_npub = launcher.public_key().to_bech32().unwrap();
    let args = [
        "sign-instance",
        "--instance-id",
        INSTANCE_ID,
        "--mode",
        "dev",
        "--launcher",
        &launcher_npub,
        "--bunker",
        &bunker,
        "--out",
        &s(&instance_json),
        "--timeout",
        "20",
    ];
    let (code, out) = parent(&args);
    assert_eq!(code, Some(0), "{out}");
    let instance = Event::from_json(std::fs::read_to_string(&instance_json).unwrap()).unwrap();
    assert_eq!(instance.pubkey, launcher.public_key());
    // Still valid for this instance and launcher: kept, nobody is asked.
    let (code, out) = parent(&args);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("keeping it"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&instance_json).unwrap(),
        instance.as_json()
    );

    let pcr4 = pcr4_from_instance_id(INSTANCE_ID);
    accepted(&build, &instance, pcr4, pcr8).unwrap();
    assert!(accepted(
        &build,
        &instance,
        pcr4_from_instance_id("i-0fedcba9876543210"),
        pcr8
    )
    .unwrap_err()
    .contains("PCR4"));
    assert!(accepted(&build, &instance, pcr4, Pcr::ZERO).is_err());
    stack.stop().await.unwrap();
}
