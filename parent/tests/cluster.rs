//! `dev-stack --instances 3` as a library: three parents and three
//! enclaves of three launchers on one relay, each enclave keeping its keys
//! with the other two as custodians. Each seals its state once the others
//! announced, writes its PID and instance event where scripts look, and
//! serves an owner's import only once its state is sealed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use nostr::{Keys, ToBech32};
use parent::dev_stack::cluster::{member_dir, Cluster};

mod common;
use common::{relay, stack_config, test_dir, Key, Writers};

/// Waits until `file` contains `needle`.
async fn wait_for_log(file: &std::path::Path, needle: &str, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{needle:?} not in {} within {timeout:?}:\n{text}",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_seal_their_states_with_each_other() {
    let (_relay, url, relay_addr) = relay(Writers::default()).await;
    let dir = test_dir("cluster");
    let config = stack_config(dir.clone(), url, relay_addr, 3600);
    // One instance is no cluster: it would have no custodian.
    assert!(Cluster::start(&config, 1).await.is_err());
    let mut cluster = Cluster::start(&config, 3).await.unwrap();
    let events = cluster
        .wait_for_events(Duration::from_secs(60))
        .await
        .unwrap();
    let services: std::collections::BTreeSet<_> = events.iter().map(|e| e.pubkey).collect();
    assert_eq!(services.len(), 3);
    let launchers: std::collections::BTreeSet<_> = cluster.launchers.iter().collect();
    assert_eq!(launchers.len(), 3);
    for (i, stack) in cluster.stacks.iter().enumerate() {
        let n = i + 1;
        let here = member_dir(&dir, n);
        assert_eq!(stack.paths.event, here.join("instance-event.json"));
        let pid = std::fs::read_to_string(here.join("enclave.pid")).unwrap();
        assert_eq!(pid.trim().parse::<u32>().ok(), stack.enclave.id());
        // Each names the other two as custodians and is one of theirs.
        wait_for_log(
            stack.enclave.log(),
            "this enclave holds the state",
            Duration::from_secs(60),
        )
        .await;
        let log = std::fs::read_to_string(stack.enclave.log()).unwrap();
        for (j, launcher) in cluster.launchers.iter().enumerate() {
            let named = log.contains(&format!(
                "custodian of this launcher's enclaves launcher={}",
                launcher.to_bech32().unwrap()
            ));
            assert_eq!(named, j != i, "instance {n} and launcher {}", j + 1);
        }
    }
    // An owner imports into instance 1, which has its state.
    let user = Keys::generate();
    let key_file = dir.join("user.nsec");
    std::fs::write(&key_file, user.secret_key().to_bech32().unwrap()).unwrap();
    let key = Key::new(&cluster.stacks[0].paths, &key_file);
    assert_eq!(key.ok("import"), "key imported");
    // Nothing was restarted, and nothing logged the key.
    assert!(cluster.supervise().unwrap().is_empty());
    let nsec = user.secret_key().to_bech32().unwrap();
    let hex = user.secret_key().to_secret_hex();
    for stack in &cluster.stacks {
        let log = std::fs::read_to_string(stack.enclave.log()).unwrap();
        assert!(!log.contains(&nsec) && !log.contains(&hex));
    }
    cluster.stop().await.unwrap();
}
