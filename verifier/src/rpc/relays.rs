//! Relay URLs handed over by users (`relays_csv`) and by the parent:
//! `ws://` or `wss://`, with a host, no credentials, bounded in length and
//! number.

use nostr::RelayUrl;

/// Longest relay URL accepted.
pub const MAX_RELAY_URL: usize = 512;

/// A relay URL: `ws://` or `wss://`, a host, no credentials.
pub fn parse_relay_url(url: &str) -> Result<RelayUrl, String> {
    if url.len() > MAX_RELAY_URL {
        return Err(format!(
            "a relay URL of {} bytes, more than {MAX_RELAY_URL}",
            url.len()
        ));
    }
    let parsed = nostr::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("{url:?} carries credentials"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    RelayUrl::parse(url).map_err(|e| format!("{url:?} is not a ws:// or wss:// URL: {e}"))
}

/// A comma-separated relay list: at least one, at most `max`, duplicates
/// removed, order kept.
pub fn parse_relays_csv(csv: &str, max: usize) -> Result<Vec<RelayUrl>, String> {
    let mut relays: Vec<RelayUrl> = Vec::new();
    for part in csv.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let url = parse_relay_url(part)?;
        if !relays.contains(&url) {
            if relays.len() == max {
                return Err(format!("more than {max} relays"));
            }
            relays.push(url);
        }
    }
    if relays.is_empty() {
        return Err("no relays given".into());
    }
    Ok(relays)
}

/// The comma-separated form of `relays`.
pub fn relays_csv(relays: &[RelayUrl]) -> String {
    relays
        .iter()
        .map(RelayUrl::as_str_without_trailing_slash)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_good_urls_and_refuses_the_rest() {
        let r =
            parse_relays_csv(" wss://a.example, ws://127.0.0.1:7000 ,wss://a.example,", 4).unwrap();
        assert_eq!(relays_csv(&r), "wss://a.example,ws://127.0.0.1:7000");
        for bad in [
            "",
            " , ",
            "https://a.example",
            "wss://user:pw@a.example",
            "wss://",
            "not a url",
        ] {
            assert!(parse_relays_csv(bad, 4).is_err(), "{bad}");
        }
        assert!(parse_relays_csv("wss://a.x,wss://b.x,wss://c.x", 2).is_err());
        let long = format!("wss://{}.example", "a".repeat(MAX_RELAY_URL));
        assert!(parse_relay_url(&long).is_err());
    }
}
