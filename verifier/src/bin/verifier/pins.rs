//! What code a command trusts: measurements pinned with `--pcrs`, and/or
//! a release by `--threshold` of the `--release-signer` maintainers (at or
//! above `--min-version`). `verifier key`, which sends secrets, also falls
//! back to what this verifier was built with: the project's release policy
//! (`release-policy.json`, once it names maintainers), else the release
//! measurements (`pcrs.json`), else it refuses.

use verifier::pcr::Measurements;
use verifier::release::{ReleasePolicy, ReleaseTrust};

use crate::cli::ReleaseArgs;
use crate::{expected_pcrs, Unusable};

/// The project's release policy, as the enclave image embeds it.
const BUILT_IN_POLICY: &str = include_str!("../../../../release-policy.json");

/// The measurements of the release this verifier was built with
/// (`pcrs.json` at the top of the repository), if one exists.
const RELEASE_PCRS: Option<&str> = include!(concat!(env!("OUT_DIR"), "/release_pcrs.rs"));

/// The code an instance must run.
#[derive(Debug, Default)]
pub(crate) struct CodePins {
    /// PCR0/1/2 (and perhaps PCR8) it must match.
    pub(crate) expected: Option<Measurements>,
    /// Maintainers of whom enough must have released its PCR0/1/2.
    pub(crate) release: Option<ReleaseTrust>,
    /// Whether their dev releases count for a dev instance.
    pub(crate) allow_dev_release: bool,
}

impl CodePins {
    /// Whether anything pins the code.
    pub(crate) fn pins_code(&self) -> bool {
        self.expected.is_some() || self.release.is_some()
    }
}

/// `--pcrs` and the release flags, as given (nothing built in).
pub(crate) fn given(
    pcrs: Option<&std::path::Path>,
    release: &ReleaseArgs,
) -> Result<CodePins, Unusable> {
    Ok(CodePins {
        expected: expected_pcrs(pcrs)?,
        release: release_trust(release)?,
        allow_dev_release: release.allow_dev_release,
    })
}

/// `--release-signer`, `--threshold`, `--min-version`.
fn release_trust(args: &ReleaseArgs) -> Result<Option<ReleaseTrust>, Unusable> {
    if args.signers.is_empty() {
        return Ok(None);
    }
    let threshold = args.threshold.ok_or_else(|| Unusable {
        message: "--release-signer needs --threshold".into(),
        hint: Some("say how many of the signers must have signed the release, e.g. --threshold 2"),
    })?;
    ReleaseTrust::new(&args.signers, threshold, args.min_version.as_deref())
        .map(Some)
        .map_err(|e| Unusable {
            message: format!("--release-signer/--threshold/--min-version: {e}"),
            hint: Some(
                "give each maintainer's npub once with --release-signer, a --threshold between 1 \
                 and their number, and --min-version as semver (1.2.3)",
            ),
        })
}

/// The project's release policy built into this verifier: `None` while it
/// names no maintainers (nothing is released under it yet).
pub(crate) fn built_in_policy() -> Result<Option<ReleasePolicy>, Unusable> {
    let policy = ReleasePolicy::from_json(BUILT_IN_POLICY.as_bytes())
        .map_err(|e| Unusable::from(format!("the built-in release policy: {e}")))?;
    Ok((!policy.is_empty()).then_some(policy))
}

/// For `verifier key`: what was given, else what is built in; `None`
/// only with `--any-code`. Never sends a secret to unpinned code.
pub(crate) fn for_secrets(
    pcrs: Option<&std::path::Path>,
    release: &ReleaseArgs,
    any_code: bool,
) -> Result<Option<CodePins>, Unusable> {
    choose(
        given(pcrs, release)?,
        any_code,
        built_in_policy()?,
        RELEASE_PCRS,
    )
}

