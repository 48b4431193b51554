use super::*;
use verifier::state::{SealedSnapshot, StateKey};

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "enclaved-state-store-{}",
            nostr::Keys::generate().public_key().to_hex()
        ));
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn identity(name: &str) -> StateIdentity {
    StateIdentity::new(nostr::Keys::generate().public_key(), name).unwrap()
}

fn snapshot(key: &StateKey, id: &StateIdentity, version: u64, size: usize) -> SealedSnapshot {
    SealedSnapshot::seal(key, id, 1, version, [0; 32], &vec![version as u8; size]).unwrap()
}

fn put_all(store: &StateStore, s: &SealedSnapshot) {
    for chunk in &s.chunks {
        store.put(chunk).unwrap();
    }
}

fn versions(store: &StateStore, id: &StateIdentity) -> Vec<(u64, u32, u32)> {
    store
        .list(id)
        .unwrap()
        .iter()
        .map(|s| (s.version, s.count, s.present))
        .collect()
}

#[test]
fn chunks_come_back_as_stored_and_nothing_half_written_stays() {
    let tmp = TempDir::new();
    let store = StateStore::open(&tmp.0, StoreLimits::default()).unwrap();
    let key = StateKey::generate().unwrap();
    let id = identity("main");
    let s = snapshot(&key, &id, 1, 600 * 1024);
    put_all(&store, &s);
    let back: Vec<SealedChunk> = (0..s.reference.count)
        .map(|i| SealedChunk::parse(store.get(&id, 1, 1, i).unwrap().unwrap()).unwrap())
        .collect();
    assert_eq!(
        s.reference.open(&key, &back).unwrap().as_slice(),
        &vec![1u8; 600 * 1024][..]
    );
    assert_eq!(versions(&store, &id), vec![(1, 2, 2)]);
    assert_eq!(store.get(&id, 1, 2, 0).unwrap(), None);
    assert_eq!(store.get(&id, 1, 1, 2).unwrap(), None);
    assert_eq!(store.get(&identity("main"), 1, 1, 0).unwrap(), None);
    let folder = tmp.0.join(id.folder());
    for entry in fs::read_dir(folder.read_dir().unwrap().next().unwrap().unwrap().path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(name.ends_with(".chunk"), "{name} left behind");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&tmp.0).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the state folder is open to others");
    }
}

#[test]
fn old_snapshots_go_and_the_newest_complete_ones_stay() {
    let tmp = TempDir::new();
    let limits = StoreLimits {
        keep: 2,
        in_flight: 1,
        max_states: 4,
    };
    let store = StateStore::open(&tmp.0, limits).unwrap();
    let key = StateKey::generate().unwrap();
    let id = identity("main");
    for v in 1..=4 {
        put_all(&store, &snapshot(&key, &id, v, 10));
    }
    assert_eq!(versions(&store, &id), vec![(4, 1, 1), (3, 1, 1)]);
    // A newer snapshot half written stays beside the complete ones; an
    // older one half written (a stale writer) goes at once.
    let big = snapshot(&key, &id, 6, 600 * 1024);
    store.put(&big.chunks[0]).unwrap();
    assert_eq!(versions(&store, &id), vec![(6, 2, 1), (4, 1, 1), (3, 1, 1)]);
    let stale = snapshot(&key, &id, 2, 600 * 1024);
    store.put(&stale.chunks[0]).unwrap();
    assert_eq!(versions(&store, &id), vec![(6, 2, 1), (4, 1, 1), (3, 1, 1)]);
    // A second newer one in flight pushes out the first (in_flight = 1).
    let bigger = snapshot(&key, &id, 7, 600 * 1024);
    store.put(&bigger.chunks[1]).unwrap();
    assert_eq!(versions(&store, &id), vec![(7, 2, 1), (4, 1, 1), (3, 1, 1)]);
    store.put(&bigger.chunks[0]).unwrap();
    assert_eq!(versions(&store, &id), vec![(7, 2, 2), (4, 1, 1)]);
}

#[test]
fn the_number_of_states_is_bounded_and_strange_files_are_ignored() {
    let tmp = TempDir::new();
    let limits = StoreLimits {
        max_states: 2,
        ..StoreLimits::default()
    };
    let store = StateStore::open(&tmp.0, limits).unwrap();
    let key = StateKey::generate().unwrap();
    let (a, b, c) = (identity("a"), identity("b"), identity("c"));
    put_all(&store, &snapshot(&key, &a, 1, 1));
    put_all(&store, &snapshot(&key, &b, 1, 1));
    let err = store.put(&snapshot(&key, &c, 1, 1).chunks[0]).unwrap_err();
    assert!(err.contains("at most 2 states"), "{err}");
    put_all(&store, &snapshot(&key, &a, 2, 1));

    // Folders and files the store did not write are not snapshots.
    let state = tmp.0.join(a.folder());
    fs::create_dir_all(state.join("notes")).unwrap();
    fs::create_dir_all(state.join("1-2-3")).unwrap();
    let snap = state.join(
        SnapshotDir {
            epoch: 1,
            version: 2,
            count: 1,
        }
        .name(),
    );
    fs::write(snap.join("0000000000.tmp"), b"half").unwrap();
    fs::write(snap.join("0000000009.chunk"), b"out of range").unwrap();
    assert_eq!(versions(&store, &a), vec![(2, 1, 1), (1, 1, 1)]);

    // A chunk file grown past a chunk's size is refused, not read.
    let file = snap.join("0000000000.chunk");
    fs::write(&file, vec![0; MAX_SEALED_CHUNK + 1]).unwrap();
    assert!(store.get(&a, 1, 2, 0).is_err());
}

#[test]
fn the_pinned_snapshot_outlives_newer_ones_and_chunks_are_written_once() {
    let tmp = TempDir::new();
    let limits = StoreLimits {
        keep: 2,
        in_flight: 1,
        max_states: 4,
    };
    let store = StateStore::open(&tmp.0, limits).unwrap();
    let key = StateKey::generate().unwrap();
    let id = identity("main");
    let committed = snapshot(&key, &id, 1, 10);
    put_all(&store, &committed);
    assert!(store.pin(&id, 1, 2).is_err(), "not kept");
    store.pin(&id, 1, 1).unwrap();
    // Versions that never reach a quorum pile up: the committed one stays.
    for v in 2..=6 {
        put_all(&store, &snapshot(&key, &id, v, 10));
    }
    assert_eq!(versions(&store, &id), vec![(6, 1, 1), (5, 1, 1), (1, 1, 1)]);
    assert!(store.get(&id, 1, 1, 0).unwrap().is_some());
    // Pinning another releases the first to pruning (the pinned one is
    // kept beside the newest two, not among them).
    store.pin(&id, 1, 6).unwrap();
    put_all(&store, &snapshot(&key, &id, 7, 10));
    assert_eq!(versions(&store, &id), vec![(7, 1, 1), (6, 1, 1), (5, 1, 1)]);
    // A second sealing of a kept version is refused; the same bytes again
    // are fine (a retry).
    let again = snapshot(&key, &id, 7, 10);
    let err = store.put(&again.chunks[0]).unwrap_err();
    assert!(err.contains("written once"), "{err}");
    let same = SealedChunk::parse(store.get(&id, 1, 7, 0).unwrap().unwrap()).unwrap();
    store.put(&same).unwrap();
    // An incomplete snapshot cannot be pinned.
    let big = snapshot(&key, &id, 8, 600 * 1024);
    store.put(&big.chunks[0]).unwrap();
    assert!(store.pin(&id, 1, 8).unwrap_err().contains("not complete"));
}
