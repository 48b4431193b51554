//! The announcements: the kind 63793 instance event and, for NECS clients,
//! the kind 13793 announcement with its 23793 tee_root, both over one fresh
//! attestation each time, each checked with the verifier library before it
//! leaves (a self-check: the enclave never publishes what a client would
//! refuse), published to the announce relays and the admin relay, repeated
//! on a schedule and retried with backoff when relays fail. Both carry the
//! maintainers' release signatures of the enclave's image.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nostr::{Event, JsonUtil, Keys, RelayUrl};
use nostr_sdk::Client;
use tracing::{info, warn};
use verifier::event::continuity::Continuity;
use verifier::event::instance::InstanceEvent;
use verifier::event::tee_root::TeeRoot;
use verifier::verify::{verify_instance, CheckTime, Options};

use crate::attester::Attester;
use crate::startup::{attest, Admitted};

/// Longest an instance event is valid for; the leaf certificate may end it sooner.
pub const MAX_VALIDITY_SECS: u64 = 3 * 3600;

/// How and where to announce.
#[derive(Debug, Clone)]
pub struct AnnounceConfig {
    /// Where the admin API listens (`relay` tag); the event goes there too.
    pub admin_relay: RelayUrl,
    /// Time between announcements.
    pub interval: Duration,
    /// First delay before retrying failed relays; doubles up to `retry_max`.
    pub retry_initial: Duration,
    /// Longest delay between retries.
    pub retry_max: Duration,
    /// Where to write each published 63793 event (JSON), for operators and
    /// the dev stack. Events hold no secrets.
    pub event_file: Option<PathBuf>,
    /// Where to write each published 13793 announcement (JSON).
    pub announcement_file: Option<PathBuf>,
    /// The key continuity both events say (state, custodians, a reset),
    /// if any; [`Announced::update`] changes it and announces at once.
    pub continuity: Announced,
}