/// [`for_secrets`]'s choice, given what is built in: the project's release
/// policy (`None` while it names no maintainers) and release measurements.
fn choose(
    given: CodePins,
    any_code: bool,
    built_in_policy: Option<ReleasePolicy>,
    release_pcrs: Option<&str>,
) -> Result<Option<CodePins>, Unusable> {
    if let Some(m) = &given.expected {
        m.pins_code().map_err(|e| Unusable {
            message: format!("--pcrs: {e}"),
            hint: Some("use the release's pcrs.json from nitro-cli build-enclave, with PCR0, PCR1 and PCR2"),
        })?;
    }
    if given.pins_code() {
        return Ok(Some(given));
    }
    if any_code {
        eprintln!(
            "WARNING: --any-code: the enclave's code is NOT checked. Any genuine Nitro enclave \
             running ANY code, including one built to leak keys, passes. Do not use this with a real key."
        );
        return Ok(None);
    }
    if let Some(policy) = built_in_policy {
        let trust = policy
            .trust()
            .map_err(|e| Unusable::from(format!("the built-in release policy: {e}")))?;
        eprintln!(
            "checking that the enclave runs a release signed by {} of the {} maintainers in this verifier's release policy",
            trust.threshold(),
            trust.signers().len()
        );
        return Ok(Some(CodePins {
            expected: None,
            release: Some(trust.clone()),
            allow_dev_release: false,
        }));
    }
    match release_pcrs {
        Some(json) => {
            let release = Measurements::from_json(json.as_bytes())
                .and_then(|m| m.pins_code().map(|()| m))
                .map_err(|e| Unusable::from(format!("the built-in release measurements: {e}")))?;
            eprintln!("checking the enclave's code against the release measurements built into this verifier");
            Ok(Some(CodePins {
                expected: Some(release),
                release: None,
                allow_dev_release: false,
            }))
        }
        None => Err(Unusable {
            message: "refusing to send a secret without pinned code".into(),
            hint: Some(
                "pass --release-signer NPUB (repeated) with --threshold K to trust releases by K of \
                 those maintainers, or --pcrs with the pcrs.json of the release you trust (this \
                 verifier's release policy names no maintainers yet); --any-code skips the check and is unsafe",
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use nostr::Keys;
    use verifier::event::npub;

    fn policy(n: usize, k: usize) -> ReleasePolicy {
        let npubs: Vec<String> = (0..n)
            .map(|_| npub(&Keys::generate().public_key()))
            .collect();
        ReleasePolicy {
            repository: "https://github.com/nostrband/noauth-enclaved".into(),
            trust: ReleaseTrust::new(&npubs, k, Some("0.1.0")).unwrap(),
        }
    }

    const PCRS: &str = r#"{"Measurements":{"HashAlgorithm":"Sha384 { ... }","PCR0":"111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111","PCR1":"222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222","PCR2":"333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333"}}"#;

    #[test]
    fn the_embedded_policy_pins_releases_once_it_names_maintainers() {
        let p = policy(3, 2);
        let pins = choose(CodePins::default(), false, Some(p.clone()), None)
            .unwrap()
            .unwrap();
        assert_eq!(pins.release.as_ref(), Some(&p.trust));
        assert!(pins.expected.is_none());
        // Only prod releases count for it.
        assert!(!pins.allow_dev_release);
        // It comes before the embedded measurements.
        let pins = choose(CodePins::default(), false, Some(p), Some(PCRS))
            .unwrap()
            .unwrap();
        assert!(pins.release.is_some() && pins.expected.is_none());
    }

    #[test]
    fn without_a_policy_the_embedded_measurements_or_nothing() {
        let pins = choose(CodePins::default(), false, None, Some(PCRS))
            .unwrap()
            .unwrap();
        assert!(pins.expected.is_some() && pins.release.is_none());
        let err = choose(CodePins::default(), false, None, None).unwrap_err();
        assert!(err.message.contains("without pinned code"));
        // --any-code, loudly, and only then: nothing pinned.
        assert!(choose(CodePins::default(), true, None, None)
            .unwrap()
            .is_none());
    }

    #[test]
    fn the_repositorys_policy_parses() {
        // Empty (None) until the first release names maintainers.
        assert!(built_in_policy().is_ok());
    }

    #[test]
    fn what_the_user_gives_comes_first() {
        let mine = policy(2, 2);
        let given = CodePins {
            expected: None,
            release: Some(mine.trust.clone()),
            allow_dev_release: true,
        };
        let pins = choose(given, false, Some(policy(3, 2)), Some(PCRS))
            .unwrap()
            .unwrap();
        assert_eq!(pins.release.as_ref(), Some(&mine.trust));
        assert!(pins.allow_dev_release);
    }
}
