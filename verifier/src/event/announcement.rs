//! Kind 13793, the NECS service announcement: what kind 63793 says, in the
//! form that newer clients (nostr-enclaves 2.x, nostrband's `enclaved`)
//! read. It is replaceable, signed by the service key, and its attestation
//! is in a kind 23793 [`super::tee_root`] event embedded in its `tee_root`
//! tag rather than in its content.
//!
//! Tags, in this order: `r`, `name`, `v`, `t`, `relay`, `expiration`, `alt`,
//! `tee_root` (JSON of the 23793 event), `x` for PCR0/1/2/4/8, `build`,
//! `["p", builder, "builder"]`, `instance`, `["p", launcher, "launcher"]`,
//! then each `release` and its `["p", maintainer, "releaser"]`. Content: a
//! line of text for people.

use nostr::{Event, EventBuilder, JsonUtil, Kind, Timestamp};

use super::build_signature::tag_of;
use super::instance::InstanceEvent;
use super::{tag, KIND_ANNOUNCEMENT};
use crate::error::Error;

/// The content of the announcements enclaved publishes.
pub const CONTENT: &str = "enclaved: a NIP-46 remote signer in an AWS Nitro enclave";

impl InstanceEvent<'_> {
    /// The unsigned 13793 announcement of the same instance, with
    /// `tee_root`, the service key's 23793 event over
    /// [`InstanceEvent::attestation`] (its `expiration` should be this
    /// event's).
    pub fn announcement_builder(&self, tee_root: &Event) -> Result<EventBuilder, Error> {
        let mut tags = vec![
            tag_of([tag::REPO, self.repo])?,
            tag_of([tag::NAME, self.name])?,
            tag_of([tag::VERSION, self.version])?,
            tag_of([tag::MODE, self.mode.as_str()])?,
            tag_of([tag::RELAY, self.admin_relay])?,
            tag_of([tag::EXPIRATION, self.expiration.to_string().as_str()])?,
            tag_of([tag::ALT, self.alt])?,
            tag_of([tag::TEE_ROOT, tee_root.as_json().as_str()])?,
        ];
        tags.extend(self.pcr_tags()?);
        tags.extend(self.signature_tags()?);
        Ok(
            EventBuilder::new(Kind::from_u16(KIND_ANNOUNCEMENT), CONTENT)
                .tags(tags)
                .custom_created_at(Timestamp::from_secs(self.created_at))
                .allow_self_tagging(),
        )
    }
}
