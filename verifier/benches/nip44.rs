//! NIP-44 v2 as the signer does it (`verifier::rpc::nip44`) beside
//! rust-nostr's (with the same base64 step), for a reply-sized and a
//! large message.
//! Run: `cargo bench -p verifier --bench nip44`. Figures: BENCHMARKS.md.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use nostr::nips::nip44::v2 as theirs;
use nostr::Keys;
use verifier::rpc::nip44::{self, ConversationKey};

fn nip44_benches(c: &mut Criterion) {
    let (a, b) = (Keys::generate(), Keys::generate());
    let ours = ConversationKey::derive(a.secret_key(), &b.public_key()).unwrap();
    let their_key = theirs::ConversationKey::derive(a.secret_key(), &b.public_key()).unwrap();
    assert_eq!(ours.as_bytes(), their_key.as_bytes());
    c.bench_function("nip44/conversation_key (ECDH + HKDF)", |bench| {
        bench.iter(|| ConversationKey::derive(a.secret_key(), black_box(&b.public_key())))
    });
    // 1 KiB: about a signed note in a reply. 60 KiB: near the NIP's limit
    // and within what rust-nostr encrypts.
    for len in [1024, 60 * 1024] {
        let text = vec![b'x'; len];
        let payload = nip44::encrypt(&ours, &text).unwrap();
        let mut group = c.benchmark_group(format!("nip44/{len} bytes"));
        group.bench_function("encrypt (ours)", |bench| {
            bench.iter(|| nip44::encrypt(&ours, black_box(&text)).unwrap())
        });
        group.bench_function("encrypt (rust-nostr)", |bench| {
            bench.iter(|| {
                STANDARD.encode(theirs::encrypt_to_bytes(&their_key, black_box(&text)).unwrap())
            })
        });
        group.bench_function("decrypt (ours)", |bench| {
            bench.iter(|| nip44::decrypt(&ours, black_box(&payload)).unwrap())
        });
        group.bench_function("decrypt (rust-nostr)", |bench| {
            bench.iter(|| {
                let raw = STANDARD.decode(black_box(&payload)).unwrap();
                theirs::decrypt_to_bytes(&their_key, &raw).unwrap()
            })
        });
        // What the isolation rule adds to every decryption an app asks
        // for: no run of 16 characters of the key in the plaintext.
        let plaintext = String::from_utf8(text.clone()).unwrap();
        group.bench_function("key material check", |bench| {
            bench.iter(|| {
                verifier::rpc::isolation::check_plaintext(a.secret_key(), black_box(&plaintext))
            })
        });
        group.finish();
    }
}

criterion_group!(benches, nip44_benches);
criterion_main!(benches);
