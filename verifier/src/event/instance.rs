//! Kind 63793, the instance event: published by an enclave's service key
//! every hour, it carries a fresh attestation whose `public_key` is that key,
//! and the build and instance signatures that name who built and who runs it.
//!
//! Tags, in this order: `r` (repo), `name`, `v`, `m` (module_id),
//! `x` for PCR0/1/2/4/8 (`["x", hex, "PCR0"]`), `t` (prod|dev|debug),
//! `relay` (admin API), `expiration`, `alt`, `build` (JSON of the 63795
//! event), `["p", builder, "builder"]`, `instance` (JSON of the 63796
//! event), `["p", launcher, "launcher"]`, then for each maintainer's release
//! signature `release` (JSON of the 63794 event) and `["p", maintainer,
//! "releaser"]` (as NECS announcements carry them; older clients ignore
//! these). Content: standard base64 of the raw attestation document.

use std::collections::BTreeMap;

use base64::Engine;
use nostr::{Event, EventBuilder, JsonUtil, Kind, PublicKey, Tag, Timestamp};

use super::build_signature::tag_of;
use super::{parse_event_json, single_tag, tag, tags_named, Mode, KIND_INSTANCE};
use crate::error::{malformed, Error};
use crate::pcr::{parse_pcr_label, Pcr};

/// The PCRs an instance event announces in `x` tags.
pub const ANNOUNCED_PCRS: [u8; 5] = [0, 1, 2, 4, 8];

/// Everything an instance event says, for [`InstanceEvent::builder`].
#[derive(Debug, Clone)]
pub struct InstanceEvent<'a> {
    /// Source repository URL (`r`).
    pub repo: &'a str,
    /// Software name (`name`).
    pub name: &'a str,
    /// Software version (`v`).
    pub version: &'a str,
    /// The attestation's module_id (`m`).
    pub module_id: &'a str,
    /// The attestation's PCRs; those in [`ANNOUNCED_PCRS`] become `x` tags.
    pub pcrs: &'a BTreeMap<u8, Pcr>,
    /// `prod`, `dev`, or `debug` when PCR0 is all zeros (`t`).
    pub mode: Mode,
    /// Relay where the admin API listens (`relay`).
    pub admin_relay: &'a str,
    /// Unix time after which clients must not use this event (`expiration`).
    pub expiration: u64,
    /// Human-readable description (`alt`).
    pub alt: &'a str,
    /// The builder's kind 63795 event (`build`).
    pub build: &'a Event,
    /// The launcher's kind 63796 event (`instance`).
    pub instance: &'a Event,
    /// Maintainers' release signatures (kind 63794), each in a `release`
    /// tag followed by `["p", <maintainer>, "releaser"]`, after the others.
    pub releases: &'a [Event],
    /// The raw attestation document (content, base64).
    pub attestation: &'a [u8],
    /// `created_at` of the event.
    pub created_at: u64,
}

