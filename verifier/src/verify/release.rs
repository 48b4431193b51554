//! The release checks of [`super::verify_instance`]: the `release` tags of
//! an announcement are the maintainers' signatures (kind 63794) of the
//! image; the caller's [`ReleaseTrust`] says whose count and how many.

use std::collections::BTreeMap;

use nostr::Event;

use crate::error::Error;
use crate::event::{parse_event_json, single_tag, tag, tags_named, Mode};
use crate::pcr::Pcr;
use crate::release::{
    parse_version, Release, ReleaseSignature, ReleaseTrust, MAX_RELEASE_SIGNATURES,
};

/// The valid release signatures in `event`'s `release` tags (at most
/// [`MAX_RELEASE_SIGNATURES`] are read), and why each other one is not.
pub fn release_signatures(event: &Event) -> (Vec<ReleaseSignature>, Vec<String>) {
    let mut valid = Vec::new();
    let mut invalid = Vec::new();
    let mut tags = tags_named(event, tag::RELEASE);
    for (n, t) in tags.by_ref().take(MAX_RELEASE_SIGNATURES).enumerate() {
        let parsed = t
            .get(1)
            .ok_or(Error::Missing("release tag value"))
            .and_then(|json| parse_event_json(json, "release signature event"))
            .and_then(ReleaseSignature::from_event);
        match parsed {
            Ok(s) => valid.push(s),
            Err(e) => invalid.push(format!("release tag {}: {e}", n + 1)),
        }
    }
    let more = tags.count();
    if more > 0 {
        invalid.push(format!(
            "{more} release tags past the first {MAX_RELEASE_SIGNATURES} were not read"
        ));
    }
    (valid, invalid)
}

/// The `release_signatures` check: at least the threshold of trusted
/// maintainers signed the attested PCR0/1/2 as the version and repository
/// the announcement says it runs (`v`, `r`); with `mode` dev, dev releases
/// count too, else only prod ones.
pub(super) fn check_signatures(
    event: &Event,
    trust: &ReleaseTrust,
    attested: &BTreeMap<u8, Pcr>,
    mode: Mode,
) -> Result<Release, Error> {
    let claimed = parse_version(single_tag(event, tag::VERSION)?)?;
    let repo = single_tag(event, tag::REPO)?;
    let (valid, invalid) = release_signatures(event);
    trust
        .release(&valid, attested, mode, Some((&claimed, repo)))
        .map_err(|e| match e {
            Error::NotReleased(mut detail) if !invalid.is_empty() => {
                for why in invalid.iter().take(4) {
                    detail.push_str("; ");
                    detail.push_str(why);
                }
                Error::NotReleased(detail)
            }
            other => other,
        })
}

/// The `release_version` check: the release (whose version is the one the
/// announcement says it runs) is at or above the floor.
pub(super) fn check_version(trust: &ReleaseTrust, release: &Release) -> Result<String, Error> {
    trust.check_version(release)?;
    Ok(match trust.min_version() {
        Some(min) => format!("version {} (at least {min})", release.version),
        None => format!("version {} (no minimum given)", release.version),
    })
}
