//! Round trips: our signer alone, and beside rust-nostr's remote signer.

use std::time::Duration;

use enclave::signer::SignerConfig;
use nostr::{Keys, PublicKey};
use nostr_connect::prelude::{
    NostrConnectKeys, NostrConnectRemoteSigner, NostrConnectRequest, NostrConnectSignerActions,
};
use verifier::rpc::admin::AdminRequest;

use crate::harness::{connected, drive_apps, local_relay, send_waiting, start_signer, Stats};

/// `clients` user keys, each with one app, each app sending `requests`.
pub(crate) async fn latency(clients: usize, requests: usize) {
    let (_relay, url) = local_relay().await;
    let (signer, _client, service) = start_signer(&url, SignerConfig::default()).await;
    let pairs: Vec<(Keys, Keys)> = (0..clients)
        .map(|_| (Keys::generate(), Keys::generate()))
        .collect();
    let sender = connected(&url, &Keys::generate()).await;
    for (user, app) in &pairs {
        grant(
            &sender,
            &url,
            &service.public_key(),
            user,
            &app.public_key(),
        )
        .await;
    }
    wait_for_keys(&signer, clients).await;
    let tasks: Vec<_> = pairs
        .into_iter()
        .map(|(user, app)| {
            let url = url.clone();
            tokio::spawn(async move {
                drive_apps(&url, user.public_key(), vec![app], requests, Duration::ZERO).await
            })
        })
        .collect();
    let mut all = Stats::default();
    for t in tasks {
        let s = t.await.unwrap();
        all.elapsed = all.elapsed.max(s.elapsed);
        all.merge(s);
    }
    println!(
        "{clients} keys × 1 app × {requests} sign_event: {}",
        all.line()
    );
}

async fn grant(
    sender: &nostr_sdk::Client,
    url: &nostr::RelayUrl,
    service: &PublicKey,
    user: &Keys,
    app: &PublicKey,
) {
    let request = AdminRequest::ConnectKey {
        keys: user.clone(),
        app: *app,
        relays: vec![url.clone()],
        policy: None,
    };
    let event = verifier::rpc::seal_request(
        user,
        service,
        verifier::event::KIND_ADMIN,
        &request.to_request(),
        verifier::rpc::cipher::Scheme::Nip44,
    )
    .unwrap();
    send_waiting(sender, url, &event).await;
}

async fn wait_for_keys(signer: &enclave::signer::Signer, n: usize) {
    for _ in 0..600 {
        if signer.store().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Subscriptions follow the import.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

struct ApproveAll;

impl NostrConnectSignerActions for ApproveAll {
    fn approve(&self, _public_key: &PublicKey, _req: &NostrConnectRequest) -> bool {
        true
    }
}

/// One user key and N apps, on our signer and on rust-nostr's
/// `NostrConnectRemoteSigner`, each on a fresh relay, in the same run.
pub(crate) async fn compare(runs: &[(usize, usize)]) {
    for &(apps, requests) in runs {
        // Ours: the key and its apps granted through the admin API.
        let (relay, url) = local_relay().await;
        // One key with more apps than the default cap of apps per key.
        let config = SignerConfig {
            limits: enclave::custody::Limits {
                max_apps_per_key: apps.max(1),
                ..Default::default()
            },
            ..Default::default()
        };
        let (signer, client, service) = start_signer(&url, config).await;
        let user = Keys::generate();
        let app_keys: Vec<Keys> = (0..apps).map(|_| Keys::generate()).collect();
        let sender = connected(&url, &Keys::generate()).await;
        for app in &app_keys {
            grant(
                &sender,
                &url,
                &service.public_key(),
                &user,
                &app.public_key(),
            )
            .await;
        }
        wait_for_keys(&signer, 1).await;
        for _ in 0..100 {
            let granted = signer
                .store()
                .get(&user.public_key())
                .map(|k| k.app_count())
                .unwrap_or(0);
            if granted >= apps {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut ours =
            drive_apps(&url, user.public_key(), app_keys, requests, Duration::ZERO).await;
        println!("enclaved   {apps:>3} apps × {requests:>3}: {}", ours.line());
        sender.shutdown().await;
        client.shutdown().await;
        drop(relay);

        // rust-nostr's remote signer, the same key pair for both roles.
        let (_relay, url) = local_relay().await;
        let user = Keys::generate();
        let remote = NostrConnectRemoteSigner::new(
            NostrConnectKeys {
                signer: user.clone(),
                user: user.clone(),
            },
            [url.clone()],
            None,
            None,
        )
        .unwrap();
        let serving = tokio::spawn(async move { remote.serve(ApproveAll).await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let app_keys: Vec<Keys> = (0..apps).map(|_| Keys::generate()).collect();
        let mut theirs =
            drive_apps(&url, user.public_key(), app_keys, requests, Duration::ZERO).await;
        println!(
            "rust-nostr {apps:>3} apps × {requests:>3}: {}",
            theirs.line()
        );
        serving.abort();
    }
}
