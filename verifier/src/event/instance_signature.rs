//! Kind 63796, the instance signature: the launcher's Nostr key vouches for
//! the EC2 instance an enclave runs on by signing its PCR4.
//!
//! Tags, in order: `["-"]`, `["t", prod|dev]`, `["PCR4", hex]`; content
//! empty. The NECS form, kind 23795, has the same tags.

use nostr::{Event, EventBuilder, Kind};

use super::build_signature::tag_of;
use super::{
    check_kinds_and_signature, docker_release_error, is_docker_release, mode_of, single_tag, tag,
    Mode, KIND_INSTANCE_SIGNATURE, KIND_NECS_INSTANCE_SIGNATURE,
};
use crate::error::{malformed, mismatch, Error};
use crate::pcr::Pcr;

const WHAT: &str = "instance signature event";

/// An instance signature event whose id and signature verify and whose tags
/// have the right shape.
#[derive(Debug, Clone)]
pub struct InstanceSignature {
    event: Event,
    mode: Mode,
    pcr4: Pcr,
}

impl InstanceSignature {
    /// The unsigned event for an instance whose PCR4 is `pcr4`
    /// (see [`crate::pcr::pcr4_from_instance_id`]), in `mode`.
    pub fn builder(pcr4: &Pcr, mode: Mode) -> Result<EventBuilder, Error> {
        if mode == Mode::Debug {
            return Err(malformed("instance signature mode", "must be prod or dev"));
        }
        Ok(
            EventBuilder::new(Kind::from_u16(KIND_INSTANCE_SIGNATURE), "").tags([
                tag_of([tag::PROTECTED])?,
                tag_of([tag::MODE, mode.as_str()])?,
                tag_of([tag::PCR4, pcr4.to_string().as_str()])?,
            ]),
        )
    }

    /// Checks kind (63796 or NECS 23795), id, signature and tag shape.
    pub fn from_event(event: Event) -> Result<Self, Error> {
        check_kinds_and_signature(
            &event,
            &[KIND_INSTANCE_SIGNATURE, KIND_NECS_INSTANCE_SIGNATURE],
            WHAT,
        )?;
        if is_docker_release(&event) {
            return Err(docker_release_error("instance signature"));
        }
        let mode = mode_of(&event)?;
        if mode == Mode::Debug {
            return Err(malformed("instance signature mode", "must be prod or dev"));
        }
        let pcr4 = single_tag(&event, tag::PCR4)?.parse()?;
        Ok(Self { event, mode, pcr4 })
    }

    /// The event's `PCR4` tag must equal the attested PCR4.
    pub fn check_pcr4(&self, attested: &Pcr) -> Result<(), Error> {
        if self.pcr4 == *attested {
            Ok(())
        } else {
            Err(mismatch(
                "instance signature PCR4 (attested PCR4 vs PCR4 tag)",
                attested,
                self.pcr4,
            ))
        }
    }

    /// The signed event.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The `t` tag.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The `PCR4` tag.
    pub fn pcr4(&self) -> &Pcr {
        &self.pcr4
    }
}
