#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use proptest::prelude::*;

use super::*;

#[test]
fn parses_and_prints() {
    let rates = Rates::parse("5/10s, 10/min,100/h").unwrap();
    assert_eq!(rates, Rates::default_scoped());
    assert_eq!(rates.to_string(), "5/10s,10/min,100/h");
    assert_eq!(rates.describe(), "5 per 10 s, 10 per 1 min, 100 per 1 h");
    assert_eq!(Rates::parse("none").unwrap(), Rates::none());
    assert_eq!(Rates::none().to_string(), "none");
    assert_eq!(
        Rates::parse("3/2min,1/d").unwrap().to_string(),
        "3/2min,1/d"
    );
    for bad in [
        "", "5", "0/10s", "5/0s", "5/10w", "x/10s", "5/10s,", "10001/h", "-1/h",
    ] {
        assert!(Rates::parse(bad).is_err(), "{bad}");
    }
    let many = ["1/s"; MAX_BUCKETS + 1].join(",");
    assert!(Rates::parse(&many).is_err());
}

#[test]
fn the_sixth_request_in_ten_seconds_waits() {
    let rates = Rates::default_scoped();
    let mut log = RateLog::default();
    for t in 0..5 {
        log.admit(&rates, 100 + t).unwrap();
    }
    let limited = log.admit(&rates, 104).unwrap_err();
    assert_eq!(
        limited.rate,
        Rate {
            count: 5,
            window: 10
        }
    );
    assert_eq!(limited.retry_in, 6);
    log.admit(&rates, 110).unwrap();
}

/// The reference: a request at `t` is allowed if, for every bucket, fewer
/// than N of the allowed requests before it are inside the window.
fn reference(rates: &[Rate], times: &[u64]) -> Vec<bool> {
    let mut allowed: Vec<u64> = Vec::new();
    times
        .iter()
        .map(|&t| {
            let ok = rates.iter().all(|r| {
                allowed
                    .iter()
                    .filter(|&&a| a + u64::from(r.window) > t)
                    .count()
                    < r.count as usize
            });
            if ok {
                allowed.push(t);
            }
            ok
        })
        .collect()
}

fn rate() -> impl Strategy<Value = Rate> {
    (1u32..8, 1u32..120).prop_map(|(count, window)| Rate { count, window })
}

proptest! {
    #[test]
    fn buckets_match_a_reference_count(
        rates in proptest::collection::vec(rate(), 1..4),
        gaps in proptest::collection::vec(0u64..20, 1..200),
    ) {
        let rates = Rates::new(rates).unwrap();
        let mut now = 1_000;
        let times: Vec<u64> = gaps.iter().map(|g| { now += g; now }).collect();
        let expected = reference(rates.buckets(), &times);
        let mut log = RateLog::default();
        for (t, want) in times.iter().zip(expected) {
            let got = log.admit(&rates, *t);
            prop_assert_eq!(got.is_ok(), want, "at {}", t);
            if let Err(limited) = got {
                // Waiting as told is enough, and waiting less is not.
                let mut probe = log.clone();
                prop_assert!(probe.admit(&rates, t + limited.retry_in).is_ok());
                if limited.retry_in > 1 {
                    let mut early = log.clone();
                    prop_assert!(early.admit(&rates, t + limited.retry_in - 1).is_err());
                }
            }
            let most = rates.buckets().iter().map(|r| r.count as usize).max().unwrap();
            prop_assert!(log.len() <= most);
        }
    }

    #[test]
    fn rates_round_trip(rates in proptest::collection::vec(rate(), 0..MAX_BUCKETS)) {
        let rates = Rates::new(rates).unwrap();
        prop_assert_eq!(Rates::parse(&rates.to_string()).unwrap(), rates);
    }
}
