//! The whole stack as separate processes (`parent run` on TCP, `enclave run
//! --attester dev`) on a LocalRelay that records who connects: the enclave
//! announces, re-announces on schedule, only ever through the proxy, and
//! `verifier check` and `verifier discover` accept what it publishes.
//!
//! Needs the `enclave` and `verifier` binaries next to `parent`, as
//! `cargo test --workspace --all-targets` (the README's command) builds them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nostr::{Event, EventBuilder, Filter, Keys, Kind, Tag};
use parent::dev_stack::Stack;

mod common;
use common::{bin_dir, relay, stack_config, test_dir, verifier, Writers};

async fn instance_events(url: &str, author: nostr::PublicKey) -> Vec<Event> {
    let client = nostr_sdk::Client::default();
    client.add_relay(url).await.unwrap();
    client.connect().await;
    let events = client
        .fetch_events(
            Filter::new().kind(Kind::from_u16(63793)).author(author),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    client.shutdown().await;
    events.into_iter().collect()
}

/// `from=IP:PORT` of every connection the proxy made, from its log.
fn proxy_sources(log: &Path) -> BTreeSet<SocketAddr> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("socks: connected"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("from=")))
        .map(|a| a.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn announces_through_the_proxy_on_schedule_and_verifies() {
    let writers = Writers::default();
    let (_relay, url, relay_addr) = relay(writers.clone()).await;
    let config = stack_config(test_dir("announce"), url.clone(), relay_addr, 2);
    let mut stack = Stack::start(&config).await.unwrap();
    let first = stack.wait_for_event(Duration::from_secs(60)).await.unwrap();
    let p = stack.paths.clone();
    let s = |p: &Path| p.display().to_string();
    let out = verifier(&[
        "check",
        &s(&p.event),
        "--root",
        &s(&p.dev_root),
        "--pcrs",
        &s(&p.pcrs),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Without the dev root the same event is refused: nothing trusts it by default.
    let out = verifier(&["check", &s(&p.event)]);
    assert_eq!(out.status.code(), Some(1));

    // Re-announced on schedule: several events, each with a fresh attestation.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events = instance_events(&url, first.pubkey).await;
        if events.len() >= 3 || tokio::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(events.len() >= 3, "only {} announcements", events.len());
    let contents: BTreeSet<&str> = events.iter().map(|e| e.content.as_str()).collect();
    assert_eq!(contents.len(), events.len(), "attestations must be fresh");

    // Every write reached the relay from a connection the proxy opened.
    let log = stack.parent.log().to_owned();
    let enclave_log = stack.enclave.log().to_owned();
    stack.stop().await.unwrap();
    let sources = proxy_sources(&log);
    let written: Vec<SocketAddr> = writers.0.lock().unwrap().clone();
    assert!(written.len() >= 3);
    for addr in &written {
        assert!(
            sources.contains(addr),
            "{addr} did not come through the proxy ({sources:?})"
        );
    }
    let logs = std::fs::read_to_string(&enclave_log).unwrap();
    assert!(!logs.contains("nsec1"), "a secret key in the enclave log");
}

#[tokio::test(flavor = "multi_thread")]
async fn discover_finds_the_instance_and_lists_a_planted_forgery() {
    let (_relay, url, relay_addr) = relay(Writers::default()).await;
    let config = stack_config(test_dir("discover"), url.clone(), relay_addr, 3600);
    let mut stack = Stack::start(&config).await.unwrap();
    let real = stack.wait_for_event(Duration::from_secs(60)).await.unwrap();
    // A forgery: the real event's tags and attestation, signed by another key.
    let thief = Keys::generate();
    let forged = EventBuilder::new(real.kind, real.content.clone())
        .tags(
            real.tags
                .iter()
                .map(|t| Tag::parse(t.as_slice().to_vec()).unwrap()),
        )
        .allow_self_tagging()
        .sign_with_keys(&thief)
        .unwrap();
    let client = nostr_sdk::Client::new(thief);
    client.add_relay(&url).await.unwrap();
    client.connect().await;
    client.send_event(&forged).await.unwrap();
    client.shutdown().await;

    let root = stack.paths.dev_root.display().to_string();
    let out = verifier(&["discover", "--relay", &url, "--root", &root, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let instances = json["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0]["service"], verifier::event::npub(&real.pubkey));
    assert_eq!(
        instances[0]["builder"],
        verifier::event::npub(&stack.signatures.build.pubkey)
    );
    let invalid = json["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert_eq!(invalid[0]["event_id"], forged.id.to_hex());
    assert_eq!(invalid[0]["check"], "public_key");
    // Filtering on another builder leaves no instance: exit 1.
    let stranger = verifier::event::npub(&Keys::generate().public_key());
    let out = verifier(&[
        "discover",
        "--relay",
        &url,
        "--root",
        &root,
        "--builder",
        &stranger,
    ]);
    assert_eq!(out.status.code(), Some(1));
    stack.stop().await.unwrap();
}

/// Runs `dev-stack` with `RUST_LOG=rust_log` until it is ready, lets a
/// client connect to its relay and leave without a closing handshake, stops
/// it with Ctrl-C, and returns what it printed and logged.
fn dev_stack_run(dir: &Path, rust_log: &str, extra: &[&str]) -> (String, String) {
    use std::io::{BufRead, BufReader};
    bin_dir();
    std::fs::create_dir_all(dir).unwrap();
    let log = dir.join("dev-stack.stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dev-stack"))
        .args(["--quiet", "--dir"])
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", rust_log)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut printed = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if line.contains("Stop with Ctrl-C") {
            break;
        }
    }
    assert!(
        dir.join("instance-event.json").is_file(),
        "dev-stack was not ready; it printed:\n{printed}\nand logged:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let relay = printed
        .split_whitespace()
        .find(|w| w.starts_with("ws://127.0.0.1:"))
        .unwrap()
        .to_owned();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let (ws, _) = tokio_tungstenite::connect_async(relay.as_str())
            .await
            .unwrap();
        drop(ws);
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    (printed, std::fs::read_to_string(&log).unwrap())
}

/// The relay URL and the `--release-signer` npubs `dev-stack` printed.
fn identity_printed(printed: &str) -> (String, Vec<String>) {
    let words: Vec<&str> = printed.split_whitespace().collect();
    let relay = words
        .iter()
        .find(|w| w.starts_with("ws://127.0.0.1:"))
        .unwrap()
        .to_string();
    let signers = words
        .windows(2)
        .filter(|w| w[0] == "--release-signer")
        .map(|w| w[1].to_owned())
        .collect();
    (relay, signers)
}

#[test]
fn dev_stack_runs_and_stops_cleanly_on_ctrl_c() {
    let dir = test_dir("dev-stack");
    let (printed, logged) = dev_stack_run(&dir, "info", &[]);
    for what in ["relay", "instance event", "dev root", "verifier check"] {
        assert!(printed.contains(what), "{what:?} not in {printed}");
    }
    // A client that leaves without a closing handshake is not an error.
    assert!(!logged.contains("without closing handshake"), "{logged}");
    assert!(!logged.contains("ERROR"), "{logged}");
    // Started again in the same folder: the same relay port, maintainers
    // and dev root. The disconnect is still logged for whoever asks for
    // debug logs.
    let root = std::fs::read(dir.join("dev-root.der")).unwrap();
    let (again, logged) = dev_stack_run(&dir, "info,nostr_relay_builder=debug", &[]);
    assert!(logged.contains("without closing handshake"), "{logged}");
    assert_eq!(identity_printed(&again), identity_printed(&printed));
    assert_eq!(std::fs::read(dir.join("dev-root.der")).unwrap(), root);
    // --fresh starts over.
    let (fresh, _) = dev_stack_run(&dir, "info", &["--fresh"]);
    assert_ne!(identity_printed(&fresh).1, identity_printed(&printed).1);
    assert_ne!(std::fs::read(dir.join("dev-root.der")).unwrap(), root);
}

/// `verifier key` against a stack that is gone: a relay that refuses the
/// connection is named at once, and a request the relay took but nobody
/// answers is "no reply", both within `--timeout` (bounded here loosely:
/// this is about hanging, not speed).
#[tokio::test(flavor = "multi_thread")]
async fn key_names_a_refused_relay_and_keeps_to_its_timeout() {
    let (relay, url, relay_addr) = relay(Writers::default()).await;
    let dir = test_dir("key-timeout");
    let config = stack_config(dir.clone(), url.clone(), relay_addr, 3600);
    let mut stack = Stack::start(&config).await.unwrap();
    stack.wait_for_event(Duration::from_secs(60)).await.unwrap();
    let p = stack.paths.clone();
    stack.stop().await.unwrap();
    let key_file = dir.join("user.key");
    std::fs::write(&key_file, "11".repeat(32)).unwrap();
    let s = |p: &Path| p.display().to_string();
    let (event, root, pcrs, key) = (s(&p.event), s(&p.dev_root), s(&p.pcrs), s(&key_file));
    let status = || {
        let started = std::time::Instant::now();
        let out = verifier(&[
            "key",
            "status",
            "--instance",
            &event,
            "--root",
            &root,
            "--pcrs",
            &pcrs,
            "--key-file",
            &key,
            "--timeout",
            "2",
        ]);
        (out, started.elapsed())
    };
    // The relay is up, the enclave is not: the request is delivered and
    // nobody answers.
    let (out, took) = status();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no reply from the enclave within --timeout 2s")
            && stderr.contains("took the request"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(8), "took {took:?}");
    // The relay is gone too: said at once, naming it.
    relay.stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (out, took) = status();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "could not connect to {}",
            url.trim_end_matches('/')
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("no reply"), "{stderr}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    // discover names it too, and says that no relay could be read.
    let out = verifier(&[
        "discover",
        "--relay",
        &url,
        "--root",
        &root,
        "--timeout",
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("could not connect") && stderr.contains("no relay could be read"),
        "{stderr}"
    );
}

/// A stack started again in the same folder keeps its builder, launcher,
/// maintainers and dev CA: a saved `pcrs.json` and instance event still
/// verify. Without the kept identities (`dev-stack --fresh`), the image is
/// the same but PCR8 is not, and the hint says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_stack_keeps_what_users_saved_valid() {
    let (_relay, url, relay_addr) = relay(Writers::default()).await;
    let dir = test_dir("restart");
    let config = stack_config(dir.clone(), url, relay_addr, 3600);
    let mut stack = Stack::start(&config).await.unwrap();
    stack.wait_for_event(Duration::from_secs(60)).await.unwrap();
    let saved = dir.join("saved");
    std::fs::create_dir_all(&saved).unwrap();
    for file in ["pcrs.json", "instance-event.json", "dev-root.der"] {
        std::fs::copy(dir.join(file), saved.join(file)).unwrap();
    }
    let first_builder = stack.signatures.build.pubkey;
    let first_maintainers = stack.maintainers.npubs();
    stack.stop().await.unwrap();

    let mut stack = Stack::start(&config).await.unwrap();
    stack.wait_for_event(Duration::from_secs(60)).await.unwrap();
    assert_eq!(stack.signatures.build.pubkey, first_builder);
    assert_eq!(stack.maintainers.npubs(), first_maintainers);
    assert_eq!(
        std::fs::read(dir.join("dev-root.der")).unwrap(),
        std::fs::read(saved.join("dev-root.der")).unwrap()
    );
    let s = |p: &Path| p.display().to_string();
    let (root, pcrs) = (s(&dir.join("dev-root.der")), s(&saved.join("pcrs.json")));
    for event in [
        saved.join("instance-event.json"),
        dir.join("instance-event.json"),
    ] {
        let out = verifier(&["check", &s(&event), "--root", &root, "--pcrs", &pcrs]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // `key` on a saved dev event without --root: refused, with the hint
    // `check` gives.
    let key_file = dir.join("user.key");
    std::fs::write(&key_file, "11".repeat(32)).unwrap();
    let out = verifier(&[
        "key",
        "status",
        "--instance",
        &s(&saved.join("instance-event.json")),
        "--pcrs",
        &pcrs,
        "--key-file",
        &s(&key_file),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("need --root"), "{stderr}");
    stack.stop().await.unwrap();

    // Started over: same image, another builder certificate.
    std::fs::remove_dir_all(parent::dev_stack::identity::dir_of(&dir)).unwrap();
    let mut stack = Stack::start(&config).await.unwrap();
    stack.wait_for_event(Duration::from_secs(60)).await.unwrap();
    assert_ne!(stack.signatures.build.pubkey, first_builder);
    let event = s(&dir.join("instance-event.json"));
    let root = s(&dir.join("dev-root.der"));
    let out = verifier(&["check", &event, "--root", &root, "--pcrs", &pcrs]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("(expected_pcrs)") && stdout.contains("another builder certificate (PCR8)"),
        "{stdout}"
    );
    stack.stop().await.unwrap();
}
