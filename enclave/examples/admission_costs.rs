//! What admission control costs: the proof of work an attacker pays to fill
//! each shared resource of an enclave with the default limits, and how long
//! an honest user's `verifier key` waits at each difficulty, with the
//! miner's rate measured on this machine.
//!
//! ```text
//! cargo run --release -p enclave --example admission_costs [-- --gpu-rate HASHES_PER_SEC]
//! ```
//!
//! The attacker is assumed to fill as fast as they can (no waiting for the
//! free hourly allowances to come back), and every slot costs the
//! difficulty the enclave asks when it is taken. A GPU's rate is not
//! measured here: `--gpu-rate` (default 1e9 hashes/s) is an assumption.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::cast_precision_loss)]

use std::time::Instant;

use enclave::custody::admission::{Admission, AdmissionLimits, Resource};
use enclave::custody::Limits;
use nostr::{Keys, Kind, Tag};
use verifier::rpc::pow::mine;

fn main() {
    let gpu: f64 = std::env::args()
        .skip_while(|a| a != "--gpu-rate")
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(1e9);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rate_all = rate(0);
    let rate_one = rate(1);
    let rate_nostr = nostr_rate();
    println!("miner: {rate_all:.0} hashes/s on {cores} cores, {rate_one:.0} on 1 (EventBuilder::pow, 1 core: {rate_nostr:.0})");
    println!();
    println!("| bits | hashes | wait, {cores} cores | wait, 1 core | GPU ({gpu:.0e}/s) |");
    println!("|---|---|---|---|---|");
    for bits in (16..=28).step_by(2) {
        let hashes = 2f64.powi(bits);
        println!(
            "| {bits} | {} | {} | {} | {} |",
            count(hashes),
            time(hashes / rate_all),
            time(hashes / rate_one),
            time(hashes / gpu)
        );
    }
    println!();
    let limits = Limits::default();
    println!("| to fill | slots | hashes | {cores} cores | GPU |");
    println!("|---|---|---|---|---|");
    for (name, resource, max) in [
        ("imported keys", Resource::Keys, limits.max_keys),
        ("test keys", Resource::TestKeys, limits.max_test_keys),
        ("distinct relays", Resource::Relays, limits.max_relays),
        (
            "owners' grant memory (KiB)",
            Resource::Grants,
            limits.max_grant_bytes / 1024,
        ),
    ] {
        let hashes = fill(resource, max, &limits.admission);
        println!(
            "| {name} | {max} | {} | {} | {} |",
            count(hashes),
            time(hashes / rate_all),
            time(hashes / gpu)
        );
    }
}

/// Hashes to take every one of `max` slots, one request each, as fast as
/// possible.
fn fill(resource: Resource, max: usize, limits: &AdmissionLimits) -> f64 {
    let mut admission = Admission::new(limits.clone());
    let mut hashes = 0.0;
    for used in 0..max {
        let bits = admission.required_bits(resource, 1, used, max, 0);
        hashes += 2f64.powi(i32::from(bits));
        admission.record(resource, 1, 0);
    }
    hashes
}

/// This machine's mining rate, on `threads` threads (all if 0), from 128
/// events of 16 bits (2^16 tries each, on average; ±9%).
fn rate(threads: usize) -> f64 {
    let keys = Keys::generate();
    let peer = Keys::generate().public_key();
    let started = Instant::now();
    let n = 128;
    for i in 0..n {
        // Each event its own: the same event in the same second would
        // find the same nonce again at once.
        let content = format!("{i:>400}");
        let _ = mine(
            keys.public_key(),
            Kind::from(24135),
            vec![Tag::public_key(peer)],
            &content,
            16,
            threads,
        );
    }
    f64::from(n) * 65_536.0 / started.elapsed().as_secs_f64()
}

/// nostr's own single-threaded miner, for comparison (12 bits, 128 events).
fn nostr_rate() -> f64 {
    let keys = Keys::generate();
    let started = Instant::now();
    let n = 128;
    for i in 0..n {
        let _ = nostr::EventBuilder::new(Kind::from(24135), format!("{i:>400}"))
            .pow(12)
            .sign_with_keys(&keys);
    }
    f64::from(n) * 4096.0 / started.elapsed().as_secs_f64()
}

fn count(hashes: f64) -> String {
    if hashes >= 1e12 {
        format!("{:.1}e12", hashes / 1e12)
    } else if hashes >= 1e9 {
        format!("{:.1} billion", hashes / 1e9)
    } else if hashes >= 1e6 {
        format!("{:.1} million", hashes / 1e6)
    } else {
        format!("{hashes:.0}")
    }
}

fn time(secs: f64) -> String {
    if secs >= 2.0 * 86_400.0 {
        format!("{:.1} days", secs / 86_400.0)
    } else if secs >= 2.0 * 3600.0 {
        format!("{:.1} h", secs / 3600.0)
    } else if secs >= 120.0 {
        format!("{:.1} min", secs / 60.0)
    } else if secs >= 1.0 {
        format!("{secs:.1} s")
    } else {
        format!("{:.0} ms", secs * 1000.0)
    }
}
