//! Throw-away maintainers for a local stack: keys generated here and never
//! written down, a release policy naming them (k of n), and their release
//! signatures (kind 63794) of the dev enclave's measurements, so that the
//! whole release path (the enclave's check at start-up, the announcement's
//! `release` tags, `verifier --release-signer`) runs without real ones.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nostr::{Event, JsonUtil, Keys, Timestamp};
use verifier::event::{npub, Mode};
use verifier::pcr::{Measurements, Pcr};
use verifier::release::{parse_version, ReleasePolicy, ReleaseSignature, ReleaseTrust};

/// The dev maintainers and their policy.
#[derive(Debug, Clone)]
pub struct DevMaintainers {
    keys: Vec<Keys>,
    /// The policy naming them.
    pub policy: ReleasePolicy,
}

impl DevMaintainers {
    /// `n` fresh maintainers of whom `threshold` must sign, with `min_version`.
    pub fn generate(n: usize, threshold: usize, min_version: &str) -> Result<Self> {
        Self::with_keys(
            (0..n).map(|_| Keys::generate()).collect(),
            threshold,
            min_version,
        )
    }

    /// These maintainers (kept from an earlier run), `threshold` of whom
    /// must sign, with `min_version`.
    pub fn with_keys(keys: Vec<Keys>, threshold: usize, min_version: &str) -> Result<Self> {
        let npubs: Vec<String> = keys.iter().map(|k| npub(&k.public_key())).collect();
        let policy = ReleasePolicy {
            repository: env!("CARGO_PKG_REPOSITORY").to_owned(),
            trust: ReleaseTrust::new(&npubs, threshold, Some(min_version))?,
        };
        Ok(Self { keys, policy })
    }

    /// The maintainers' npubs.
    pub fn npubs(&self) -> Vec<String> {
        self.keys.iter().map(|k| npub(&k.public_key())).collect()
    }

    /// Release signatures by the first `signers` maintainers of the image
    /// with `measurements`' PCR0/1/2, as `version`, for `mode`, at `now`.
    pub fn sign(
        &self,
        signers: usize,
        measurements: &Measurements,
        version: &str,
        mode: Mode,
        now: u64,
    ) -> Result<Vec<Event>> {
        let pcr = |i: u8| -> Result<Pcr> {
            measurements
                .get(i)
                .copied()
                .with_context(|| format!("the measurements have no PCR{i}"))
        };
        let pcrs = [pcr(0)?, pcr(1)?, pcr(2)?];
        let version = parse_version(version)?;
        self.keys
            .iter()
            .take(signers)
            .map(|k| {
                Ok(
                    ReleaseSignature::builder(&self.policy.repository, &version, mode, &pcrs)?
                        .custom_created_at(Timestamp::from_secs(now))
                        .sign_with_keys(k)?,
                )
            })
            .collect()
    }
}

/// Writes `events` as `dir/<version>/<npub>.json`, as `parent sign-release`
/// does; returns the version directory (for `parent run --release-dir`).
pub fn write_releases(dir: &Path, version: &str, events: &[Event]) -> Result<PathBuf> {
    let out = dir.join(version);
    std::fs::create_dir_all(&out).with_context(|| format!("{}", out.display()))?;
    for event in events {
        let path = out.join(format!("{}.json", npub(&event.pubkey)));
        std::fs::write(&path, event.as_json()).with_context(|| format!("{}", path.display()))?;
    }
    Ok(out)
}
