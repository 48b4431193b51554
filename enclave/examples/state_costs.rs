//! What key continuity costs, measured: for a store of N keys, the size of
//! its sealed snapshot per key, and the time to write one (record, CBOR,
//! seal) and to restore from one (open, CBOR, rebuild the store). Half the
//! keys have an app with a scoped grant that has been used, a quarter a
//! pending bunker secret; every key has its owner's decision log entries.
//!
//! ```text
//! cargo run --release -p enclave --example state_costs [-- N...]
//! ```

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::indexing_slicing
)]

use std::time::Instant;

use enclave::custody::{KeyStore, Limits};
use nostr::{Keys, RelayUrl};
use verifier::grant::wire::source;
use verifier::grant::{Action, Method, Policy};
use verifier::rpc::admin::KeptApps;
use verifier::state::{SealedSnapshot, StateIdentity, StateKey, StateRecord};

const NOW: u64 = 1_800_000_000;

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000]
    } else {
        sizes
    };
    println!("| keys | snapshot | per key | chunks | write: record + CBOR + seal | restore: open + CBOR + rebuild |");
    println!("|---|---|---|---|---|---|");
    for n in sizes {
        let store = store(n);
        let key = StateKey::generate().unwrap();
        let id = StateIdentity::new(Keys::generate().public_key(), "main").unwrap();

        let t = Instant::now();
        let record = store.to_record(NOW);
        let t_record = t.elapsed();
        let t = Instant::now();
        let cbor = record.to_cbor().unwrap();
        let t_cbor = t.elapsed();
        let t = Instant::now();
        let sealed = SealedSnapshot::seal(&key, &id, 1, 1, [0; 32], &cbor).unwrap();
        let t_seal = t.elapsed();
        drop(record);
        let size: usize = sealed.chunks.iter().map(|c| c.bytes.len()).sum();

        let t = Instant::now();
        let plain = sealed.reference.open(&key, &sealed.chunks).unwrap();
        let t_open = t.elapsed();
        let t = Instant::now();
        let record = StateRecord::from_cbor(&plain).unwrap();
        let t_decode = t.elapsed();
        let t = Instant::now();
        let restored = KeyStore::from_record(limits(n), Vec::new(), None, &record).unwrap();
        let t_rebuild = t.elapsed();
        assert_eq!(restored.len(), store.len());

        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {n} | {:.1} MiB | {} B | {} | {:.0} ms ({:.0} + {:.0} + {:.0}) | {:.0} ms ({:.0} + {:.0} + {:.0}) |",
            size as f64 / (1 << 20) as f64,
            size / n,
            sealed.chunks.len(),
            ms(t_record + t_cbor + t_seal),
            ms(t_record),
            ms(t_cbor),
            ms(t_seal),
            ms(t_open + t_decode + t_rebuild),
            ms(t_open),
            ms(t_decode),
            ms(t_rebuild),
        );
    }
}

fn limits(n: usize) -> Limits {
    Limits {
        max_keys: n,
        max_grant_bytes: 1 << 30,
        admission: enclave::custody::AdmissionLimits::off(),
        ..Limits::default()
    }
}

fn store(n: usize) -> KeyStore {
    let mut store = KeyStore::new(limits(n));
    let relays: Vec<RelayUrl> = (0..8)
        .map(|i| RelayUrl::parse(&format!("wss://relay{i}.example")).unwrap())
        .collect();
    let policy =
        Policy::from_json(r#"{"perms":"sign_event:1,sign_event:7,nip44_encrypt","uses":1000}"#)
            .unwrap();
    let sign = Action {
        kind: Some(1),
        ..Action::method(Method::SignEvent)
    };
    for i in 0..n {
        let keys = Keys::generate();
        let user = keys.public_key();
        let relay = relays[i % relays.len()].clone();
        store
            .import(keys, vec![relay], KeptApps::Keep, 0, NOW)
            .unwrap();
        if i % 2 == 0 {
            let app = Keys::generate().public_key();
            store
                .grant(&user, app, &policy, source::GRANT, 0, NOW)
                .unwrap();
            for t in 0..3 {
                store.decide(&user, &app, &sign, NOW + t);
            }
        }
        if i % 4 == 0 {
            store.new_secret(&user, Policy::full(), 0, NOW).unwrap();
        }
    }
    store
}
