//! What an app asked to do, and the grant's answer.

use nostr::PublicKey;

use super::duration::describe_duration;
use super::perms::Method;
use super::rate::Rate;

/// One request, as a grant sees it: never its parameters' contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    /// The method.
    pub method: Method,
    /// For `sign_event`: the template's kind.
    pub kind: Option<u16>,
    /// For `sign_event`: the template's `created_at`, if it has one.
    pub created_at: Option<u64>,
    /// For `nip04_*`/`nip44_*`: the peer.
    pub peer: Option<PublicKey>,
}

impl Action {
    /// A request without kind or peer.
    pub fn method(method: Method) -> Self {
        Self {
            method,
            kind: None,
            created_at: None,
            peer: None,
        }
    }

    /// `sign_event` of a template of `kind` dated `created_at`.
    pub fn sign(kind: u16, created_at: Option<u64>) -> Self {
        Self {
            kind: Some(kind),
            created_at,
            ..Self::method(Method::SignEvent)
        }
    }

    /// A `nip04_*`/`nip44_*` request with `peer`.
    pub fn crypto(method: Method, peer: PublicKey) -> Self {
        Self {
            peer: Some(peer),
            ..Self::method(method)
        }
    }
}

/// Why a grant refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The grant does not name this method (and kind, or peer).
    NotGranted,
    /// The grant expired at this time.
    Expired {
        /// When (unix seconds).
        at: u64,
    },
    /// The grant's uses are spent.
    UsedUp {
        /// How many it allowed.
        uses: u64,
    },
    /// A rate bucket is full.
    RateLimited {
        /// The bucket.
        rate: Rate,
        /// Seconds until the next request would be allowed.
        retry_in: u64,
    },
    /// The isolation rule (`crate::rpc::isolation`) refused it: the
    /// request involved the enclave's own protocol keys or messages. No
    /// grant allows that; logged so the owner sees the attempt.
    Isolation,
    /// `nip04_decrypt` from a peer the grant does not name, and the owner
    /// did not grant full access: NIP-04 has no MAC, so an app that may
    /// decrypt from any peer could cut and mask ciphertexts to read any
    /// message of a conversation, a private key sent over it included
    /// (`crate::rpc::isolation`).
    Nip04NeedsPeer,
    /// The template's `created_at` is too far from the enclave's clock.
    CreatedAtOutOfWindow {
        /// The allowed distance, in seconds.
        window: u64,
        /// `created_at` minus now.
        offset: i64,
    },
}

impl Refusal {
    /// A short code for logs and JSON: `not-granted`, `expired`,
    /// `used-up`, `rate-limited`, `isolation`, `nip04-peer`, `created-at`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotGranted => "not-granted",
            Self::Expired { .. } => "expired",
            Self::UsedUp { .. } => "used-up",
            Self::RateLimited { .. } => "rate-limited",
            Self::Isolation => "isolation",
            Self::Nip04NeedsPeer => "nip04-peer",
            Self::CreatedAtOutOfWindow { .. } => "created-at",
        }
    }

    /// The message of the error reply for `action`.
    pub fn message(&self, action: &Action) -> String {
        let what = describe_action(action);
        match self {
            Self::NotGranted => format!("forbidden: {what} is not granted to this app"),
            Self::Isolation => format!(
                "forbidden: {what} involves the enclave's own protocol keys or messages"
            ),
            Self::Nip04NeedsPeer => format!(
                "forbidden: {what}: NIP-04 has no MAC, so decrypting from any peer would let an app cut and mask ciphertexts to read anything sent over NIP-04, a private key included; only a grant that names this peer (nip04_decrypt:<hex>) or full access decrypts NIP-04"
            ),
            Self::Expired { at } => format!(
                "forbidden: {what}: this app's grant expired at {} (unix {at})",
                utc(*at)
            ),
            Self::UsedUp { uses } => {
                format!("forbidden: {what}: this app's grant allowed {uses} uses; all are spent")
            }
            Self::RateLimited { rate, retry_in } => format!(
                "rate-limited: {}; retry in {}",
                rate.describe(),
                describe_duration(*retry_in)
            ),
            Self::CreatedAtOutOfWindow { window, offset } => format!(
                "forbidden: {what}: created_at is {} {} the signer's clock; this app may sign only within ±{}",
                describe_duration(offset.unsigned_abs()),
                if *offset < 0 { "behind" } else { "ahead of" },
                describe_duration(*window)
            ),
        }
    }
}

/// The decision on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allowed,
    /// Refused, with the reason.
    Refused(Refusal),
}

impl Decision {
    /// Whether allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed)
    }
}

/// `sign_event of kind 0`, `nip44_decrypt from <peer>`, `ping`.
pub fn describe_action(action: &Action) -> String {
    match (action.method, action.kind, &action.peer) {
        (Method::SignEvent, Some(kind), _) => format!("sign_event of kind {kind}"),
        (m, _, Some(peer)) if m.as_str().ends_with("decrypt") => {
            format!("{m} from {}", short_key(peer))
        }
        (m, _, Some(peer)) => format!("{m} to {}", short_key(peer)),
        (m, _, None) => m.as_str().to_owned(),
    }
}

fn short_key(key: &PublicKey) -> String {
    let hex = key.to_hex();
    format!("{}…", hex.get(..16).unwrap_or(&hex))
}

/// A unix time as `2026-12-01 20:00:00 UTC`.
pub fn utc(at: u64) -> String {
    i64::try_from(at)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .map(|t| {
            format!(
                "{}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_else(|| format!("unix {at}"))
}
