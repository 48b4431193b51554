#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use nostr::Keys;

use super::*;

fn entry(app: &PublicKey, kind: u16, refused: bool) -> Entry {
    let refusal = refused.then_some(Refusal::NotGranted);
    Entry::new(kind.into(), app, &Action::sign(kind, None), refusal)
}

fn key() -> PublicKey {
    Keys::generate().public_key()
}

#[test]
fn repeats_count_up() {
    let mut log = DecisionLog::new(LogLimits::default());
    let (user, app) = (key(), key());
    for _ in 0..1000 {
        log.push(user, entry(&app, 0, true));
    }
    let kept = log.entries(&user, 0);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].view().count, 1000);
    assert_eq!(log.len(), 1);
}

#[test]
fn a_flooding_app_erases_only_its_own_history() {
    let mut log = DecisionLog::new(LogLimits {
        per_key: 100,
        total: 10_000,
        floor: 8,
    });
    let (user, honest, agent) = (key(), key(), key());
    for k in 0..10 {
        log.push(user, entry(&honest, k, k % 2 == 0));
    }
    // The agent's first attempt, then a flood of different refusals and
    // allowed requests.
    log.push(user, entry(&agent, 0, true));
    for k in 1..5000 {
        log.push(user, entry(&agent, k, k % 3 == 0));
    }
    let kept = log.entries(&user, 0);
    assert_eq!(kept.len(), 100);
    let honest_hex = hex::encode(honest.to_bytes());
    assert_eq!(
        kept.iter().filter(|e| e.view().app == honest_hex).count(),
        10
    );
    // The agent's first refusals are still there.
    let agent_hex = hex::encode(agent.to_bytes());
    let first = kept
        .iter()
        .find(|e| e.view().app == agent_hex)
        .unwrap()
        .view();
    assert_eq!((first.kind, first.decision.as_str()), (Some(0), "refused"));
}

#[test]
fn keys_that_log_little_keep_it_all() {
    let mut log = DecisionLog::new(LogLimits {
        per_key: 1000,
        total: 500,
        floor: 0,
    });
    let quiet: Vec<PublicKey> = (0..5).map(|_| key()).collect();
    for user in &quiet {
        for k in 0..10 {
            log.push(*user, entry(&key(), k, false));
        }
    }
    // A stranger's keys flood.
    for _ in 0..5 {
        let user = key();
        let app = key();
        for k in 0..1000 {
            log.push(user, entry(&app, k, k % 2 == 0));
        }
        assert!(log.len() <= 500);
    }
    for user in &quiet {
        assert_eq!(log.entries(user, 0).len(), 10);
    }
    log.forget(&quiet[0]);
    assert_eq!(log.len(), 490);
    assert!(log.entries(&quiet[0], 0).is_empty());
}

#[test]
fn cursors_are_unique_over_deletes() {
    let mut log = DecisionLog::new(LogLimits::default());
    let (user, app) = (key(), key());
    log.push(user, entry(&app, 1, false));
    let first = log.entries(&user, 0)[0].view().seq;
    log.forget(&user);
    log.push(user, entry(&app, 2, false));
    let again = log.entries(&user, 0)[0].view().seq;
    assert!(again > first);
    assert!(log.entries(&user, again + 1).is_empty());
}

#[test]
fn other_keys_never_push_a_key_below_its_floor() {
    // The review's attack: an app's operator drains its victim's log by
    // logging on many small keys of their own.
    let mut log = DecisionLog::new(LogLimits {
        per_key: 50,
        total: 60,
        floor: 8,
    });
    let (victim, agent) = (key(), key());
    for k in 0..5 {
        log.push(victim, entry(&agent, k, k < 2));
    }
    for _ in 0..36 {
        let (user, app) = (key(), key());
        log.push(user, entry(&app, 1, false));
        log.push(user, entry(&app, 2, true));
    }
    let kept = log.entries(&victim, 0);
    assert_eq!(kept.len(), 5);
    // Its first refusals among them.
    assert_eq!(kept[0].view().decision, "refused");
    // Beyond the floors, the total holds.
    assert!(log.len() <= 60 + 8 * 37, "{}", log.len());
}

#[test]
fn a_key_that_logged_much_keeps_its_floor_and_first_refusals() {
    let mut log = DecisionLog::new(LogLimits {
        per_key: 1000,
        total: 100,
        floor: 4,
    });
    let (victim, app) = (key(), key());
    log.push(victim, entry(&app, 0, true));
    log.push(victim, entry(&app, 1, true));
    for k in 2..300 {
        log.push(victim, entry(&app, k, false));
    }
    // A flood of other keys, each logging a lot.
    for _ in 0..50 {
        let (user, other) = (key(), key());
        for k in 0..20 {
            log.push(user, entry(&other, k, false));
        }
    }
    let kept = log.entries(&victim, 0);
    assert!(kept.len() >= 4, "{}", kept.len());
    let refused: Vec<u16> = kept
        .iter()
        .filter(|e| e.view().decision == "refused")
        .filter_map(|e| e.view().kind)
        .collect();
    assert_eq!(refused, vec![0, 1]);
    // Every key is held to its floor and the total beyond it.
    assert!(log.len() <= 100 + 4 * 51, "{}", log.len());
}
