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
    let relay =
        RelayUrl::parse(url).map_err(|e| format!("{url:?} is not a ws:// or wss:// URL: {e}"))?;
    check_normal_form(&relay).map_err(|e| format!("{url:?} {e}"))?;
    Ok(relay)
}

/// A relay URL is used in its normal form (`wss:/host?q=wss://x` becomes
/// `wss://host/?q=wss://x`): in bunker URLs, relay lists and filters. That
/// form, and the one without a trailing slash, must parse again to the
/// same relay, or what the enclave prints would name another relay or
/// none (found by fuzzing). It is held to the length cap too:
/// percent-encoding can make it three times as long as what was given.
pub fn check_normal_form(relay: &RelayUrl) -> Result<(), String> {
    if relay.as_str().len() > MAX_RELAY_URL {
        return Err(format!(
            "is {} bytes once normalized, more than {MAX_RELAY_URL}",
            relay.as_str().len()
        ));
    }
    // `%` and `+` do not survive being a query value in a bunker URI
    // (nostr prints them as they are and reads `+` as a space): a host
    // `x%2by` became `x+y`, then `x y`, no domain name. A `,` (a host
    // `x%2cy` becomes `x,y`) splits a comma-separated relay list. All
    // found by fuzzing.
    if relay.as_str().contains(['%', '+', ',']) {
        return Err(format!(
            "is written as {:?}, with a `%`, `+` or `,`, which relay lists and URIs do not carry intact",
            relay.as_str()
        ));
    }
    for form in [relay.as_str(), relay.as_str_without_trailing_slash()] {
        match RelayUrl::parse(form) {
            Ok(again) if again == *relay => {}
            Ok(other) => return Err(format!("is written as {form:?}, which is {other}")),
            Err(e) => {
                return Err(format!(
                    "is written as {form:?}, which is no relay URL: {e}"
                ))
            }
        }
    }
    Ok(())
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
    fn relays_whose_normal_form_is_another_are_refused() {
        // Found by fuzzing: one `://` as given, two once normalized (URL
        // parsing also drops tabs and newlines).
        for url in [
            "wss:/888c7e?relay=wss://relay.example",
            "wss:/;/key\nwss://a.example",
            "ws:relay.example/?r=ws://a",
            "wss:4bbcdd80e%2bb0145c2a2fce8f9?ref",
            "wss:a%2cb",
            "wss://relay.example/a b",
        ] {
            assert!(parse_relay_url(url).is_err(), "{url}");
        }
        // Also found by fuzzing: under the cap as given, over it once
        // control characters are percent-encoded.
        let long = format!("wss://r.example/{}x", "\u{1d}".repeat(200));
        assert!(long.len() < MAX_RELAY_URL && parse_relay_url(&long).is_err());
        for url in [
            "wss://relay.example",
            "ws://127.0.0.1:7777",
            "wss://relay.example/path",
        ] {
            let relay = parse_relay_url(url).unwrap();
            assert_eq!(parse_relay_url(relay.as_str()).unwrap(), relay);
        }
    }

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
