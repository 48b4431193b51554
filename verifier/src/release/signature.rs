//! Kind 63794, the release signature: a maintainer's Nostr key vouches that
//! an image with these PCR0/1/2 is a release of the project, at a version,
//! for production or development.
//!
//! Tags, in order: `["r", repository]`, `["v", semver]`, `["t", prod|dev]`,
//! `["x", hex, "PCR0"]`, `["x", hex, "PCR1"]`, `["x", hex, "PCR2"]`; content
//! empty. The NECS format of nostrband's `enclaved`, whose own check ignores
//! the kind and `t` of what it reads: this one checks both.

use std::collections::BTreeMap;

use nostr::{Event, EventBuilder, Kind};
use semver::Version;

use crate::error::{malformed, Error};
use crate::event::build_signature::tag_of;
use crate::event::instance::pcr_tags;
use crate::event::{check_kind_and_signature, mode_of, single_tag, tag, Mode};
use crate::pcr::{Pcr, CODE_PCRS};

/// Kind of the release signature, published by a maintainer.
pub const KIND_RELEASE_SIGNATURE: u16 = 63794;

/// Longest `r` and `v` values accepted.
pub const MAX_TAG_VALUE: usize = 256;
/// Largest release signature event accepted, as JSON: one is about 800
/// bytes, and an announcement carries up to 16 of them.
pub const MAX_RELEASE_JSON: usize = 2048;

const WHAT: &str = "release signature event";

/// A release signature whose id and signature verify and whose tags have the
/// right shape: a repository, a semver version, a mode and exactly PCR0, 1, 2.
#[derive(Debug, Clone)]
pub struct ReleaseSignature {
    event: Event,
    repo: String,
    version: Version,
    mode: Mode,
    pcrs: [Pcr; 3],
}

impl ReleaseSignature {
    /// The unsigned event for a release of `repo` at `version` in `mode`
    /// (`Prod` or `Dev`) whose image measures to `pcrs` (PCR0, 1, 2).
    pub fn builder(
        repo: &str,
        version: &Version,
        mode: Mode,
        pcrs: &[Pcr; 3],
    ) -> Result<EventBuilder, Error> {
        if mode == Mode::Debug {
            return Err(malformed("release signature mode", "must be prod or dev"));
        }
        check_value("r tag", repo)?;
        check_not_debug(pcrs)?;
        let version = version.to_string();
        let mut tags = vec![
            tag_of([tag::REPO, repo])?,
            tag_of([tag::VERSION, version.as_str()])?,
            tag_of([tag::MODE, mode.as_str()])?,
        ];
        for (index, pcr) in CODE_PCRS.iter().zip(pcrs) {
            let label = format!("PCR{index}");
            tags.push(tag_of([
                tag::PCR,
                pcr.to_string().as_str(),
                label.as_str(),
            ])?);
        }
        Ok(EventBuilder::new(Kind::from_u16(KIND_RELEASE_SIGNATURE), "").tags(tags))
    }

    /// Checks kind, id, signature and tag shape.
    pub fn from_event(event: Event) -> Result<Self, Error> {
        let size = nostr::JsonUtil::as_json(&event).len();
        if size > MAX_RELEASE_JSON {
            return Err(Error::TooLarge {
                what: WHAT,
                size,
                max: MAX_RELEASE_JSON,
            });
        }
        check_kind_and_signature(&event, KIND_RELEASE_SIGNATURE, WHAT)?;
        let mode = mode_of(&event)?;
        if mode == Mode::Debug {
            return Err(malformed("release signature mode", "must be prod or dev"));
        }
        let repo = single_tag(&event, tag::REPO)?;
        check_value("r tag", repo)?;
        let version = single_tag(&event, tag::VERSION)?;
        check_value("v tag", version)?;
        let version = parse_version(version)?;
        let pcrs = code_pcrs(&pcr_tags(&event)?)?;
        check_not_debug(&pcrs)?;
        Ok(Self {
            repo: repo.to_owned(),
            event,
            version,
            mode,
            pcrs,
        })
    }

    /// The signed event.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The `r` tag.
    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// The `v` tag.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// The `t` tag.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// PCR0, 1 and 2 as signed.
    pub fn pcrs(&self) -> &[Pcr; 3] {
        &self.pcrs
    }

    /// Whether the signed PCR0/1/2 are `attested`'s.
    pub fn signs(&self, attested: &BTreeMap<u8, Pcr>) -> bool {
        CODE_PCRS
            .iter()
            .zip(&self.pcrs)
            .all(|(index, pcr)| attested.get(index) == Some(pcr))
    }
}

/// Zero PCRs are what every debug-mode enclave measures, and no real
/// image does: a release of them would release every debug enclave.
fn check_not_debug(pcrs: &[Pcr; 3]) -> Result<(), Error> {
    if pcrs.iter().any(Pcr::is_zero) {
        return Err(malformed(
            "release signature PCRs",
            "a PCR is all zeros, as a debug-mode enclave measures; no release may sign that",
        ));
    }
    Ok(())
}

/// A semver version (`1.2.3`, `1.2.3-rc.1`), with a plain-words error.
pub fn parse_version(text: &str) -> Result<Version, Error> {
    Version::parse(text).map_err(|e| malformed("version", format!("{text:?} is not semver: {e}")))
}

fn check_value(what: &'static str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(malformed(what, "empty"));
    }
    if value.len() > MAX_TAG_VALUE {
        return Err(Error::TooLarge {
            what,
            size: value.len(),
            max: MAX_TAG_VALUE,
        });
    }
    Ok(())
}

/// Exactly PCR0, 1 and 2, each once: a release names its image, nothing else.
fn code_pcrs(tags: &BTreeMap<u8, Pcr>) -> Result<[Pcr; 3], Error> {
    if let Some(other) = tags.keys().find(|i| !CODE_PCRS.contains(i)) {
        return Err(malformed(
            "release signature x tags",
            format!("PCR{other} is not one of PCR0, PCR1, PCR2"),
        ));
    }
    let get = |i: u8| {
        tags.get(&i).copied().ok_or(Error::Missing(match i {
            0 => "PCR0 x tag of the release signature",
            1 => "PCR1 x tag of the release signature",
            _ => "PCR2 x tag of the release signature",
        }))
    };
    Ok([get(0)?, get(1)?, get(2)?])
}
