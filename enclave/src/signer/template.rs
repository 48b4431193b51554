//! `sign_event`'s parameter: an event template as JSON. Accepted with or
//! without `pubkey` (nostr-tools sends none); a different pubkey is an
//! error. Kind, tags, content and created_at are signed exactly as given.

use nostr::{Kind, PublicKey, Tag, Timestamp, UnsignedEvent};
use serde_json::Value;

/// Most tags in a template.
pub const MAX_TAGS: usize = 2_000;

/// Parses `json` into the unsigned event `user` will sign.
pub fn parse(json: &str, user: &PublicKey) -> Result<UnsignedEvent, String> {
    let value: Value = serde_json::from_str(json)
        .map_err(|e| format!("sign_event: the template is not JSON: {e}"))?;
    let Some(object) = value.as_object() else {
        return Err("sign_event: the template is not a JSON object".into());
    };
    let kind = object
        .get("kind")
        .and_then(Value::as_u64)
        .and_then(|k| u16::try_from(k).ok())
        .ok_or("sign_event: kind must be an integer from 0 to 65535")?;
    let content = match object.get("content") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err("sign_event: content must be a string".into()),
    };
    let created_at = object
        .get("created_at")
        .and_then(Value::as_u64)
        .ok_or("sign_event: created_at must be a unix time")?;
    let tags = match object.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tags)) if tags.len() <= MAX_TAGS => tags
            .iter()
            .map(parse_tag)
            .collect::<Result<Vec<Tag>, String>>()?,
        Some(Value::Array(_)) => return Err(format!("sign_event: more than {MAX_TAGS} tags")),
        Some(_) => return Err("sign_event: tags must be an array".into()),
    };
    match object.get("pubkey") {
        None | Some(Value::Null) => {}
        Some(Value::String(p)) if p.is_empty() => {}
        Some(Value::String(p)) => {
            let given = PublicKey::from_hex(p)
                .map_err(|_| "sign_event: pubkey is not a hex public key".to_owned())?;
            if given != *user {
                return Err(format!(
                    "sign_event: the template's pubkey {p} is not this signer's key {}",
                    user.to_hex()
                ));
            }
        }
        Some(_) => return Err("sign_event: pubkey must be a string".into()),
    }
    Ok(UnsignedEvent::new(
        *user,
        Timestamp::from(created_at),
        Kind::from(kind),
        tags,
        content,
    ))
}

fn parse_tag(tag: &Value) -> Result<Tag, String> {
    let Some(items) = tag.as_array() else {
        return Err("sign_event: a tag is not an array".into());
    };
    let items = items
        .iter()
        .map(|i| {
            i.as_str()
                .map(str::to_owned)
                .ok_or("sign_event: a tag holds a non-string")
        })
        .collect::<Result<Vec<String>, _>>()?;
    Tag::parse(items).map_err(|e| format!("sign_event: bad tag: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::Keys;

    #[test]
    fn signs_exactly_what_was_given() {
        let keys = Keys::generate();
        let json = r#"{"kind":1,"content":"hi","tags":[["t","x"],["p","abc","","extra"]],"created_at":1700000000}"#;
        let event = parse(json, &keys.public_key())
            .unwrap()
            .sign_with_keys(&keys)
            .unwrap();
        event.verify().unwrap();
        assert_eq!(event.kind, Kind::from(1));
        assert_eq!(event.content, "hi");
        assert_eq!(event.created_at.as_secs(), 1_700_000_000);
        let tags: Vec<Vec<String>> = event.tags.iter().map(|t| t.as_slice().to_vec()).collect();
        assert_eq!(tags, vec![vec!["t", "x"], vec!["p", "abc", "", "extra"]]);
    }

    #[test]
    fn pubkey_may_be_absent_or_ours_but_not_another() {
        let keys = Keys::generate();
        let ours = format!(
            r#"{{"kind":1,"content":"","tags":[],"created_at":1,"pubkey":"{}"}}"#,
            keys.public_key().to_hex()
        );
        assert!(parse(&ours, &keys.public_key()).is_ok());
        let other = ours.replace(
            &keys.public_key().to_hex(),
            &Keys::generate().public_key().to_hex(),
        );
        assert!(parse(&other, &keys.public_key())
            .unwrap_err()
            .contains("not this signer"));
    }

    #[test]
    fn refuses_malformed_templates() {
        let pk = Keys::generate().public_key();
        for bad in [
            "nope",
            "[]",
            r#"{"content":"","created_at":1}"#,
            r#"{"kind":70000,"content":"","created_at":1}"#,
            r#"{"kind":1,"created_at":1}"#,
            r#"{"kind":1,"content":""}"#,
            r#"{"kind":1,"content":"","created_at":1,"tags":[[1]]}"#,
            r#"{"kind":1,"content":"","created_at":1,"tags":"x"}"#,
            r#"{"kind":1,"content":"","created_at":1,"tags":[[]]}"#,
        ] {
            assert!(parse(bad, &pk).is_err(), "{bad}");
        }
    }
}
