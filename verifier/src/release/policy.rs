//! Whom to trust for releases: `k` of a list of maintainers, and the lowest
//! version accepted. The project's `release-policy.json` is built into the
//! enclave image (covered by PCR0/2, so no launcher can change it) and into
//! the `verifier` binary; clients can give their own with
//! `--release-signer`, `--threshold` and `--min-version`.
//!
//! ```json
//! { "repository": "https://github.com/…",
//!   "maintainers": ["npub1…", "npub1…", "npub1…"],
//!   "threshold": 2,
//!   "min_version": "0.1.0" }
//! ```
//!
//! A policy with no maintainers and threshold 0 says that nothing has been
//! released under it yet: every release check against it fails.

use std::collections::{BTreeMap, BTreeSet};

use nostr::PublicKey;
use semver::Version;
use serde::Deserialize;

use super::signature::{parse_version, ReleaseSignature};
use crate::error::{malformed, Error};
use crate::event::{npub, Mode};
use crate::pcr::Pcr;

/// Cap on the size of a `release-policy.json`.
pub const MAX_POLICY_JSON: usize = 16 * 1024;
/// Most maintainers a policy (or a command line) may name.
pub const MAX_MAINTAINERS: usize = 64;

/// Trusted maintainers, how many of them must sign, and the version floor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseTrust {
    signers: Vec<PublicKey>,
    threshold: usize,
    min_version: Option<Version>,
}

/// The project's release policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasePolicy {
    /// Where the source is (`r` of its releases; informative).
    pub repository: String,
    /// The maintainers, the threshold and the version floor.
    pub trust: ReleaseTrust,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    repository: String,
    maintainers: Vec<String>,
    threshold: usize,
    min_version: String,
}

/// A release that the trust accepts: the version and who signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The version the signers agree on (`v`).
    pub version: Version,
    /// The repository they name (`r`).
    pub repo: String,
    /// The trusted maintainers who signed, each once.
    pub signers: Vec<PublicKey>,
    /// How many were needed.
    pub threshold: usize,
}

impl ReleaseTrust {
    /// `threshold` of `signers` (npub or hex), at or above `min_version`.
    /// The threshold must be between 1 and the number of distinct signers.
    pub fn new(
        signers: &[String],
        threshold: usize,
        min_version: Option<&str>,
    ) -> Result<Self, Error> {
        if signers.len() > MAX_MAINTAINERS {
            return Err(Error::TooLarge {
                what: "list of release signers",
                size: signers.len(),
                max: MAX_MAINTAINERS,
            });
        }
        let mut keys: Vec<PublicKey> = Vec::with_capacity(signers.len());
        for s in signers {
            let key = PublicKey::parse(s.trim()).map_err(|_| {
                malformed("release signer", format!("{s:?} is not an npub or hex key"))
            })?;
            if keys.contains(&key) {
                return Err(malformed(
                    "release signers",
                    format!("{} is named twice", npub(&key)),
                ));
            }
            keys.push(key);
        }
        if threshold == 0 || threshold > keys.len() {
            return Err(malformed(
                "release threshold",
                format!(
                    "{threshold} is not between 1 and the number of release signers ({})",
                    keys.len()
                ),
            ));
        }
        Ok(Self {
            signers: keys,
            threshold,
            min_version: min_version.map(parse_version).transpose()?,
        })
    }

    /// The trusted maintainers.
    pub fn signers(&self) -> &[PublicKey] {
        &self.signers
    }

    /// How many must sign.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The lowest version accepted, if any.
    pub fn min_version(&self) -> Option<&Version> {
        self.min_version.as_ref()
    }

    /// The release that `signatures` make of an image attested with
    /// `attested` PCRs, for an instance in `mode`: at least `threshold`
    /// trusted maintainers signed its PCR0/1/2 as the same version of the
    /// same repository. Unless `mode` is dev, only `t=prod` signatures
    /// count. With `claimed`, only signatures of that version and
    /// repository count (what the code or its announcement says it is);
    /// without, the highest version that has enough. The error says how
    /// many signed and why each other signature did not count.
    pub fn release(
        &self,
        signatures: &[ReleaseSignature],
        attested: &BTreeMap<u8, Pcr>,
        mode: Mode,
        claimed: Option<(&Version, &str)>,
    ) -> Result<Release, Error> {
        let mut groups: BTreeMap<(&Version, &str), BTreeSet<PublicKey>> = BTreeMap::new();
        let mut refused: Vec<String> = Vec::new();
        for s in signatures {
            let who = npub(&s.event().pubkey);
            if !self.signers.contains(&s.event().pubkey) {
                refused.push(format!("{who} is not a trusted maintainer"));
            } else if !s.signs(attested) {
                refused.push(format!(
                    "{who} signed other measurements (PCR0 {})",
                    s.pcrs()[0]
                ));
            } else if mode != Mode::Dev && s.mode() != Mode::Prod {
                refused.push(format!(
                    "{who} signed a {} release, where only prod releases count",
                    s.mode()
                ));
            } else if let Some((version, repo)) =
                claimed.filter(|(v, r)| s.version() != *v || s.repo() != *r)
            {
                refused.push(format!(
                    "{who} signed version {} of {}, not version {version} of {repo}",
                    s.version(),
                    s.repo()
                ));
            } else {
                groups
                    .entry((s.version(), s.repo()))
                    .or_default()
                    .insert(s.event().pubkey);
            }
        }
        let best = groups
            .iter()
            .filter(|(_, who)| who.len() >= self.threshold)
            .max_by(|a, b| a.0 .0.cmp(b.0 .0));
        if let Some(((version, repo), who)) = best {
            return Ok(Release {
                version: (*version).clone(),
                repo: (*repo).to_owned(),
                signers: who.iter().copied().collect(),
                threshold: self.threshold,
            });
        }
        let most = groups.values().map(BTreeSet::len).max().unwrap_or(0);
        let mut detail = format!(
            "{most} of the {} trusted maintainer signatures needed sign these measurements{}",
            self.threshold,
            if mode == Mode::Dev { "" } else { " for prod" }
        );
        if let Some((version, _)) = claimed {
            detail.push_str(&format!(" as version {version}"));
        }
        if groups.len() > 1 {
            detail.push_str(" with one version (they name different versions or repositories)");
        }
        if signatures.is_empty() {
            detail.push_str("; no release signature was given");
        }
        for why in refused.iter().take(8) {
            detail.push_str("; ");
            detail.push_str(why);
        }
        Err(Error::NotReleased(detail))
    }

