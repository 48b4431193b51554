//! The enclave's check of its own release at start-up, on the signatures
//! the (untrusted) parent hands over: those that are valid and sign the
//! enclave's own PCR0/1/2 are kept (and announced, so clients can judge
//! them with their own trust); the rest are set aside with the reason.
//! A prod instance must be a release under the policy built into its image,
//! at exactly the version its code says it is; a dev one may be.

use std::collections::BTreeMap;

use nostr::Event;

use super::{parse_version, Release, ReleasePolicy, ReleaseSignature, MAX_RELEASE_SIGNATURES};
use crate::error::Error;
use crate::event::{npub, Mode};
use crate::pcr::Pcr;

/// What the enclave learnt of its own release.
#[derive(Debug, Clone)]
pub struct OwnRelease {
    /// Valid signatures of the enclave's own PCR0/1/2, by anyone, at most
    /// [`MAX_RELEASE_SIGNATURES`]: what its announcements carry.
    pub signatures: Vec<ReleaseSignature>,
    /// The release under the built-in policy, or why it is not one.
    pub release: Result<Release, Error>,
    /// Signatures set aside, with why (for the log).
    pub ignored: Vec<String>,
}

/// Checks `events` against the enclave's `attested` PCRs and `policy`, for
/// an instance in `mode` running code of version `own_version`. A prod
/// instance that is not a release gets `Err` with the reason; any other
/// gets the outcome in [`OwnRelease::release`].
pub fn check_own_release(
    policy: &ReleasePolicy,
    events: Vec<Event>,
    attested: &BTreeMap<u8, Pcr>,
    mode: Mode,
    own_version: &str,
) -> Result<OwnRelease, Error> {
    let mut signatures = Vec::new();
    let mut ignored = Vec::new();
    for event in events.into_iter().take(MAX_RELEASE_SIGNATURES) {
        let id = event.id;
        match ReleaseSignature::from_event(event) {
            Err(e) => ignored.push(format!("{id}: {e}")),
            Ok(s) if !s.signs(attested) => ignored.push(format!(
                "{id} by {}: signs other measurements (PCR0 {})",
                npub(&s.event().pubkey),
                s.pcrs()[0]
            )),
            Ok(s) => signatures.push(s),
        }
    }
    // Only a release of this code's own version, of the policy's
    // repository, counts: the highest version signed might be another.
    let release = parse_version(own_version).and_then(|version| {
        policy.trust().and_then(|trust| {
            trust.release(
                &signatures,
                attested,
                mode,
                Some((&version, &policy.repository)),
            )
        })
    });
    if mode == Mode::Prod {
        if let Err(e) = &release {
            return Err(e.clone());
        }
    }
    Ok(OwnRelease {
        signatures,
        release,
        ignored,
    })
}
