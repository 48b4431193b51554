//! Grants and refusals as sealed state keeps them
//! ([`crate::state::record`]): the policy in its JSON wire form, the
//! uses and the rate log, so that a restored grant decides as the old one
//! would have.

use serde::{Deserialize, Serialize};

use super::decision::Refusal;
use super::rate::{Rate, RateLog};
use super::{Expiry, Grant, Policy};

/// A grant in force, as sealed state keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// The policy in force ([`Policy::to_json`]), its expiry absolute.
    pub policy: String,
    /// The owner's policy was full access, before the app narrowed it.
    pub owner_full: bool,
    /// Signing and decryption requests allowed so far.
    pub used: u64,
    /// When each counted request in the rate windows was allowed.
    pub rate_log: Vec<u64>,
}

/// A refusal, as a decision log entry keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalRecord {
    /// [`Refusal::code`].
    pub code: String,
    /// The numbers the refusal carries, in the order of its fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<i64>,
}

impl Grant {
    /// The grant as sealed state keeps it.
    pub fn to_record(&self) -> GrantRecord {
        GrantRecord {
            policy: self.policy.to_json(),
            owner_full: self.owner_full,
            used: self.used,
            rate_log: self.log.times().collect(),
        }
    }

    /// The grant a record keeps. The policy must parse, and its expiry be
    /// absolute, as every grant in force holds it.
    pub fn from_record(record: &GrantRecord) -> Result<Self, String> {
        let policy = Policy::from_stored_json(&record.policy)?;
        let expires_at = match policy.expiry {
            None => None,
            Some(Expiry::At(at)) => Some(at),
            Some(Expiry::After(_)) => {
                return Err("a grant in force has an end time, not a lifetime".into())
            }
        };
        let most = policy
            .rates
            .buckets()
            .iter()
            .map(|r| r.count as usize)
            .max();
        Ok(Self {
            log: RateLog::from_times(&record.rate_log, most.unwrap_or(0)),
            policy,
            expires_at,
            owner_full: record.owner_full,
            used: record.used,
        })
    }
}

impl Refusal {
    /// The refusal as a log entry keeps it.
    pub fn to_record(&self) -> RefusalRecord {
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let values = match *self {
            Self::NotGranted | Self::Isolation | Self::Nip04NeedsPeer => vec![],
            Self::Expired { at } => vec![clamp(at)],
            Self::UsedUp { uses } => vec![clamp(uses)],
            Self::RateLimited { rate, retry_in } => vec![
                i64::from(rate.count),
                i64::from(rate.window),
                clamp(retry_in),
            ],
            Self::CreatedAtOutOfWindow { window, offset } => vec![clamp(window), offset],
        };
        RefusalRecord {
            code: self.code().to_owned(),
            values,
        }
    }