impl InstanceEvent<'_> {
    /// The unsigned event with the exact tag list of the format.
    pub fn builder(&self) -> Result<EventBuilder, Error> {
        let mut tags = vec![
            tag_of([tag::REPO, self.repo])?,
            tag_of([tag::NAME, self.name])?,
            tag_of([tag::VERSION, self.version])?,
            tag_of([tag::MODULE, self.module_id])?,
        ];
        tags.extend(self.pcr_tags()?);
        tags.extend([
            tag_of([tag::MODE, self.mode.as_str()])?,
            tag_of([tag::RELAY, self.admin_relay])?,
            tag_of([tag::EXPIRATION, self.expiration.to_string().as_str()])?,
            tag_of([tag::ALT, self.alt])?,
        ]);
        tags.extend(self.signature_tags()?);
        let content = base64::engine::general_purpose::STANDARD.encode(self.attestation);
        Ok(EventBuilder::new(Kind::from_u16(KIND_INSTANCE), content)
            .tags(tags)
            .custom_created_at(Timestamp::from_secs(self.created_at))
            .allow_self_tagging())
    }

    /// `x` tags of PCR0/1/2/4/8.
    pub(crate) fn pcr_tags(&self) -> Result<Vec<Tag>, Error> {
        let zero = Pcr::ZERO;
        ANNOUNCED_PCRS
            .iter()
            .map(|index| {
                let value = self.pcrs.get(index).unwrap_or(&zero).to_string();
                tag_of([tag::PCR, value.as_str(), format!("PCR{index}").as_str()])
            })
            .collect()
    }

    /// `build`, `p … builder`, `instance`, `p … launcher`, then each
    /// `release` and its `p … releaser`.
    pub(crate) fn signature_tags(&self) -> Result<Vec<Tag>, Error> {
        let mut tags = vec![
            tag_of([tag::BUILD, self.build.as_json().as_str()])?,
            tag_of([
                tag::PUBKEY,
                self.build.pubkey.to_hex().as_str(),
                tag::BUILDER,
            ])?,
            tag_of([tag::INSTANCE, self.instance.as_json().as_str()])?,
            tag_of([
                tag::PUBKEY,
                self.instance.pubkey.to_hex().as_str(),
                tag::LAUNCHER,
            ])?,
        ];
        for release in self.releases {
            tags.push(tag_of([tag::RELEASE, release.as_json().as_str()])?);
            tags.push(tag_of([
                tag::PUBKEY,
                release.pubkey.to_hex().as_str(),
                tag::RELEASER,
            ])?);
        }
        Ok(tags)
    }
}

/// The `x` tags as (PCR index, value). Each must be `["x", hex, "PCR<n>"]`
/// with n from 0 to 31, each index at most once.
pub fn pcr_tags(event: &Event) -> Result<BTreeMap<u8, Pcr>, Error> {
    let mut out = BTreeMap::new();
    for t in tags_named(event, tag::PCR) {
        let (Some(value), Some(label), None) = (t.get(1), t.get(2), t.get(3)) else {
            return Err(malformed("x tag", "expected [\"x\", hex, \"PCR<n>\"]"));
        };
        let index = parse_pcr_label(label)
            .ok_or_else(|| malformed("x tag", format!("{label:?} does not name a PCR")))?;
        if out.insert(index, value.parse::<Pcr>()?).is_some() {
            return Err(malformed(
                "x tag",
                format!("PCR{index} given more than once"),
            ));
        }
    }
    Ok(out)
}

/// The `expiration` tag, unix seconds.
pub fn expiration(event: &Event) -> Result<u64, Error> {
    let value = single_tag(event, tag::EXPIRATION)?;
    value
        .parse::<u64>()
        .map_err(|_| malformed("expiration tag", format!("{value:?} is not a unix time")))
}

/// The event embedded as JSON in the one tag named `name` (`build` or
/// `instance`). Not verified.
pub fn embedded_event(event: &Event, name: &'static str) -> Result<Event, Error> {
    parse_event_json(single_tag(event, name)?, name)
}

/// The pubkey of the one `p` tag whose marker is `marker`.
pub fn marked_pubkey(event: &Event, marker: &'static str) -> Result<PublicKey, Error> {
    let mut found =
        tags_named(event, tag::PUBKEY).filter(|t| t.get(2).is_some_and(|m| m == marker));
    match (found.next(), found.next()) {
        (Some(t), None) => {
            let hex = t.get(1).map(String::as_str).unwrap_or_default();
            PublicKey::from_hex(hex).map_err(|e| malformed("p tag", e))
        }
        (None, _) => Err(Error::Missing(match marker {
            tag::BUILDER => "[\"p\", <pubkey>, \"builder\"] tag",
            tag::LAUNCHER => "[\"p\", <pubkey>, \"launcher\"] tag",
            _ => "marked p tag",
        })),
        (Some(_), Some(_)) => Err(malformed(
            "p tag",
            format!("more than one {marker:?} p tag"),
        )),
    }
}
