//! Replays every committed corpus file and every found crash through its
//! target, on stable: what the fuzzer once reached keeps being checked.
//! `fuzz/corpus/<target>/` holds the minimized corpora `scripts/fuzz.sh`
//! keeps; `fuzz/regressions/<target>/` the inputs that once crashed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn replay(target: &str, dir: &Path) -> usize {
    let run = fuzz::target(target).unwrap();
    let files = files(dir);
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target}: {} fails", file.display());
    }
    files.len()
}

#[test]
fn every_target_has_a_corpus_and_a_libfuzzer_binary() {
    for (name, _) in fuzz::TARGETS {
        assert!(
            !files(&root().join("corpus").join(name)).is_empty(),
            "{name} has no committed corpus"
        );
        let bin = root()
            .join("libfuzzer/fuzz_targets")
            .join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&bin)
            .unwrap_or_else(|_| panic!("{name} has no cargo-fuzz binary {}", bin.display()));
        assert!(
            text.contains(&format!("fuzz::{}::{name}", module_of(name))),
            "{} does not call its target",
            bin.display()
        );
    }
    // And no binary or corpus of a target that no longer exists.
    for dir in ["corpus", "regressions"] {
        for entry in std::fs::read_dir(root().join(dir)).into_iter().flatten() {
            let entry = entry.unwrap();
            if !entry.path().is_dir() {
                continue;
            }
            let name = entry.file_name().into_string().unwrap();
            assert!(
                fuzz::target(&name).is_some(),
                "{dir}/{name} is of no target"
            );
        }
    }
}

fn module_of(name: &str) -> &'static str {
    match name {
        "attestation_document"
        | "attestation_payload"
        | "certificate_bundle"
        | "instance_event"
        | "signature_events"
        | "metadata_request"
        | "metadata_reply" => "formats",
        "perms" | "policy" | "nsec_app_payload" => "grants",
        "signer_sequence" => "signer",
        "release_signature" | "release_policy" | "announcement_event" => "releases",
        "state_chunk" => "state",
        "custody_request" => "custody",
        _ => "rpc",
    }
}

#[test]
fn corpora_replay_without_a_failure() {
    let mut total = 0;
    for (name, _) in fuzz::TARGETS {
        total += replay(name, &root().join("corpus").join(name));
    }
    assert!(total > 0);
}

#[test]
fn found_crashes_stay_fixed() {
    for (name, _) in fuzz::TARGETS {
        replay(name, &root().join("regressions").join(name));
    }
}

/// The signer seeds get past signatures, decryption and the key checks:
/// an owner's import and an app's signature are answered with results.
#[test]
fn signer_seeds_reach_the_handler() {
    let first = "req\t0\tadmin\t44\tconnect_key\t$sk0\t$pk2\t$relay\n\
                 req\t2\t0\t44\tconnect\t$pk0\n\
                 req\t2\t0\t44\tsign_event\t{\"kind\":1,\"content\":\"x\",\"tags\":[],\"created_at\":$now}\n\
                 req\t5\tadmin\t44\tping\n\
                 req\t0\t0\t44\tping";
    let reached = fuzz::signer::run_sequence(first.as_bytes());
    assert_eq!(reached.handled, 5);
    assert_eq!(reached.keys, 1);
    // connect_key, connect and sign_event succeed; the service key's own
    // request and the held key's request to itself get no reply.
    assert_eq!((reached.replies, reached.ok_replies), (3, 3), "{reached:?}");
}
