//! Real NIP-46 clients against the whole stack (`parent run`, `enclave
//! run --attester dev`, a LocalRelay): the key goes in with `verifier key
//! import` after the instance verifies, then nostr-tools' BunkerSigner and
//! NDK's NDKNip46Signer (Node scripts in `interop/`) and rust-nostr's
//! NostrConnect use it. The logs must never show the key.
//!
//! Needs Node and `npm ci --prefix interop` (`.ci/run` does that); a
//! missing one fails the test with what to run, it is never skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use nostr::nips::nip46::NostrConnectURI;
use nostr::{EventBuilder, Keys, NostrSigner, ToBech32};
use nostr_connect::client::NostrConnect;
use parent::dev_stack::Stack;

mod common;
use common::{interop_dir, node, relay, stack_config, test_dir, verifier, Key, Writers};

#[tokio::test(flavor = "multi_thread")]
async fn real_clients_sign_through_the_stack() {
    // Fail early, before the stack starts, if the clients are missing.
    interop_dir();
    let (_relay, url, relay_addr) = relay(Writers::default()).await;
    let dir = test_dir("interop");
    let config = stack_config(dir.clone(), url.clone(), relay_addr, 3600);
    let mut stack = Stack::start(&config).await.unwrap();
    stack.wait_for_event(Duration::from_secs(60)).await.unwrap();
    let paths = stack.paths.clone();

    let user = Keys::generate();
    let secret_hex = user.secret_key().to_secret_hex();
    let nsec = user.secret_key().to_bech32().unwrap();
    let key_file = dir.join("user.nsec");
    std::fs::write(&key_file, format!("{nsec}\n")).unwrap();
    let key = Key::new(&paths, &key_file);
    let (instance, root, pcrs, file) = (
        key.instance.clone(),
        key.root.clone(),
        key.pcrs.clone(),
        key.file.clone(),
    );

    // Nothing is sent to an instance the verifier refuses: without the
    // dev root this one does not verify.
    let out = verifier(&[
        "key",
        "import",
        "--instance",
        &instance,
        "--pcrs",
        &pcrs,
        "--key-file",
        &file,
        "--timeout",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to talk to this instance"));

    let (code, stdout, _) = key.run("status", &[]);
    assert_eq!(
        (code, stdout.as_str()),
        (Some(1), "the enclave does not hold your key")
    );
    assert_eq!(key.ok("import"), "key imported");
    // The instance found by its service key on a relay instead of a file.
    let service = stack
        .wait_for_event(Duration::from_secs(5))
        .await
        .unwrap()
        .pubkey
        .to_bech32()
        .unwrap();
    let out = verifier(&[
        "key",
        "status",
        "--service",
        &service,
        "--relay",
        &url,
        "--root",
        &root,
        "--pcrs",
        &pcrs,
        "--key-file",
        &file,
        "--timeout",
        "20",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().next(),
        Some("the enclave holds your key")
    );
    let status = key.ok("status");
    assert_eq!(status.lines().next(), Some("the enclave holds your key"));
    assert!(
        status.contains("no app you granted keeps it: deleted after"),
        "{status}"
    );
    let pubkey = user.public_key().to_hex();
    let urls: Vec<String> = (0..4).map(|_| key.ok("bunker-url")).collect();
    for u in &urls {
        assert!(u.starts_with(&format!("bunker://{pubkey}?relay=")), "{u}");
    }

    let nostr_tools =
        node("bunker-signer.mjs", &[&urls[0], &urls[1], &pubkey]).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        nostr_tools.contains("PASS nostr-tools BunkerSigner"),
        "{nostr_tools}"
    );
    let ndk = node("ndk.mjs", &[&urls[2], &pubkey]).unwrap_or_else(|e| panic!("{e}"));
    assert!(ndk.contains("PASS NDK NDKNip46Signer"), "{ndk}");

    // rust-nostr's client.
    let client = NostrConnect::new(
        NostrConnectURI::parse(&urls[3]).unwrap(),
        Keys::generate(),
        Duration::from_secs(15),
        None,
    )
    .unwrap();
    assert_eq!(client.get_public_key().await.unwrap(), user.public_key());
    let unsigned = EventBuilder::text_note("through rust-nostr").build(user.public_key());
    let signed = client.sign_event(unsigned.clone()).await.unwrap();
    signed.verify().unwrap();
    assert_eq!(
        (signed.content.as_str(), signed.created_at),
        (unsigned.content.as_str(), unsigned.created_at)
    );
    client.shutdown().await;

    // A throw-away key works the same way, without the user's key.
    let out = verifier(&[
        "key",
        "test-key",
        "--instance",
        &instance,
        "--root",
        &root,
        "--pcrs",
        &pcrs,
        "--timeout",
        "20",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let test_url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let test_pubkey = test_url
        .trim_start_matches("bunker://")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let ndk = node("ndk.mjs", &[&test_url, &test_pubkey]).unwrap_or_else(|e| panic!("{e}"));
    assert!(ndk.contains("PASS"), "{ndk}");

    assert_eq!(key.ok("delete"), "key deleted");
    let (code, stdout, _) = key.run("status", &[]);
    assert_eq!(
        (code, stdout.as_str()),
        (Some(1), "the enclave does not hold your key")
    );
    let (code, _, stderr) = key.run("delete", &[]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no key is held for you"), "{stderr}");

    let logs: String = [
        stack.enclave.log().to_owned(),
        stack.parent.log().to_owned(),
    ]
    .iter()
    .map(|p| std::fs::read_to_string(p).unwrap())
    .collect();
    stack.stop().await.unwrap();
    for secret in [&secret_hex, &nsec] {
        assert!(
            !logs.contains(secret.as_str()),
            "the user's key is in a log"
        );
    }
    assert!(
        logs.contains("key imported") && logs.contains("key deleted"),
        "the operator sees what happened"
    );
}