    /// The release's version is at or above the floor, if there is one.
    pub fn check_version(&self, release: &Release) -> Result<(), Error> {
        match &self.min_version {
            Some(min) if release.version < *min => Err(Error::NotReleased(format!(
                "version {} is below the lowest accepted, {min}",
                release.version
            ))),
            _ => Ok(()),
        }
    }
}

impl ReleasePolicy {
    /// Parses a `release-policy.json`, capped at [`MAX_POLICY_JSON`].
    pub fn from_json(input: &[u8]) -> Result<Self, Error> {
        if input.len() > MAX_POLICY_JSON {
            return Err(Error::TooLarge {
                what: "release policy",
                size: input.len(),
                max: MAX_POLICY_JSON,
            });
        }
        let file: PolicyFile =
            serde_json::from_slice(input).map_err(|e| malformed("release policy", e))?;
        parse_version(&file.min_version)?;
        if file.maintainers.is_empty() && file.threshold == 0 {
            return Ok(Self {
                repository: file.repository,
                trust: ReleaseTrust {
                    signers: Vec::new(),
                    threshold: 0,
                    min_version: Some(parse_version(&file.min_version)?),
                },
            });
        }
        Ok(Self {
            repository: file.repository,
            trust: ReleaseTrust::new(&file.maintainers, file.threshold, Some(&file.min_version))?,
        })
    }

    /// The file's JSON.
    pub fn to_json(&self) -> String {
        let file = serde_json::json!({
            "repository": self.repository,
            "maintainers": self.trust.signers.iter().map(npub).collect::<Vec<_>>(),
            "threshold": self.trust.threshold,
            "min_version": self.trust.min_version.as_ref().map(Version::to_string).unwrap_or_else(|| "0.0.0".into()),
        });
        serde_json::to_string_pretty(&file).unwrap_or_default() + "\n"
    }

    /// What names this policy in sealed state: SHA-256 over a domain and
    /// each field, length-prefixed, with the maintainers sorted, so that
    /// the same policy always has the same digest and two policies never
    /// share one.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        };
        field(b"enclaved-release-policy/1");
        field(self.repository.as_bytes());
        let mut signers: Vec<[u8; 32]> = self.trust.signers.iter().map(|k| k.to_bytes()).collect();
        signers.sort_unstable();
        field(&(signers.len() as u64).to_be_bytes());
        for signer in &signers {
            field(signer);
        }
        field(&(self.trust.threshold as u64).to_be_bytes());
        let floor = self.trust.min_version.as_ref().map(Version::to_string);
        field(floor.as_deref().unwrap_or("").as_bytes());
        hasher.finalize().into()
    }

    /// Whether the policy names no maintainer: nothing is released under it.
    pub fn is_empty(&self) -> bool {
        self.trust.signers.is_empty()
    }

    /// The trust, or why there is none (an empty policy).
    pub fn trust(&self) -> Result<&ReleaseTrust, Error> {
        if self.is_empty() {
            Err(Error::NotReleased(
                "the release policy names no maintainers yet: nothing is released under it".into(),
            ))
        } else {
            Ok(&self.trust)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(maintainers: &[String], threshold: usize, floor: &str) -> ReleasePolicy {
        let json = serde_json::json!({
            "repository": "https://example.org/enclaved",
            "maintainers": maintainers,
            "threshold": threshold,
            "min_version": floor,
        });
        ReleasePolicy::from_json(json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn the_digest_names_a_policy_and_nothing_else() {
        let keys: Vec<String> = (0..3)
            .map(|_| nostr::Keys::generate().public_key().to_hex())
            .collect();
        let reversed: Vec<String> = keys.iter().rev().cloned().collect();
        let base = policy(&keys, 2, "1.0.0");
        assert_eq!(base.digest(), policy(&reversed, 2, "1.0.0").digest());
        assert_eq!(
            base.digest(),
            ReleasePolicy::from_json(base.to_json().as_bytes())
                .unwrap()
                .digest()
        );
        let others = [
            policy(&keys, 3, "1.0.0"),
            policy(&keys, 2, "1.0.1"),
            policy(&keys[..2], 2, "1.0.0"),
            policy(&[], 0, "1.0.0"),
            ReleasePolicy {
                repository: "https://example.org/other".into(),
                ..base.clone()
            },
        ];
        for other in others {
            assert_ne!(base.digest(), other.digest(), "{other:?}");
        }
    }
}
