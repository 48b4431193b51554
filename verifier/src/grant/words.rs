//! Grants in words, for the people who give them.

use super::decision::utc;
use super::duration::describe_duration;
use super::perms::{Method, Perm};
use super::{Expiry, Policy};

/// What a listed grant allows, in words.
pub(super) fn describe_perms(perms: &[Perm]) -> String {
    let mut parts = Vec::new();
    let kinds: Vec<String> = perms
        .iter()
        .flat_map(|p| match p {
            Perm::Kinds(a, b) if a == b => vec![a.to_string()],
            // Two neighbours merged into a range read better apart.
            Perm::Kinds(a, b) if u32::from(*a) + 1 == u32::from(*b) => {
                vec![a.to_string(), b.to_string()]
            }
            Perm::Kinds(a, b) => vec![format!("{a}-{b}")],
            _ => Vec::new(),
        })
        .collect();
    if !kinds.is_empty() {
        let noun = if kinds.len() == 1 && !kinds.iter().any(|k| k.contains('-')) {
            "kind"
        } else {
            "kinds"
        };
        parts.push(format!("sign_event of {noun} {}", list(&kinds)));
    }
    for perm in perms {
        match perm {
            Perm::Method(Method::Nip04Decrypt) => parts.push(
                "nip04_decrypt with any peer (but from a peer it does not name only if the owner granted full access: NIP-04 has no MAC)".into(),
            ),
            Perm::Method(m) if m.has_peer() => parts.push(format!("{m} with any peer")),
            Perm::Peer(m, bytes) => parts.push(format!("{m} with {} only", hex::encode(bytes))),
            _ => {}
        }
    }
    if parts.is_empty() {
        parts.push("nothing that signs, encrypts or decrypts".into());
    }
    let plumbing: Vec<String> = Method::ALL
        .iter()
        .filter(|m| m.always_allowed() && **m != Method::Connect)
        .map(|m| m.to_string())
        .collect();
    format!("{} (and always {})", parts.join("; "), list(&plumbing))
}

/// A policy in words.
pub(super) fn describe_policy(policy: &Policy, now: u64) -> String {
    let mut parts = vec![policy.perms.describe()];
    parts.push(match policy.expiry {
        None => "no expiry".into(),
        Some(Expiry::After(ttl)) => {
            format!("for {} from when the app connects", describe_duration(ttl))
        }
        Some(Expiry::At(at)) if at <= now => format!("expired at {}", utc(at)),
        Some(Expiry::At(at)) => format!(
            "until {} ({} from now)",
            utc(at),
            describe_duration(at - now)
        ),
    });
    parts.push(match policy.uses {
        None => "any number of uses".into(),
        Some(1) => "1 use".into(),
        Some(n) => format!("at most {n} uses"),
    });
    parts.push(if policy.rates.is_none() {
        "no rate limit".into()
    } else {
        format!(
            "at most {} (signing and decryption)",
            policy.rates.describe()
        )
    });
    parts.push(match policy.window {
        None => "any created_at".into(),
        Some(w) => format!(
            "created_at within ±{} of the enclave's clock",
            describe_duration(w)
        ),
    });
    parts.join("; ")
}

/// `a`, `a and b`, `a, b and c`.
fn list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