/// The key continuity announced, shared with whoever learns it (the
/// restore says whether the state was started over).
#[derive(Debug, Clone, Default)]
pub struct Announced {
    continuity: Arc<std::sync::Mutex<Option<Continuity>>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Announced {
    /// Announcing `continuity`.
    pub fn new(continuity: Option<Continuity>) -> Self {
        Self {
            continuity: Arc::new(std::sync::Mutex::new(continuity)),
            changed: Arc::default(),
        }
    }

    /// What is announced now.
    pub fn get(&self) -> Option<Continuity> {
        self.continuity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Announces `continuity` from now on, starting with a round at once.
    pub fn update(&self, continuity: Option<Continuity>) {
        *self
            .continuity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = continuity;
        self.changed.notify_one();
    }
}

/// The two events of one round, over the same attestation.
#[derive(Debug, Clone)]
pub struct Announcements {
    /// Kind 63793.
    pub instance: Event,
    /// Kind 13793, with its tee_root.
    pub announcement: Event,
}

/// Why no event could be made.
#[derive(Debug)]
pub struct AnnounceError(pub String);

impl std::fmt::Display for AnnounceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AnnounceError {}

/// The instance event's `expiration`: the earlier of `now` + 3 hours and
/// the attestation leaf's notAfter; `None` if that is not after `now`.
pub fn expiration(now: u64, leaf_not_after: i64) -> Option<u64> {
    let leaf = u64::try_from(leaf_not_after).ok()?;
    let expiration = now.saturating_add(MAX_VALIDITY_SECS).min(leaf);
    (expiration > now).then_some(expiration)
}

/// Makes and self-checks the instance event and the announcement at `now`.
pub async fn instance_event(
    attester: &Arc<dyn Attester>,
    keys: &Keys,
    admitted: &Admitted,
    admin_relay: &RelayUrl,
    continuity: Option<&Continuity>,
    now: u64,
) -> Result<Announcements, AnnounceError> {
    let extra = continuity
        .map(Continuity::tags)
        .transpose()
        .map_err(|e| AnnounceError(format!("the continuity tags: {e}")))?
        .unwrap_or_default();
    let (document, attestation) = attest(attester, keys, now)
        .await
        .map_err(|e| AnnounceError(e.to_string()))?;
    // The events are made and self-checked at the document's time or
    // later, never before its leaf starts.
    let now = now.max(crate::unix_now());
    let doc = attestation.doc();
    let expiration = expiration(now, attestation.leaf_not_after())
        .ok_or_else(|| AnnounceError("the attestation's certificate has already expired".into()))?;
    let mode = admitted
        .signatures
        .instance_mode(&attestation, admitted.prod)
        .map_err(|e| AnnounceError(e.to_string()))?;
    let alt = format!("{} instance", crate::SOFTWARE_NAME);
    let releases: Vec<Event> = admitted
        .release
        .signatures
        .iter()
        .map(|s| s.event().clone())
        .collect();
    let fields = InstanceEvent {
        repo: crate::SOURCE_REPOSITORY,
        name: crate::SOFTWARE_NAME,
        version: crate::software_version(),
        module_id: &doc.module_id,
        pcrs: &doc.pcrs,
        mode,
        admin_relay: admin_relay.as_str(),
        expiration,
        alt: &alt,
        build: admitted.signatures.build.event(),
        instance: admitted.signatures.instance.event(),
        releases: &releases,
        attestation: &document,
        created_at: now,
    };
    let sign_error = |what: &str, e: &dyn std::fmt::Display| {
        AnnounceError(format!("cannot sign the {what}: {e}"))
    };
    let instance = fields
        .builder()
        .map_err(|e| AnnounceError(e.to_string()))?
        .tags(extra.clone())
        .sign_with_keys(keys)
        .map_err(|e| sign_error("instance event", &e))?;
    let tee_root = TeeRoot::builder(&document, mode, expiration, now)
        .map_err(|e| AnnounceError(e.to_string()))?
        .sign_with_keys(keys)
        .map_err(|e| sign_error("tee_root event", &e))?;
    let announcement = fields
        .announcement_builder(&tee_root)
        .map_err(|e| AnnounceError(e.to_string()))?
        .tags(extra)
        .sign_with_keys(keys)
        .map_err(|e| sign_error("announcement", &e))?;
    let mut options = Options::new(attester.root(), CheckTime::At(now));
    // An enclave in debug mode says so (t=debug); clients decide.
    options.allow_debug = true;
    for event in [&instance, &announcement] {
        // What clients parse is capped: one they would refuse unread is
        // not published either.
        let size = JsonUtil::as_json(event).len();
        if size > verifier::event::MAX_EVENT_JSON {
            return Err(AnnounceError(format!(
                "kind {} would be {size} bytes, more than the {} clients read; not publishing",
                event.kind.as_u16(),
                verifier::event::MAX_EVENT_JSON
            )));
        }
        let report = verify_instance(event, &options);
        if let Some(failure) = report.first_failure() {
            return Err(AnnounceError(format!(
                "self-check of kind {} failed, not publishing: {}: {}",
                event.kind.as_u16(),
                failure.check.name(),
                failure.outcome
            )));
        }
    }
    Ok(Announcements {
        instance,
        announcement,
    })
}

/// Every relay the event goes to: the announce relays and the admin relay.
pub fn targets(admitted: &Admitted, config: &AnnounceConfig) -> Vec<RelayUrl> {
    let mut seen = HashSet::new();
    admitted
        .announce_relays
        .iter()
        .chain(std::iter::once(&config.admin_relay))
        .filter(|u| seen.insert((*u).clone()))
        .cloned()
        .collect()
}

/// Announces forever: a fresh event every `interval`, failed relays retried
/// with backoff until the next one is due.
pub async fn run(
    attester: Arc<dyn Attester>,
    keys: Keys,
    admitted: Admitted,
    config: AnnounceConfig,
    client: Client,
    custody: Option<Arc<crate::continuity::client::CustodyClient>>,
) {
    let relays = targets(&admitted, &config);
    for url in &relays {
        if let Err(e) = client.add_relay(url.clone()).await {
            warn!(%url, "cannot add relay: {e}");
        }
    }
    client.connect().await;
    loop {
        let round = tokio::time::Instant::now();
        let next = round + config.interval;
        let mut delay = config.retry_initial;
        let event = loop {
            match instance_event(
                &attester,
                &keys,
                &admitted,
                &config.admin_relay,
                config.continuity.get().as_ref(),
                crate::unix_now(),
            )
            .await
            {
                Ok(event) => break Some(event),
                Err(e) => {
                    warn!("cannot make the instance event: {e}; retrying in {delay:?}");
                    if tokio::time::Instant::now() + delay >= next {
                        break None;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(config.retry_max);
                }
            }
        };
        if let Some(events) = event {
            write_files(&events, &config);
            // Custodians check the current one with every new requester.
            if let Some(custody) = &custody {
                custody.set_instance(events.instance.as_json());
            }
            let now = tokio::time::Instant::now();
            let half = now + next.saturating_duration_since(now) / 2;
            publish_until_done(&client, &relays, &events.instance, &config, half).await;
            publish_until_done(&client, &relays, &events.announcement, &config, next).await;
        }
        // A change of what is announced (a restore found the state was
        // started over) is announced at once.
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = config.continuity.changed.notified() => {}
        }
    }
}

fn write_files(events: &Announcements, config: &AnnounceConfig) {
    for (file, event) in [
        (&config.event_file, &events.instance),
        (&config.announcement_file, &events.announcement),
    ] {
        if let Some(path) = file {
            if let Err(e) = write_atomically(path, &event.as_json()) {
                warn!("cannot write {}: {e}", path.display());
            }
        }
    }
}

/// Publishes `event` until every relay took it or `deadline`. The 63793
/// event of a round gets half of the time left, so a failing relay cannot
/// keep the 13793 one from being sent.
async fn publish_until_done(
    client: &Client,
    relays: &[RelayUrl],
    event: &Event,
    config: &AnnounceConfig,
    deadline: tokio::time::Instant,
) {
    let mut pending: Vec<RelayUrl> = relays.to_vec();
    let mut delay = config.retry_initial;
    loop {
        let output = client.send_event_to(pending.clone(), event).await;
        let failed: Vec<RelayUrl> = match output {
            Ok(output) => {
                for url in &output.success {
                    info!(id = %event.id, relay = %url, "instance event published");
                }
                for (url, why) in &output.failed {
                    warn!(id = %event.id, relay = %url, "instance event not published: {why}");
                }
                pending
                    .iter()
                    .filter(|u| !output.success.contains(*u))
                    .cloned()
                    .collect()
            }
            Err(e) => {
                warn!(id = %event.id, "instance event not published: {e}");
                pending.clone()
            }
        };
        if failed.is_empty() {
            return;
        }
        if tokio::time::Instant::now() + delay >= deadline {
            warn!(
                id = %event.id,
                "{} relay(s) still failing; a fresh event is due next",
                failed.len()
            );
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(config.retry_max);
        pending = failed;
    }
}

fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_is_the_earlier_of_three_hours_and_the_leaf() {
        let now = 1_000_000;
        assert_eq!(expiration(now, 2_000_000), Some(now + MAX_VALIDITY_SECS));
        assert_eq!(expiration(now, 1_000_100), Some(1_000_100));
        assert_eq!(expiration(now, 1_000_000), None);
        assert_eq!(expiration(now, -1), None);
    }
}
