//! The policy check alone: `Grant::decide` on a scoped grant with the
//! default rates (5/10s, 10/min, 100/h) and a full hour's log, and on full
//! access. See BENCHMARKS.md.

#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use verifier::grant::{Action, Grant, Perms, Policy, Rate, Rates};

fn bench(c: &mut Criterion) {
    let perms = Perms::parse("basic,sign_event:1111,sign_event:30000-39999").unwrap();
    let mut group = c.benchmark_group("grant");
    // Allowed: generous buckets that still keep a full log to search.
    let mut policy = Policy::new(perms.clone());
    policy.rates = Rates::new(vec![
        Rate {
            count: 10_000,
            window: 3600,
        },
        Rate {
            count: 10_000,
            window: 86_400,
        },
    ])
    .unwrap();
    policy.window = None;
    let mut grant = Grant::new(&policy, None, 0);
    let mut now = 1_000_000u64;
    for _ in 0..9_000 {
        now += 1;
        assert!(grant.decide(&Action::sign(1, None), now).is_allowed());
    }
    group.bench_function("decide_allowed_9000_logged", |b| {
        b.iter(|| {
            // The log is full at 10,000: some decisions are refusals; both
            // paths search the same log.
            grant.decide(&Action::sign(30_023, None), now)
        })
    });
    let mut defaults = Grant::new(&Policy::new(perms), None, 0);
    group.bench_function("decide_default_rates", |b| {
        b.iter(|| defaults.decide(&Action::sign(1, None), now))
    });
    let mut full = Grant::full();
    group.bench_function("decide_full", |b| {
        b.iter(|| full.decide(&Action::sign(1, None), now))
    });
    group.bench_function("refuse_not_granted", |b| {
        b.iter(|| defaults.decide(&Action::sign(4, None), now))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
