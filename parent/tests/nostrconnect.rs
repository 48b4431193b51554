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

/// Kind 24133 events by `author` seen on `url` from now on.
struct Seen(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Seen {
    fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn watch(url: &str, author: &nostr::PublicKey) -> (nostr_sdk::Client, Seen) {
    let client = nostr_sdk::Client::default();
    client.add_relay(url).await.unwrap();
    client.connect().await;
    client.wait_for_connection(Duration::from_secs(10)).await;
    let filter = nostr::Filter::new()
        .kind(nostr::Kind::from(verifier::event::KIND_NIP46))
        .author(*author)
        .since(nostr::Timestamp::now() - 5);
    client.subscribe(filter, None).await.unwrap();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&seen);
    let mut notifications = client.notifications();
    tokio::spawn(async move {
        while let Ok(n) = notifications.recv().await {
            if let nostr_sdk::RelayPoolNotification::Event { .. } = n {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    (client, Seen(seen))
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_that_start_the_connection_get_it() {
    interop_dir();
    let (_relay, url, relay_addr) = relay(Writers::default()).await;
    // The app's own relay, which the key does not use yet, and the key's
    // own (not the admin relay).
    let (_theirs, their_url, their_addr) = relay(Writers::default()).await;
    let (_own, own_url, own_addr) = relay(Writers::default()).await;
    let dir = test_dir("nostrconnect");
    let mut config = stack_config(dir.clone(), url.clone(), relay_addr, 3600);
    config.parent_args = vec![
        "--allow-egress".into(),
        their_addr.to_string(),
        "--allow-egress".into(),
        own_addr.to_string(),
    ];
    let mut stack = Stack::start(&config).await.unwrap();
    stack.wait_for_event(Duration::from_secs(60)).await.unwrap();

    let user = Keys::generate();
    let key_file = dir.join("user.nsec");
    std::fs::write(&key_file, user.secret_key().to_bech32().unwrap()).unwrap();
    let key = Key::new(&stack.paths, &key_file);
    assert_eq!(
        key.ok_with("import", &["--signer-relay", &own_url]),
        "key imported"
    );
    let pubkey = user.public_key().to_hex();
    // What the user's key publishes in NIP-46 on the admin relay (nothing
    // should) and on its own relay (the connect responses, among others).
    let (admin_watch, admin_seen) = watch(&url, &user.public_key()).await;
    let (own_watch, own_seen) = watch(&own_url, &user.public_key()).await;

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

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        admin_seen.count(),
        0,
        "nothing for the apps on the admin relay"
    );
    assert!(
        own_seen.count() >= 2,
        "the connect responses reach the key's own relay"
    );
    admin_watch.shutdown().await;
    own_watch.shutdown().await;

    let enclave_log = std::fs::read_to_string(stack.enclave.log()).unwrap();
    stack.stop().await.unwrap();
    assert!(!enclave_log.contains(&user.secret_key().to_secret_hex()));
    assert_eq!(enclave_log.matches("nostrconnect app connected").count(), 2);
}