    /// The refusal a log entry keeps.
    pub fn from_record(record: &RefusalRecord) -> Result<Self, String> {
        let bad = || format!("a refusal record {record:?} does not match its code");
        let unsigned = |n: i64| u64::try_from(n).map_err(|_| bad());
        let small = |n: i64| u32::try_from(n).map_err(|_| bad());
        Ok(match (record.code.as_str(), record.values.as_slice()) {
            ("not-granted", []) => Self::NotGranted,
            ("isolation", []) => Self::Isolation,
            ("nip04-peer", []) => Self::Nip04NeedsPeer,
            ("expired", [at]) => Self::Expired { at: unsigned(*at)? },
            ("used-up", [uses]) => Self::UsedUp {
                uses: unsigned(*uses)?,
            },
            ("rate-limited", [count, window, retry_in]) => Self::RateLimited {
                rate: Rate {
                    count: small(*count)?,
                    window: small(*window)?,
                },
                retry_in: unsigned(*retry_in)?,
            },
            ("created-at", [window, offset]) => Self::CreatedAtOutOfWindow {
                window: unsigned(*window)?,
                offset: *offset,
            },
            _ => return Err(bad()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::{Action, Decision, Method, Perms};

    #[test]
    fn a_restored_grant_decides_as_the_old_one_would() {
        let mut policy = Policy::from_json(
            r#"{"perms":"sign_event:1","uses":5,"rate":"2/10s","ttl":3600,"created_at_window":"none"}"#,
        )
        .unwrap();
        policy.perms = Perms::parse("sign_event:1").unwrap();
        let mut grant = Grant::new(&policy, None, 1000);
        let sign = Action {
            kind: Some(1),
            ..Action::method(Method::SignEvent)
        };
        assert_eq!(grant.decide(&sign, 1000), Decision::Allowed);
        assert_eq!(grant.decide(&sign, 1001), Decision::Allowed);
        let record = grant.to_record();
        let mut restored = Grant::from_record(&record).unwrap();
        assert_eq!(restored.to_record(), record);
        // The rate window remembers both requests; the uses count on.
        assert!(matches!(
            restored.decide(&sign, 1002),
            Decision::Refused(Refusal::RateLimited { .. })
        ));
        assert_eq!(restored.decide(&sign, 1011), Decision::Allowed);
        assert_eq!(restored.used(), 3);
        assert!(matches!(
            restored.decide(&sign, 1000 + 3600),
            Decision::Refused(Refusal::Expired { at: 4600 })
        ));
        let lifetime = GrantRecord {
            policy: r#"{"perms":"full","ttl":60}"#.into(),
            ..record
        };
        assert!(Grant::from_record(&lifetime).is_err());
    }

    #[test]
    fn a_grant_narrowed_past_what_an_owner_may_write_is_restored() {
        // The owner grants four methods and 13 kinds apart; the app asks
        // for any kind and 51 peers. The grant spells out 13 kinds and 51
        // peers: 64 perms, more text than an owner's perms may have.
        let kinds: Vec<String> = (0..13)
            .map(|i| format!("sign_event:{}", 10_000 + 2 * i))
            .collect();
        let owner = format!(
            "nip04_encrypt,nip04_decrypt,nip44_encrypt,nip44_decrypt,{}",
            kinds.join(",")
        );
        let policy = Policy::new(Perms::parse(&owner).unwrap());
        let peers: Vec<String> = (0..51)
            .map(|_| {
                format!(
                    "nip04_decrypt:{}",
                    nostr::Keys::generate().public_key().to_hex()
                )
            })
            .collect();
        let asked = Perms::parse_requested(&format!("sign_event,{}", peers.join(","))).unwrap();
        let grant = Grant::new(&policy, Some(&asked), 1000);
        let text = grant.policy().perms.to_string();
        assert!(
            text.len() > crate::grant::perms::MAX_PERMS_TEXT,
            "{}",
            text.len()
        );
        let record = grant.to_record();
        let restored = Grant::from_record(&record).unwrap();
        assert_eq!(restored.to_record(), record);
        assert_eq!(restored.policy(), grant.policy());
    }

    #[test]
    fn refusals_round_trip_and_mismatched_records_are_refused() {
        let all = [
            Refusal::NotGranted,
            Refusal::Isolation,
            Refusal::Nip04NeedsPeer,
            Refusal::Expired { at: 7 },
            Refusal::UsedUp { uses: 9 },
            Refusal::RateLimited {
                rate: Rate {
                    count: 5,
                    window: 10,
                },
                retry_in: 3,
            },
            Refusal::CreatedAtOutOfWindow {
                window: 600,
                offset: -900,
            },
        ];
        for refusal in all {
            assert_eq!(Refusal::from_record(&refusal.to_record()), Ok(refusal));
        }
        for (code, values) in [
            ("expired", vec![]),
            ("expired", vec![-1]),
            ("not-granted", vec![1]),
            ("rate-limited", vec![1, 1 << 40, 1]),
            ("unknown", vec![]),
        ] {
            let record = RefusalRecord {
                code: code.into(),
                values,
            };
            assert!(Refusal::from_record(&record).is_err(), "{record:?}");
        }
    }
}
