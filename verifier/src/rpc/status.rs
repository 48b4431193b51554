//! `key_status`: what an enclave says of the requester's key, and whether
//! and when it would let the key go (the enclave's rules are in its
//! `custody::lifecycle`). The result is this JSON:
//!
//! ```text
//! {"held":true,"test_key":false,"apps":0,"pending_secrets":0,
//!  "imported":1796600000,"last_used":1796600000,
//!  "deleted_after":1799192000,"displaceable":true,"idle_days":30}
//! ```
//!
//! `deleted_after` is when the key is deleted if nothing changes: a test
//! key's end, or for a key that no app granted by its owner through the
//! admin API and no pending bunker secret keeps (nsec.app's grants cost
//! nothing and do not), its last use plus `idle_days`: any admin request,
//! or a request of one of its apps, starts that again; `null` while such an
//! app keeps it. `displaceable`: when the enclave is full, a newcomer who
//! pays for the last slot may take this key's.

use serde::{Deserialize, Serialize};

use crate::grant::decision::utc;

/// What `key_status` says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStatus {
    /// The key is held.
    pub held: bool,
    /// It is a throw-away test key.
    #[serde(default)]
    pub test_key: bool,
    /// Apps allowed on it.
    #[serde(default)]
    pub apps: usize,
    /// Of those, the ones its owner granted through the admin API (not
    /// nsec.app's): what keeps the key.
    #[serde(default)]
    pub owner_apps: usize,
    /// Bunker secrets not spent yet.
    #[serde(default)]
    pub pending_secrets: usize,
    /// When its owner imported it (unix seconds).
    #[serde(default)]
    pub imported: Option<u64>,
    /// Its owner's last admin request (unix seconds).
    #[serde(default)]
    pub last_used: Option<u64>,
    /// When it is deleted if nothing changes; `None` while it serves apps.
    #[serde(default)]
    pub deleted_after: Option<u64>,
    /// A newcomer who pays for the last slot may take its slot when the
    /// enclave is full.
    #[serde(default)]
    pub displaceable: bool,
    /// Days a key with no app is kept after its owner's last request.
    #[serde(default)]
    pub idle_days: u64,
}

impl KeyStatus {
    /// Parses `key_status`'s result.
    pub fn from_json(json: &str) -> Result<Self, String> {
        if json.len() > 4096 {
            return Err("the status is too long".into());
        }
        serde_json::from_str(json).map_err(|e| format!("the status is not valid: {e}"))
    }

    /// As JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// In words, for the key's owner.
    pub fn describe(&self) -> String {
        if !self.held {
            return "the enclave does not hold your key".into();
        }
        let plural = |n: usize, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
        let mut out = format!(
            "the enclave holds your key{}\n{} ({} granted by you, the rest by nsec.app), {}",
            if self.test_key { " (a test key)" } else { "" },
            plural(self.apps, "app"),
            self.owner_apps,
            plural(self.pending_secrets, "pending bunker secret"),
        );
        if let Some(at) = self.last_used {
            out.push_str(&format!("; last used {}", utc(at)));
        }
        match (self.test_key, self.deleted_after) {
            (true, Some(at)) => out.push_str(&format!("\ndeleted at {}", utc(at))),
            (false, Some(at)) => out.push_str(&format!(
                "\nno app you granted keeps it: deleted after {} unless it is used (any `verifier key` command on it, or a request of one of its apps, keeps it {} days more)",
                utc(at),
                self.idle_days
            )),
            _ => out.push_str("\nkept while an app you granted, or a pending bunker secret, keeps it"),
        }
        if self.displaceable {
            out.push_str("\nwhen the enclave is full, a newcomer who pays for the last slot may take its place");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_older_forms() {
        let status = KeyStatus {
            held: true,
            apps: 1,
            imported: Some(5),
            last_used: Some(6),
            idle_days: 30,
            ..KeyStatus::default()
        };
        assert_eq!(KeyStatus::from_json(&status.to_json()), Ok(status.clone()));
        assert!(status.describe().contains("kept while an app you granted"));
        let idle = KeyStatus {
            apps: 0,
            deleted_after: Some(86_400 * 31),
            displaceable: true,
            ..status
        };
        assert!(idle.describe().contains("deleted after"));
        assert_eq!(
            KeyStatus::from_json(r#"{"held":false}"#).map(|s| s.describe()),
            Ok("the enclave does not hold your key".to_owned())
        );
        assert!(KeyStatus::from_json("[]").is_err());
    }
}
