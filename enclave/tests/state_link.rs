//! Sealed state through a real parent: the enclave's metadata client
//! stores snapshots with `parent`'s metadata server and state store over
//! TCP on 127.0.0.1, reads them back and opens only the one its reference
//! names. The parent here plays every trick its disk allows.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::PathBuf;

use common::parent_store::{client, parent};
use enclave::metadata::MetadataError;
use verifier::state::{SealedSnapshot, StateIdentity, StateKey, CHUNK_PLAINTEXT};

fn identity() -> StateIdentity {
    StateIdentity::new(nostr::Keys::generate().public_key(), "main").unwrap()
}

fn state(version: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u64 ^ version) as u8).collect()
}

#[tokio::test]
async fn a_snapshot_stored_with_the_parent_comes_back_whole() {
    let p = parent("whole", true).await;
    let key = StateKey::generate().unwrap();
    let id = identity();
    let plain = state(1, CHUNK_PLAINTEXT * 2 + 100);
    let sealed = SealedSnapshot::seal(&key, &id, 1, 1, [0; 32], &plain).unwrap();
    let mut c = client(&p).await;
    c.put_snapshot(&sealed).await.unwrap();
    c.pin_snapshot(&sealed.reference).await.unwrap();
    let listed = c.list_snapshots(&id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].version, listed[0].count, listed[0].present),
        (1, 3, 3)
    );
    // A new connection, as a restarted enclave would open.
    c.close().await;
    let mut c = client(&p).await;
    let chunks = c.get_snapshot(&sealed.reference).await.unwrap();
    assert_eq!(
        sealed.reference.open(&key, &chunks).unwrap().as_slice(),
        &plain[..]
    );
    // Nothing of the plaintext is on the parent's disk.
    for entry in walk(&p.dir) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes
                .windows(64)
                .any(|w| plain.windows(64).take(1).any(|p| p == w)),
            "{} holds plaintext",
            entry.display()
        );
    }
}

#[tokio::test]
async fn an_older_snapshot_under_the_current_name_is_refused() {
    let p = parent("older", true).await;
    let key = StateKey::generate().unwrap();
    let id = identity();
    let v1 = SealedSnapshot::seal(&key, &id, 1, 1, [0; 32], &state(1, 100)).unwrap();
    let v2 = SealedSnapshot::seal(&key, &id, 1, 2, [0; 32], &state(2, 100)).unwrap();
    let mut c = client(&p).await;
    c.put_snapshot(&v1).await.unwrap();
    c.put_snapshot(&v2).await.unwrap();
    // The parent puts version 1's chunk where version 2's was.
    let snapshot_dir = |v: u64| {
        walk(&p.dir)
            .into_iter()
            .find(|f| {
                f.parent()
                    .and_then(|d| d.file_name())
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.split('-').nth(1) == Some(&format!("{v:020}")))
            })
            .unwrap()
    };
    std::fs::copy(snapshot_dir(1), snapshot_dir(2)).unwrap();
    let chunks = c.get_snapshot(&v2.reference).await.unwrap();
    let err = v2.reference.open(&key, &chunks).unwrap_err();
    assert!(err.to_string().contains("snapshot hash"), "{err}");
    // It deletes version 2: the enclave is told, and does not fall back.
    std::fs::remove_file(snapshot_dir(2)).unwrap();
    let err = c.get_snapshot(&v2.reference).await.unwrap_err();
    assert!(
        matches!(&err, MetadataError::Refused(e) if e.contains("no chunk 0 of snapshot 1.2")),
        "{err}"
    );
}

#[tokio::test]
async fn a_parent_without_a_state_dir_says_so() {
    let p = parent("none", false).await;
    let key = StateKey::generate().unwrap();
    let sealed = SealedSnapshot::seal(&key, &identity(), 1, 1, [0; 32], b"x").unwrap();
    let mut c = client(&p).await;
    let err = c.put_snapshot(&sealed).await.unwrap_err();
    assert!(
        matches!(&err, MetadataError::Refused(e) if e.contains("--state-dir")),
        "{err}"
    );
    // The connection still answers afterwards, with the same reason.
    let err = c.list_snapshots(&identity()).await.unwrap_err();
    assert!(
        matches!(&err, MetadataError::Refused(e) if e.contains("--state-dir")),
        "{err}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
