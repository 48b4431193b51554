//! What a custodian holds per state it keeps: the resident memory of a
//! ledger holding N states (each with its key, a release policy of three
//! maintainers and a set of three custodian launchers), measured as the
//! process's growth, and the time of a claim and a commit.
//!
//! ```text
//! cargo run --release -p enclave --example custody_costs [-- N]
//! ```

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::indexing_slicing
)]

use std::time::Instant;

use nostr::Keys;
use verifier::custodian::ledger::{Ledger, LedgerLimits, Peer, Sealed};
use verifier::event::{npub, Mode};
use verifier::release::{ReleasePolicy, ReleaseTrust};
use verifier::state::{StateIdentity, StateKey};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let launchers: Vec<Keys> = (0..100).map(|_| Keys::generate()).collect();
    let maintainers: Vec<String> = (0..3)
        .map(|_| npub(&Keys::generate().public_key()))
        .collect();
    let policy = ReleasePolicy {
        repository: "https://github.com/nostrband/noauth-enclaved".into(),
        trust: ReleaseTrust::new(&maintainers, 2, Some("1.0.0")).unwrap(),
    };
    let set: Vec<_> = (0..3).map(|_| Keys::generate().public_key()).collect();
    let per_launcher = n.div_ceil(launchers.len());
    let mut ledger = Ledger::new(
        LedgerLimits {
            max_states: n,
            per_launcher,
            ..LedgerLimits::default()
        },
        launchers.iter().map(|k| k.public_key()),
    );
    // Made before the measure: what the ledger holds is measured alone.
    let work: Vec<(Peer, StateIdentity, StateKey)> = (0..n)
        .map(|i| {
            let launcher = launchers[i % launchers.len()].public_key();
            let peer = Peer {
                service: Keys::generate().public_key(),
                launcher,
                mode: Mode::Prod,
                expires_at: u64::MAX,
            };
            let identity = StateIdentity::new(launcher, &format!("state-{i}")).unwrap();
            (peer, identity, StateKey::generate().unwrap())
        })
        .collect();
    let before = rss_kib();
    for (peer, identity, key) in &work {
        ledger
            .seal(
                peer,
                identity,
                Sealed {
                    key: key.clone(),
                    policy: policy.clone(),
                    custodians: set.clone(),
                    version: 1,
                    hash: [1; 32],
                },
                0,
            )
            .unwrap();
    }
    let grown = rss_kib().saturating_sub(before);
    let (peer, identity, key) = &work[0];
    let t = Instant::now();
    let rounds = 10_000u64;
    for v in 0..rounds {
        ledger
            .commit(peer, identity, 1, 2 + v, [2; 32], key.id(), 1)
            .unwrap();
    }
    let commit = t.elapsed() / rounds as u32;
    let successor = Peer {
        service: Keys::generate().public_key(),
        ..*peer
    };
    let t = Instant::now();
    for e in 0..rounds {
        ledger
            .claim(&successor, identity, 2 + e, u64::MAX / 2)
            .unwrap();
    }
    let claim = t.elapsed() / rounds as u32;
    println!("| states | resident memory | per state | commit | claim |");
    println!("|---|---|---|---|---|");
    println!(
        "| {n} | {:.1} MiB | {} B | {:.1} µs | {:.1} µs |",
        grown as f64 / 1024.0,
        grown * 1024 / n as u64,
        commit.as_nanos() as f64 / 1000.0,
        claim.as_nanos() as f64 / 1000.0,
    );
}
