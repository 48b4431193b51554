//! Choosing instances from a set of kind 63793 events fetched from relays:
//! every event is verified; the invalid ones are kept with the reason; of
//! the valid ones, only the newest per service key is an instance. A valid
//! event whose builder or launcher is not among those the caller accepts is
//! refused too, with that reason.

use std::collections::BTreeMap;

use nostr::{Event, PublicKey};

use crate::event::npub;
use crate::verify::{verify_instance, Options, VerifiedInstance};

/// Whom to accept as builder and launcher; empty means anyone.
#[derive(Debug, Clone, Default)]
pub struct Accept {
    /// Accepted builders.
    pub builders: Vec<PublicKey>,
    /// Accepted launchers.
    pub launchers: Vec<PublicKey>,
}

/// An event that is not a usable instance.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The event.
    pub event: Event,
    /// The failed check (its name), or `builder`/`launcher` for the filters.
    pub check: String,
    /// Why.
    pub reason: String,
}

/// What a set of events holds.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// The newest valid event of each service key, newest first.
    pub instances: Vec<VerifiedInstance>,
    /// Valid events superseded by a newer one of the same service key.
    pub superseded: usize,
    /// Events that failed verification or the filters.
    pub refused: Vec<Refused>,
}

impl Discovery {
    /// Verifies each of `events` with `options` and sorts them out.
    pub fn from_events<'a>(
        events: impl IntoIterator<Item = &'a Event>,
        options: &Options,
        accept: &Accept,
    ) -> Self {
        let mut newest: BTreeMap<PublicKey, VerifiedInstance> = BTreeMap::new();
        let mut discovery = Self::default();
        // Instances share AWS's intermediates and their builders'
        // certificates: those are checked once per run.
        let mut options = options.clone();
        options
            .cache
            .get_or_insert_with(|| std::sync::Arc::new(crate::cache::VerifyCache::new()));
        for event in events {
            let report = verify_instance(event, &options);
            let Some(instance) = report.verified() else {
                let (check, reason) = match report.first_failure() {
                    Some(f) => (f.check.name().to_owned(), f.outcome.to_string()),
                    None => ("unknown".to_owned(), "not verified".to_owned()),
                };
                discovery.refused.push(Refused {
                    event: event.clone(),
                    check,
                    reason,
                });
                continue;
            };
            if let Some(refusal) = filter(instance, accept) {
                discovery.refused.push(refusal);
                continue;
            }
            match newest.get(&event.pubkey) {
                Some(old) if old.event.created_at >= event.created_at => discovery.superseded += 1,
                Some(_) => {
                    discovery.superseded += 1;
                    newest.insert(event.pubkey, instance.clone());
                }
                None => {
                    newest.insert(event.pubkey, instance.clone());
                }
            }
        }
        discovery.instances = newest.into_values().collect();
        discovery
            .instances
            .sort_by_key(|i| std::cmp::Reverse(i.event.created_at));
        discovery
    }
}

impl Accept {
    /// Whether `instance`'s builder and launcher are accepted; `Err` names
    /// the filter that refused it (`builder` or `launcher`) and why.
    pub fn check(&self, instance: &VerifiedInstance) -> Result<(), (&'static str, String)> {
        let builder = instance.build.event().pubkey;
        if !self.builders.is_empty() && !self.builders.contains(&builder) {
            return Err((
                "builder",
                format!("built by {}, not one of --builder", npub(&builder)),
            ));
        }
        let launcher = instance.instance.event().pubkey;
        if !self.launchers.is_empty() && !self.launchers.contains(&launcher) {
            return Err((
                "launcher",
                format!("launched by {}, not one of --launcher", npub(&launcher)),
            ));
        }
        Ok(())
    }
}

fn filter(instance: &VerifiedInstance, accept: &Accept) -> Option<Refused> {
    accept.check(instance).err().map(|(check, reason)| Refused {
        event: instance.event.clone(),
        check: check.to_owned(),
        reason,
    })
}
