//! Client-initiated connections through the whole stack: an app (nostr-tools'
//! `BunkerSigner.fromURI`, NDK's nostrconnect flow) shows a nostrconnect://
//! URI on a relay the key does not use yet; the owner answers it with
//! `verifier key nostrconnect`; the app's connect completes, it signs kind 1
//! and is refused kind 0. URIs without a secret or relay are refused.
//!
//! Needs Node and `npm ci --prefix interop`, like `interop.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use nostr::{Keys, ToBech32};
use parent::dev_stack::Stack;

mod common;
use common::{interop_dir, relay, stack_config, test_dir, Key, Writers};

/// Runs `interop/nostrconnect.mjs` for `client` on `relay`; hands the URI it
/// prints to `answer`; its whole output once it exits, and whether it passed.
fn app(client: &str, relay: &str, user: &str, answer: impl FnOnce(&str)) -> (bool, String) {
    let mut child = Command::new("node")
        .args(["nostrconnect.mjs", client, relay, user])
        .current_dir(interop_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let uri = first
        .strip_prefix("URI ")
        .unwrap_or_else(|| panic!("no URI from the app: {first}"))
        .trim()
        .to_owned();
    answer(&uri);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    (status.success(), format!("{first}{rest}{err}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_that_start_the_connection_get_it() {
    interop_dir();
    let (_relay, url, relay_addr) = relay(Writers::default()).await;
    // The app's own relay, which the key does not listen on until answered.
    let (_theirs, their_url, their_addr) = relay(Writers::default()).await;
    let dir = test_dir("nostrconnect");
    let mut config = stack_config(dir.clone(), url.clone(), relay_addr, 3600);
    config.parent_args = vec!["--allow-egress".into(), their_addr.to_string()];
    let mut stack = Stack::start(&config).await.unwrap();
    stack.wait_for_event(Duration::from_secs(60)).await.unwrap();

    let user = Keys::generate();
    let key_file = dir.join("user.nsec");
    std::fs::write(&key_file, user.secret_key().to_bech32().unwrap()).unwrap();
    let key = Key::new(&stack.paths, &key_file);
    assert_eq!(key.ok("import"), "key imported");
    let pubkey = user.public_key().to_hex();

    // A URI that cannot work is refused before anything is sent.
    let client = Keys::generate().public_key().to_hex();
    for (uri, why) in [
        (
            format!("nostrconnect://{client}?relay={their_url}"),
            "no secret=",
        ),
        (format!("nostrconnect://{client}?secret=abc"), "no relay="),
    ] {
        let (code, _, stderr) = key.run("nostrconnect", &[&uri, "--perms", "sign_event:1"]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
    }

    for client in ["nostr-tools", "ndk"] {
        let (passed, out) = app(client, &their_url, &pubkey, |uri| {
            let (code, stdout, stderr) = key.run("nostrconnect", &[uri, "--perms", "sign_event:1"]);
            assert_eq!(code, Some(0), "{stderr}");
            assert!(
                stderr.contains("says (its own claims, unchecked): name interop")
                    && stderr.contains("it will get: sign_event of kind 1"),
                "{stderr}"
            );
            assert!(stdout.contains("the app is connected"), "{stdout}");
        });
        assert!(
            passed && out.contains(&format!("PASS {client} nostrconnect")),
            "{out}"
        );
    }

    // The apps are listed with their claims, and the key now listens on
    // the apps' relay too.
    let apps = key.ok_with("apps", &[]);
    assert_eq!(apps.matches("from nostrconnect").count(), 2, "{apps}");
    assert!(apps.contains("\"name\":\"interop app\""), "{apps}");
    let log = key.ok_with("log", &[]);
    assert!(
        log.contains("refused  forbidden: sign_event of kind 0"),
        "{log}"
    );

    let enclave_log = std::fs::read_to_string(stack.enclave.log()).unwrap();
    stack.stop().await.unwrap();
    assert!(!enclave_log.contains(&user.secret_key().to_secret_hex()));
    assert_eq!(enclave_log.matches("nostrconnect app connected").count(), 2);
}
