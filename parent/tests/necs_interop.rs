//! The NECS reference validator, `nostr-enclaves` from npm (run by
//! `interop/necs-validate.mjs`), on what a dev stack publishes: its 63793
//! instance event and its 13793 announcement, with the maintainers'
//! release signatures.
//!
//! That validator trusts only AWS's root, and knows it by its serial
//! number alone, so the dev attester here gives its (fresh) root AWS's
//! serial. The same test shows that this project's verifier refuses such
//! a root unless it is named with --root.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use nostr::PublicKey;
use parent::dev_stack::Stack;

mod common;
use common::{interop_dir, node, relay, stack_config, test_dir, verifier, Writers};

/// The serial number of AWS Nitro Enclaves Root-G1.
const AWS_ROOT_SERIAL: &str = "00f93175681b90afe11d46ccb4e4e7f856";

async fn wait_for(path: &Path) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !path.is_file() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} did not appear",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nostr_enclaves_accepts_both_announcements_and_our_verifier_refuses_the_root() {
    interop_dir();
    let (_relay, url, relay_addr) = relay(Writers::default()).await;
    let mut config = stack_config(test_dir("necs-interop"), url, relay_addr, 3600);
    config.enclave_args = vec!["--dev-root-serial".into(), AWS_ROOT_SERIAL.into()];
    let mut stack = Stack::start(&config).await.unwrap();
    stack.wait_for_event(Duration::from_secs(60)).await.unwrap();
    let p = stack.paths.clone();
    wait_for(&p.announcement).await;
    let (event, announcement) = (
        p.event.display().to_string(),
        p.announcement.display().to_string(),
    );

    // Two of the three dev maintainers signed, for the policy's repository.
    let policy: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&p.release_policy).unwrap()).unwrap();
    let repository = policy["repository"].as_str().unwrap().to_owned();
    let hex: Vec<String> = stack
        .maintainers
        .npubs()
        .iter()
        .map(|n| PublicKey::parse(n).unwrap().to_hex())
        .collect();
    let signed = format!("{},{}", hex[0], hex[1]);
    let out = node(
        "necs-validate.mjs",
        &["--release", &repository, &signed, &event, &announcement],
    )
    .unwrap();
    assert!(
        out.contains("(kind 63793)") && out.contains("(kind 13793)"),
        "{out}"
    );
    // The validator does read the release tags: the maintainer who did not
    // sign is missing.
    let err = node(
        "necs-validate.mjs",
        &["--release", &repository, &hex[2], &announcement],
    )
    .unwrap_err();
    assert!(err.contains("not the expected release"), "{err}");

    // Our verifier: the root has AWS's serial but not AWS's key, so without
    // --root both are refused at the certificate chain; with it, accepted.
    for file in [&event, &announcement] {
        let o = verifier(&["check", file]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(1), "{stdout}");
        assert!(stdout.contains("(certificate_chain)"), "{stdout}");
        let root = p.dev_root.display().to_string();
        let o = verifier(&["check", file, "--root", &root]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    // This dev stack's maintainers signed dev releases: a client counts
    // them only when told to.
    let root = p.dev_root.display().to_string();
    let mut args = vec![
        "check".to_owned(),
        announcement.clone(),
        "--root".into(),
        root,
    ];
    for n in stack.maintainers.npubs() {
        args.extend(["--release-signer".into(), n]);
    }
    args.extend(["--threshold".into(), "2".into()]);
    let run = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        verifier(&args)
    };
    let o = run(&args);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("where only prod releases count"),
        "{stdout}"
    );
    args.push("--allow-dev-release".into());
    let o = run(&args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    stack.stop().await.unwrap();
}
