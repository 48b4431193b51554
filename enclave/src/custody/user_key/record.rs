//! A held key as sealed state keeps it ([`verifier::state::record`]):
//! everything it carries, so that a restored key answers its apps, its
//! owner and nsec.app's events as the old one would have.

use std::collections::{HashMap, VecDeque};

use nostr::{PublicKey, SecretKey};
use verifier::grant::Policy;
use verifier::state::record::{
    Key, KeyRecord, LifeRecord, NsecAppRecord, PendingRecord, SecretBytes, SecretString,
};
use zeroize::Zeroizing;

use super::super::apps::{App, Pending};
use super::super::relay_lists::RelayList;
use super::{Life, NsecRecord, SecretEnd, Sessions, UserKey};

impl SecretEnd {
    fn name(self) -> &'static str {
        match self {
            Self::Spent => "spent",
            Self::Expired => "expired",
            Self::Dropped => "dropped",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Self::Spent, Self::Expired, Self::Dropped]
            .into_iter()
            .find(|e| e.name() == name)
    }
}

impl UserKey {
    /// The key as sealed state keeps it.
    pub(in crate::custody) fn to_record(&self) -> KeyRecord {
        let life = match self.life {
            Life::Test { expires_at } => LifeRecord::Test { expires_at },
            Life::Owned {
                imported,
                last_used,
            } => LifeRecord::Owned {
                imported,
                last_used,
            },
        };
        let mut record = KeyRecord {
            secret: SecretBytes(Zeroizing::new(self.secret.secret_bytes())),
            relays: self.relays.iter().map(|r| r.to_string()).collect(),
            life,
            apps: Vec::new(),
            secrets: Vec::new(),
            relay_changes: Vec::new(),
            nsec_app: Vec::new(),
            owner_at: Vec::new(),
            owner_floor: 0,
            nsec_floor: 0,
            ended_secrets: Vec::new(),
        };
        let Some(s) = self.sessions() else {
            return record;
        };
        record.apps = s.apps.iter().map(|(k, a)| a.to_record(k)).collect();
        record.secrets = s
            .secrets
            .iter()
            .map(|p| PendingRecord {
                secret: SecretString(p.secret.clone()),
                until: p.until,
                policy: p.policy.to_json(),
            })
            .collect();
        record.relay_changes = s.relay_changes.iter().copied().collect();
        record.nsec_app = s
            .nsec_app
            .iter()
            .map(|(app, r)| NsecAppRecord {
                app: Key(app.to_bytes()),
                updated: r.updated,
                perms_updated: r.perms_updated,
                deleted: r.deleted,
                owner_at: r.owner_at,
            })
            .collect();
        record.owner_at = s
            .owner_at
            .iter()
            .map(|(app, t)| (Key(app.to_bytes()), *t))
            .collect();
        record.owner_floor = s.owner_floor;
        record.nsec_floor = s.nsec_floor;
        record.ended_secrets = s
            .ended_secrets
            .iter()
            .map(|(f, e)| (u64::from_be_bytes(*f), e.name().to_owned()))
            .collect();
        record
    }

    /// The key a record keeps, on `relays` (the store shares the list),
    /// its public key, and how many of its apps and pending secrets did
    /// not read and were left out. Those fail closed: an app loses its
    /// access, its owner can grant it again; one unreadable grant never
    /// keeps every other key from coming back.
    pub(in crate::custody) fn from_record(
        record: &KeyRecord,
        relays: RelayList,
    ) -> Result<(PublicKey, Self, usize), String> {
        let secret = SecretKey::from_slice(record.secret.0.as_slice())
            .map_err(|e| format!("a key's secret: {e}"))?;
        let pubkey = super::signing_keys(secret.clone()).public_key();
        let life = match record.life {
            LifeRecord::Test { expires_at } => Life::Test { expires_at },
            LifeRecord::Owned {
                imported,
                last_used,
            } => Life::Owned {
                imported,
                last_used,
            },
        };
        let mut key = Self {
            secret: Box::new(secret),
            relays,
            life,
            sessions: None,
        };
        let has_sessions = !record.apps.is_empty()
            || !record.secrets.is_empty()
            || !record.relay_changes.is_empty()
            || !record.nsec_app.is_empty()
            || !record.owner_at.is_empty()
            || record.owner_floor > 0
            || record.nsec_floor > 0
            || !record.ended_secrets.is_empty();
        if !has_sessions {
            return Ok((pubkey, key, 0));
        }
        let mut dropped = 0;
        let mut apps = HashMap::with_capacity(record.apps.len());
        for a in &record.apps {
            match App::from_record(a) {
                Ok((app, restored)) => {
                    apps.insert(app, restored);
                }
                Err(_) => dropped += 1,
            }
        }
        let mut secrets = Vec::with_capacity(record.secrets.len());
        for p in &record.secrets {
            match Policy::from_stored_json(&p.policy) {
                Ok(policy) => secrets.push(Pending {
                    secret: Zeroizing::new(p.secret.0.as_str().to_owned()),
                    until: p.until,
                    policy,
                }),
                Err(_) => dropped += 1,
            }
        }
        let key_of = |k: &Key| PublicKey::from_slice(&k.0).map_err(|e| format!("an app: {e}"));
        let mut nsec_app = HashMap::with_capacity(record.nsec_app.len());
        for r in &record.nsec_app {
            nsec_app.insert(
                key_of(&r.app)?,
                NsecRecord {
                    updated: r.updated,
                    perms_updated: r.perms_updated,
                    deleted: r.deleted,
                    owner_at: r.owner_at,
                },
            );
        }
        let mut owner_at = HashMap::with_capacity(record.owner_at.len());
        for (app, t) in &record.owner_at {
            owner_at.insert(key_of(app)?, *t);
        }
        let mut ended_secrets = VecDeque::with_capacity(record.ended_secrets.len());
        for (fingerprint, end) in &record.ended_secrets {
            let end = SecretEnd::from_name(end)
                .ok_or_else(|| format!("a bunker secret ended as {end:?}"))?;
            ended_secrets.push_back((fingerprint.to_be_bytes(), end));
        }
        let mut relay_changes: Vec<u64> = record.relay_changes.clone();
        relay_changes.sort_unstable();
        key.sessions = Some(Box::new(Sessions {
            apps,
            secrets,
            relay_changes: relay_changes.into(),
            nsec_app,
            owner_at,
            owner_floor: record.owner_floor,
            nsec_floor: record.nsec_floor,
            ended_secrets,
        }));
        Ok((pubkey, key, dropped))
    }
}
