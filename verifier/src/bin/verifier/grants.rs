//! `verifier key connect/grant/bunker-url/apps/log`: grants from the
//! command line, and the enclave's reports on them in words or JSON.
//! Everything the enclave sends back is escaped before it is printed: an
//! app's claims about itself are the app's, not ours.

use nostr::{PublicKey, ToBech32};
use verifier::grant::decision::utc;
use verifier::grant::duration::parse_duration;
use verifier::grant::wire::{AppView, LogEntry, Page};
use verifier::grant::{Expiry, Perms, Policy, Rates};
use verifier::rpc::nostrconnect::NostrConnect;

use crate::cli::Conditions;
use crate::output::printable;
use crate::Unusable;

/// The policy that `perms` (or full access) and `conditions` describe;
/// `None` when nothing is said at all (full access, as the original).
pub(crate) fn policy(
    perms: Option<&str>,
    full: bool,
    conditions: &Conditions,
) -> Result<Option<Policy>, Unusable> {
    let perms = match perms {
        Some(list) => Perms::parse(list).map_err(|e| Unusable {
            message: format!("--perms: {e}"),
            hint: Some("see `verifier key grant --help` for the perms syntax"),
        })?,
        None if full || said(conditions) => Perms::Full,
        None => return Ok(None),
    };
    with_conditions(Policy::new(perms), conditions).map(Some)
}

/// Whether any condition is given.
pub(crate) fn said(conditions: &Conditions) -> bool {
    conditions.ttl.is_some()
        || conditions.uses.is_some()
        || conditions.rate.is_some()
        || conditions.created_at_window.is_some()
}

/// `policy` with the `conditions` given (the others as they are).
pub(crate) fn with_conditions(
    mut policy: Policy,
    conditions: &Conditions,
) -> Result<Policy, Unusable> {
    if let Some(ttl) = &conditions.ttl {
        let secs = parse_duration(ttl).map_err(|e| Unusable::from(format!("--ttl: {e}")))?;
        policy.expiry = Some(Expiry::After(secs));
    }
    policy.uses = conditions.uses;
    if let Some(rate) = &conditions.rate {
        policy.rates = Rates::parse(rate).map_err(|e| Unusable::from(format!("--rate: {e}")))?;
    }
    match conditions.created_at_window.as_deref() {
        None => {}
        Some("none") => policy.window = None,
        Some(w) => {
            let secs = parse_duration(w).map_err(|e| {
                Unusable::from(format!("--created-at-window: {e}, or `none` for no limit"))
            })?;
            policy.window = Some(secs);
        }
    }
    Ok(policy)
}

/// What the enclave grants `uri`'s app for `policy` (full access without
/// one), narrowed by what the URI asks for, as the enclave does.
pub(crate) fn nostrconnect_policy(uri: &NostrConnect, policy: Option<&Policy>) -> Policy {
    uri.granted(policy)
}

/// What the app behind `uri` says and asks for (its own claims), and what
/// it will get.
pub(crate) fn describe_nostrconnect(
    uri: &NostrConnect,
    policy: Option<&Policy>,
    now: u64,
) -> String {
    let claim = |v: &Option<String>| v.as_deref().map_or_else(|| "(none)".to_owned(), printable);
    format!(
        "the app {} says (its own claims, unchecked): name {}, url {}, asks for {}\nanswering on {}\nit will get: {}",
        npub(&uri.client),
        claim(&uri.name),
        claim(&uri.url),
        claim(&uri.perms),
        uri.relays.iter().map(|r| printable(r.as_str())).collect::<Vec<_>>().join(", "),
        nostrconnect_policy(uri, policy).started(now).describe(now)
    )
}

/// `granted to npub…: <policy in words>`.
pub(crate) fn granted(app: &PublicKey, policy: &Policy, now: u64) -> String {
    format!(
        "granted to {}: {}",
        npub(app),
        policy.started(now).describe(now)
    )
}

/// Parses one page of `list_apps` or `get_log`.
pub(crate) fn page<T: serde::de::DeserializeOwned>(result: &str) -> Result<Page<T>, Unusable> {
    serde_json::from_str(result)
        .map_err(|e| Unusable::from(format!("the enclave's reply is not a page: {e}")))
}

/// The apps, in words.
pub(crate) fn print_apps(apps: &[AppView], now: u64) {
    if apps.is_empty() {
        println!("no apps are allowed on your key");
        return;
    }
    for app in apps {
        let who = PublicKey::from_hex(&app.app)
            .map(|p| npub(&p))
            .unwrap_or_else(|_| printable(&app.app));
        println!(
            "{who} (from {}, since {})",
            printable(&app.source),
            utc(app.since)
        );
        match Policy::from_json(&app.policy) {
            Ok(policy) => println!("  may: {}", policy.describe(now)),
            Err(e) => println!("  may: (unreadable policy: {})", printable(&e)),
        }
        let last = match &app.last_request {
            Some((t, method)) => format!("{} at {}", printable(method), utc(*t)),
            None => "none yet".into(),
        };
        println!(
            "  used: {} signing and decryption requests; last request: {last}",
            app.used
        );
        if let Some(claims) = &app.claims {
            println!("  says about itself (its own claim): {}", printable(claims));
        }
    }
}

/// The log, one line per decision.
pub(crate) fn print_log(entries: &[LogEntry]) {
    if entries.is_empty() {
        println!("no decisions logged for your key");
        return;
    }
    for e in entries {
        let who = PublicKey::from_hex(&e.app)
            .map(|p| npub(&p))
            .unwrap_or_else(|_| printable(&e.app));
        let what = match e.kind {
            Some(kind) => format!("{} kind {kind}", printable(&e.method)),
            None => printable(&e.method),
        };
        let why = e
            .reason
            .as_deref()
            .map(|r| format!("  {}", printable(r)))
            .unwrap_or_default();
        // A run of the same decision: how many, dated by the last.
        let times = if e.count > 1 {
            format!(" ×{}", e.count)
        } else {
            String::new()
        };
        println!(
            "{}  {who}  {what}  {}{times}{why}",
            utc(e.time),
            printable(&e.decision)
        );
    }
}

fn npub(p: &PublicKey) -> String {
    p.to_bech32().unwrap_or_else(|_| p.to_hex())
}
