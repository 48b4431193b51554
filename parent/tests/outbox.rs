//! Announce relays from the builder's and launcher's relay lists, read on
//! a LocalRelay standing in for the discovery relays.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use nostr::{EventBuilder, Keys, Kind, RelayUrl, Tag};
use parent::outbox::{announce_relays, OutboxConfig};

mod common;
use common::{relay, Writers};

fn url(s: &str) -> RelayUrl {
    RelayUrl::parse(s).unwrap()
}

#[tokio::test]
async fn outboxes_of_builder_and_launcher_else_the_fallback() {
    let (_relay, discovery, _) = relay(Writers::default()).await;
    let builder = Keys::generate();
    let launcher = Keys::generate();
    let list = EventBuilder::new(Kind::from(10002), "")
        .tags([
            Tag::parse(["r", "wss://builder-out.example"]).unwrap(),
            Tag::parse(["r", "wss://builder-in.example", "read"]).unwrap(),
            Tag::parse(["r", "wss://shared.example", "write"]).unwrap(),
        ])
        .sign_with_keys(&builder)
        .unwrap();
    let contacts = EventBuilder::new(
        Kind::from(3),
        r#"{"wss://shared.example":{"read":true,"write":true},"wss://launcher.example":{"write":true}}"#,
    )
    .sign_with_keys(&launcher)
    .unwrap();
    let client = nostr_sdk::Client::default();
    client.add_relay(&discovery).await.unwrap();
    client.connect().await;
    client.send_event(&list).await.unwrap();
    client.send_event(&contacts).await.unwrap();
    client.shutdown().await;

    let config = OutboxConfig {
        discovery: vec![url(&discovery)],
        fallback: vec![url("wss://fallback.example")],
        timeout: Duration::from_secs(5),
    };
    let found = announce_relays(&config, &[builder.public_key(), launcher.public_key()]).await;
    let found: Vec<&str> = found
        .iter()
        .map(RelayUrl::as_str_without_trailing_slash)
        .collect();
    assert_eq!(
        found,
        [
            "wss://builder-out.example",
            "wss://shared.example",
            "wss://launcher.example"
        ]
    );

    // Nobody with a relay list: the fallback.
    let found = announce_relays(&config, &[Keys::generate().public_key()]).await;
    assert_eq!(found, vec![url("wss://fallback.example")]);
    // No discovery relay reachable: the fallback too.
    let unreachable = OutboxConfig {
        discovery: vec![url("ws://127.0.0.1:1")],
        timeout: Duration::from_secs(1),
        ..config
    };
    let found = announce_relays(&unreachable, &[builder.public_key()]).await;
    assert_eq!(found, vec![url("wss://fallback.example")]);
}
