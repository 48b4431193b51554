//! Scoped grants through the whole stack, as the README's "Giving an AI
//! agent a scoped signer" does it: the owner mints bunker URLs limited to
//! kinds 1 and 1111 for 8 hours at the seed's rates with `verifier key
//! bunker-url`; nostr-tools' BunkerSigner and NDK each sign kind 1, get an
//! error (not a hang) for kind 0, and are rate-limited on the 6th
//! signature in 10 s; `verifier key log` and `key apps` show it all, and
//! the operator's log shows the refusals without the key.
//!
//! Needs Node and `npm ci --prefix interop`, like `interop.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use nostr::{Keys, ToBech32};
use parent::dev_stack::Stack;
use verifier::grant::wire::{AppReport, LogEntry};

mod common;
use common::{interop_dir, node, relay, stack_config, test_dir, Key, Writers};

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_gets_only_what_its_bunker_url_grants() {
    interop_dir();
    let (_relay, url, relay_addr) = relay(Writers::default()).await;
    let dir = test_dir("grants");
    let config = stack_config(dir.clone(), url.clone(), relay_addr, 3600);
    let mut stack = Stack::start(&config).await.unwrap();
    stack.wait_for_event(Duration::from_secs(60)).await.unwrap();

    let user = Keys::generate();
    let nsec = user.secret_key().to_bech32().unwrap();
    let key_file = dir.join("user.nsec");
    std::fs::write(&key_file, format!("{nsec}\n")).unwrap();
    let key = Key::new(&stack.paths, &key_file);
    assert_eq!(key.ok("import"), "key imported");
    let pubkey = user.public_key().to_hex();

    let scoped = [
        "--perms",
        "sign_event:1,sign_event:1111",
        "--ttl",
        "8h",
        "--rate",
        "5/10s,10/min,100/h",
    ];
    let mut urls = Vec::new();
    for _ in 0..2 {
        let (code, stdout, stderr) = key.run("bunker-url", &scoped);
        assert_eq!(code, Some(0), "{stderr}");
        // The URL alone on stdout, for scripts; the grant in words on stderr.
        assert!(
            stdout.starts_with("bunker://") && !stdout.contains('\n'),
            "{stdout}"
        );
        assert!(
            stderr.contains("gets: sign_event of kinds 1 and 1111")
                && stderr.contains("for 8 h from when the app connects")
                && stderr.contains("5 per 10 s, 10 per 1 min, 100 per 1 h"),
            "{stderr}"
        );
        urls.push(stdout);
    }
    // A grant the verifier cannot read is refused before anything is sent.
    let (code, _, stderr) = key.run("bunker-url", &["--perms", "sign_event"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("sign_event needs its kinds"), "{stderr}");

    for (client, url) in [("nostr-tools", &urls[0]), ("ndk", &urls[1])] {
        let out = node("scoped.mjs", &[client, url, &pubkey]).unwrap_or_else(|e| panic!("{e}"));
        assert!(out.contains(&format!("PASS {client} scoped")), "{out}");
    }

    // The owner reads what happened.
    let log = key.ok_with("log", &[]);
    for (needle, times) in [
        ("sign_event kind 1  allowed ×5", 2),
        (
            "sign_event kind 0  refused  forbidden: sign_event of kind 0 is not granted to this app",
            2,
        ),
        ("sign_event kind 1  refused  rate-limited: 5 per 10 s; retry in", 2),
    ] {
        assert_eq!(log.matches(needle).count(), times, "{needle:?} in:\n{log}");
    }
    let entries: Vec<LogEntry> = serde_json::from_str(&key.ok_with("log", &["--json"])).unwrap();
    assert_eq!(
        entries.iter().filter(|e| e.decision == "refused").count(),
        4
    );
    // Two connects and ten signatures allowed, in runs.
    let allowed: u32 = entries
        .iter()
        .filter(|e| e.decision == "allowed")
        .map(|e| e.count)
        .sum();
    assert_eq!(allowed, 12);
    let apps: Vec<AppReport> = serde_json::from_str(&key.ok_with("apps", &["--json"])).unwrap();
    assert_eq!(apps.len(), 2);
    assert!(apps.iter().all(|a| a.used == 5 && a.source == "bunker-url"));
    // The policy is a JSON object, not a string holding JSON.
    assert!(
        apps.iter().all(|a| a.policy["perms"].is_string()),
        "{apps:?}"
    );
    let words = key.ok_with("apps", &[]);
    assert!(
        words.contains("may: sign_event of kinds 1 and 1111"),
        "{words}"
    );
    assert!(
        words.contains("until "),
        "the TTL started at connect: {words}"
    );

    // The owner widens one app's grant, and connects another with a scope.
    let agent = nostr::PublicKey::from_hex(&apps[0].app)
        .unwrap()
        .to_bech32()
        .unwrap();
    let granted = key.ok_with(
        "grant",
        &[
            "--app",
            &agent,
            "--perms",
            "sign_event:1,sign_event:0",
            "--uses",
            "10",
        ],
    );
    assert!(
        granted.contains(&format!("granted to {agent}: sign_event of kinds 0 and 1"))
            && granted.contains("at most 10 uses"),
        "{granted}"
    );
    let other = Keys::generate().public_key().to_bech32().unwrap();
    let connected = key.ok_with(
        "connect",
        &["--app", &other, "--perms", "basic", "--rate", "none"],
    );
    assert!(
        connected.contains("no rate limit") && connected.contains("kinds 0, 1, 3"),
        "{connected}"
    );
    let (code, _, stderr) = key.run("grant", &["--app", &other]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("grant needs --perms"), "{stderr}");

    let log = std::fs::read_to_string(stack.enclave.log()).unwrap();
    stack.stop().await.unwrap();
    assert!(!log.contains(&nsec) && !log.contains(&user.secret_key().to_secret_hex()));
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("request refused"))
        .collect();
    assert_eq!(refusals.len(), 4, "the operator sees the refusals:\n{log}");
    assert!(refusals
        .iter()
        .all(|l| l.contains(&user.public_key().to_bech32().unwrap())));
    assert_eq!(
        refusals
            .iter()
            .filter(|l| l.contains("not-granted"))
            .count(),
        2
    );
    assert_eq!(
        refusals
            .iter()
            .filter(|l| l.contains("rate-limited"))
            .count(),
        2
    );
}
