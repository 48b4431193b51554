//! A burst of admin imports sent at once, through the real signer, its
//! inbox and a relay: every one is answered `ok`, none shed. The replies are
//! read off the relay by a bare WebSocket client (nostr-sdk's notification
//! channel could drop some under the burst, and this checks the signer).
//! BENCHMARKS.md has the 10,000-import figure (`load imports`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{stack_on, Raw};
use enclave::custody::{AdmissionLimits, Limits};
use enclave::signer::SignerConfig;
use futures_util::{SinkExt, StreamExt};
use nostr::{JsonUtil, Keys, PublicKey, RelayMessage, Timestamp};
use tokio_tungstenite::tungstenite::Message;
use verifier::event::KIND_ADMIN;
use verifier::rpc::admin::{AdminRequest, KeptApps};
use verifier::rpc::cipher::Scheme;
use verifier::rpc::{open_response, seal_request};

/// Imports in the burst: twice what LocalRelay's per-connection channel
/// holds, so the signer must keep reading while it handles them.
const IMPORTS: usize = 2_000;
/// Longest the whole burst may take to be answered (a debug build on a
/// 2-core machine does it in a few seconds).
const DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread")]
async fn every_import_of_a_burst_is_answered() {
    let config = SignerConfig {
        limits: Limits {
            admission: AdmissionLimits::off(),
            ..Limits::default()
        },
        ..SignerConfig::default()
    };
    let stack = stack_on(parent::dev_stack::relay_builder(), config).await;

    // Every admin reply, read raw.
    let (mut reader, _) = tokio_tungstenite::connect_async(stack.url.as_str())
        .await
        .unwrap();
    let since = Timestamp::now().as_secs() - 5;
    let req = format!(
        r#"["REQ","replies",{{"kinds":[{KIND_ADMIN}],"authors":["{}"],"since":{since}}}]"#,
        stack.service.to_hex()
    );
    reader.send(Message::text(req)).await.unwrap();
    loop {
        let frame = reader.next().await.unwrap().unwrap();
        if let Ok(RelayMessage::EndOfStoredEvents(_)) =
            RelayMessage::from_json(frame.to_text().unwrap_or_default())
        {
            break;
        }
    }

    let mut owners: HashMap<PublicKey, Keys> = HashMap::new();
    let mut events = Vec::with_capacity(IMPORTS);
    for _ in 0..IMPORTS {
        let user = Keys::generate();
        let request = AdminRequest::ImportKey {
            keys: user.clone(),
            relays: vec![stack.url.clone()],
            apps: KeptApps::Keep,
        }
        .to_request();
        events.push(
            seal_request(&user, &stack.service, KIND_ADMIN, &request, Scheme::Nip44).unwrap(),
        );
        owners.insert(user.public_key(), user);
    }
    let sender = Raw::new(&stack.url).await;
    sender.send_all(events).await;

    let mut answered: HashSet<PublicKey> = HashSet::new();
    let mut errors = Vec::new();
    let read = tokio::time::timeout(DEADLINE, async {
        while answered.len() + errors.len() < IMPORTS {
            let Some(Ok(frame)) = reader.next().await else {
                break;
            };
            let Ok(RelayMessage::Event { event, .. }) =
                RelayMessage::from_json(frame.to_text().unwrap_or_default())
            else {
                continue;
            };
            let Some(owner) = event.tags.public_keys().find_map(|p| owners.get(p)) else {
                continue;
            };
            match open_response(owner, &event).map(|r| r.into_result()) {
                Ok(Ok(result)) if result == "ok" => {
                    answered.insert(owner.public_key());
                }
                other => errors.push(format!("{other:?}")),
            }
        }
    })
    .await;
    assert!(errors.is_empty(), "error replies: {errors:?}");
    assert!(
        read.is_ok(),
        "{} of {IMPORTS} imports answered within {DEADLINE:?}",
        answered.len()
    );
    assert_eq!(answered.len(), IMPORTS);
    assert_eq!(stack.signer.store().len(), IMPORTS);
}
