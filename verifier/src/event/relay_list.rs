//! Where a user publishes: the write relays of their relay list (NIP-65,
//! kind 10002: `["r", url]` or `["r", url, "write"]`; `"read"` relays are
//! not written to), or, for users without one, the legacy relay map in the
//! content of their contact list (kind 3: `{"wss://…": {"read": true,
//! "write": true}}`). Used to choose the relays an instance is announced on:
//! the builder's and launcher's outboxes. Invalid URLs are skipped.

use nostr::{Event, Kind, RelayUrl};
use serde_json::Value;

use crate::rpc::relays::parse_relay_url;

/// Kind of a NIP-65 relay list.
pub const KIND_RELAY_LIST: u16 = 10002;
/// Kind of a contact list, whose content may hold a legacy relay map.
pub const KIND_CONTACTS: u16 = 3;
/// Most relays taken from one event.
pub const MAX_RELAYS_PER_LIST: usize = 32;

/// The write relays `event` lists, in order, without duplicates; empty
/// for other kinds or when it lists none.
pub fn write_relays(event: &Event) -> Vec<RelayUrl> {
    let urls: Vec<String> = if event.kind == Kind::from(KIND_RELAY_LIST) {
        event
            .tags
            .iter()
            .filter_map(|t| match t.as_slice() {
                [name, url] if name == "r" => Some(url.clone()),
                [name, url, marker, ..] if name == "r" && marker != "read" => Some(url.clone()),
                _ => None,
            })
            .collect()
    } else if event.kind == Kind::from(KIND_CONTACTS) {
        match serde_json::from_str::<Value>(&event.content) {
            Ok(Value::Object(map)) => map
                .into_iter()
                .filter(|(_, v)| v.get("write").and_then(Value::as_bool).unwrap_or(false))
                .map(|(url, _)| url)
                .collect(),
            _ => Vec::new(),
        }
    } else {
        Vec::new()
    };
    let mut out: Vec<RelayUrl> = Vec::new();
    for url in urls {
        if out.len() == MAX_RELAYS_PER_LIST {
            break;
        }
        if let Ok(url) = parse_relay_url(url.trim()) {
            if !out.contains(&url) {
                out.push(url);
            }
        }
    }
    out
}

/// The relays `author` writes to, from the newest of their kind 10002
/// events among `events`, else the newest kind 3 with a relay map.
pub fn outbox_of<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    author: &nostr::PublicKey,
) -> Vec<RelayUrl> {
    let mut newest_list: Option<&Event> = None;
    let mut newest_contacts: Option<&Event> = None;
    for event in events
        .into_iter()
        .filter(|e| e.pubkey == *author && e.verify().is_ok())
    {
        let slot = if event.kind == Kind::from(KIND_RELAY_LIST) {
            &mut newest_list
        } else if event.kind == Kind::from(KIND_CONTACTS) {
            &mut newest_contacts
        } else {
            continue;
        };
        if slot.is_none_or(|e| e.created_at < event.created_at) {
            *slot = Some(event);
        }
    }
    let from_list = newest_list.map(write_relays).unwrap_or_default();
    if !from_list.is_empty() {
        return from_list;
    }
    newest_contacts.map(write_relays).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::{EventBuilder, Keys, Tag, Timestamp};

    fn list(keys: &Keys, tags: &[&[&str]], at: u64) -> Event {
        EventBuilder::new(Kind::from(KIND_RELAY_LIST), "")
            .tags(tags.iter().map(|t| Tag::parse(t.iter().copied()).unwrap()))
            .custom_created_at(Timestamp::from(at))
            .sign_with_keys(keys)
            .unwrap()
    }

    #[test]
    fn takes_write_relays_of_the_newest_list() {
        let k = Keys::generate();
        let old = list(&k, &[&["r", "wss://old.example"]], 10);
        let new = list(
            &k,
            &[
                &["r", "wss://both.example"],
                &["r", "wss://write.example", "write"],
                &["r", "wss://read.example", "read"],
                &["r", "https://not-a-relay.example"],
                &["r", "wss://both.example"],
            ],
            20,
        );
        let urls: Vec<String> = outbox_of([&old, &new], &k.public_key())
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(urls, ["wss://both.example", "wss://write.example"]);
        // Someone else's list does not count.
        assert!(outbox_of([&new], &Keys::generate().public_key()).is_empty());
    }

    #[test]
    fn falls_back_to_the_contact_list_relay_map() {
        let k = Keys::generate();
        let contacts = EventBuilder::new(
            Kind::from(KIND_CONTACTS),
            r#"{"wss://w.example":{"read":true,"write":true},"wss://r.example":{"read":true,"write":false}}"#,
        )
        .sign_with_keys(&k)
        .unwrap();
        let urls: Vec<String> = outbox_of([&contacts], &k.public_key())
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(urls, ["wss://w.example"]);
        let junk = EventBuilder::new(Kind::from(KIND_CONTACTS), "not json")
            .sign_with_keys(&k)
            .unwrap();
        assert!(outbox_of([&junk], &k.public_key()).is_empty());
    }
}
