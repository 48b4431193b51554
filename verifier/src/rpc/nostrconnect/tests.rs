#![allow(clippy::unwrap_used)]

use nostr::Keys;

use super::*;

fn client() -> String {
    Keys::generate().public_key().to_hex()
}

#[test]
fn reads_what_apps_show() {
    let c = client();
    let uri = format!(
        "nostrconnect://{c}?relay=wss%3A%2F%2Frelay.example&relay=ws://127.0.0.1:7000&secret=s3cr3t&perms=sign_event%3A1%2Cnip44_encrypt&name=My%20App&url=https%3A%2F%2Fapp.example&image=https%3A%2F%2Fapp.example%2Fi.png"
    );
    let p = NostrConnect::parse(&uri, 8).unwrap();
    assert_eq!(p.client.to_hex(), c);
    assert_eq!(p.relays.len(), 2);
    assert_eq!(p.secret.as_str(), "s3cr3t");
    assert_eq!(p.perms.as_deref(), Some("sign_event:1,nip44_encrypt"));
    assert_eq!(p.name.as_deref(), Some("My App"));
    assert!(!format!("{p:?}").contains("s3cr3t"));
    assert!(p.claims().contains("https://app.example"));
    assert_eq!(NostrConnect::parse(&p.to_uri(), 8).unwrap(), p);
    let r = p.response();
    assert_eq!(r.result, "s3cr3t");
    assert!(!r.id.is_empty());
}

#[test]
fn reads_legacy_metadata() {
    let meta = r#"{"name":"Old","url":"https://old.example","icons":["https://old.example/i.png"],"perms":["sign_event:1","nip04_encrypt"]}"#;
    let uri = format!(
        "nostrconnect://{}?relay=wss://r.example&secret=x&metadata={}",
        client(),
        url_escape(meta)
    );
    let p = NostrConnect::parse(&uri, 8).unwrap();
    assert_eq!(p.name.as_deref(), Some("Old"));
    assert_eq!(p.image.as_deref(), Some("https://old.example/i.png"));
    assert_eq!(p.perms.as_deref(), Some("sign_event:1,nip04_encrypt"));
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn refuses_what_cannot_work() {
    let c = client();
    let no_secret = format!("nostrconnect://{c}?relay=wss://r.example");
    assert!(NostrConnect::parse(&no_secret, 8)
        .unwrap_err()
        .contains("no secret="));
    let no_relay = format!("nostrconnect://{c}?secret=x");
    assert!(NostrConnect::parse(&no_relay, 8)
        .unwrap_err()
        .contains("no relay="));
    for bad in [
        "bunker://abc?relay=wss://r.example&secret=x".to_owned(),
        "nostrconnect://nothex?relay=wss://r.example&secret=x".to_owned(),
        format!("nostrconnect://{c}?relay=https://r.example&secret=x"),
        format!("nostrconnect://{c}?relay=wss://user:pw@r.example&secret=x"),
        format!("nostrconnect://{c}?relay=wss://r.example&secret=a&secret=b"),
        format!(
            "nostrconnect://{c}?relay=wss://r.example&secret={}",
            "x".repeat(300)
        ),
        format!("nostrconnect://{c}?relay=wss://a.example&relay=wss://b.example&secret=x"),
        format!(
            "nostrconnect://{c}?{}",
            "relay=wss://r.example&".repeat(1000)
        ),
    ] {
        let e = NostrConnect::parse(&bad, 1);
        assert!(e.is_err(), "{bad}");
        assert!(!e.unwrap_err().contains("secret=x"));
    }
}

#[test]
fn a_claim_cut_at_its_cap_reads_back_the_same() {
    // Found by fuzzing: a space just before the cut stayed, and the printed
    // URI read back without it.
    let name = format!("{}  {}", "a".repeat(MAX_CLAIM - 1), "b".repeat(50));
    let uri = format!(
        "nostrconnect://{}?relay=wss%3A%2F%2Fr.example&secret=s&name={}",
        client(),
        url_escape(&name)
    );
    let parsed = NostrConnect::parse(&uri, 4).unwrap();
    assert_eq!(
        parsed.name.as_deref(),
        Some("a".repeat(MAX_CLAIM - 1).as_str())
    );
    assert!(NostrConnect::parse(&parsed.to_uri(), 4).unwrap() == parsed);
}
