//! Sorting fetched instance events: newest valid per service key, invalid
//! ones with their reason, builder and launcher filters.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use nostr::{EventBuilder, Keys, Tag, Timestamp};
use support::{tamper, World, T0};
use verifier::discover::{Accept, Discovery};

/// `event` signed again by `keys` with `created_at` moved by `delta`.
fn resigned(event: &nostr::Event, keys: &Keys, delta: u64) -> nostr::Event {
    let tags = event
        .tags
        .iter()
        .map(|t| Tag::parse(t.as_slice().to_vec()).unwrap());
    EventBuilder::new(event.kind, event.content.clone())
        .tags(tags)
        .custom_created_at(Timestamp::from_secs(T0 as u64 + delta))
        .allow_self_tagging()
        .sign_with_keys(keys)
        .unwrap()
}

#[test]
fn keeps_the_newest_valid_event_per_service_key() {
    let mut world = World::new();
    let first = world.valid();
    let newer = resigned(&first, &world.service, 10);
    world.service = Keys::generate();
    let other = world.valid();
    let d = Discovery::from_events(
        [&first, &newer, &other],
        &world.options(),
        &Accept::default(),
    );
    assert!(d.refused.is_empty(), "{:?}", d.refused);
    assert_eq!(d.superseded, 1);
    let ids: Vec<_> = d.instances.iter().map(|i| i.event.id).collect();
    assert_eq!(ids, vec![newer.id, other.id]);
}

#[test]
fn lists_invalid_events_with_the_failed_check() {
    let world = World::new();
    let valid = world.valid();
    let forged = world.event(&world.parts(), |tags| {
        let x = tags.iter_mut().find(|t| t[0] == "x").unwrap();
        x[1] = "00".repeat(48);
    });
    let unsigned = tamper(&valid, |v| v["content"] = "AAAA".into());
    let d = Discovery::from_events(
        [&valid, &forged, &unsigned],
        &world.options(),
        &Accept::default(),
    );
    assert_eq!(d.instances.len(), 1);
    let checks: Vec<_> = d.refused.iter().map(|r| r.check.as_str()).collect();
    assert_eq!(checks, vec!["pcr_tags", "event_signature"]);
    assert!(
        d.refused[0].reason.starts_with("failed"),
        "{}",
        d.refused[0].reason
    );
}

#[test]
fn builder_and_launcher_filters_refuse_others() {
    let world = World::new();
    let event = world.valid();
    let stranger = Keys::generate().public_key();
    let only = |builders, launchers| Accept {
        builders,
        launchers,
    };
    let d = Discovery::from_events([&event], &world.options(), &only(vec![stranger], vec![]));
    assert!(d.instances.is_empty());
    assert_eq!(d.refused[0].check, "builder");
    let d = Discovery::from_events([&event], &world.options(), &only(vec![], vec![stranger]));
    assert_eq!(d.refused[0].check, "launcher");
    let d = Discovery::from_events(
        [&event],
        &world.options(),
        &only(
            vec![world.builder.public_key()],
            vec![world.launcher.public_key()],
        ),
    );
    assert_eq!(d.instances.len(), 1);
}
