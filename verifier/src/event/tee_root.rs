//! Kind 23793, the NECS `tee_root` event: the enclave's attestation, signed
//! by the service key whose `public_key` it attests. A 13793 announcement
//! embeds it as JSON in its `tee_root` tag; it is never published alone.
//!
//! Tags: `["-"]`, `["t", prod|dev|debug]`, `["expiration", unix]` (no later
//! than the attestation's leaf certificate), `["alt", text]`. Content:
//! standard base64 of the raw attestation document.
//!
//! nostr-enclaves checks the attestation against the tee_root's author but
//! not that this author wrote the announcement; here [`TeeRoot::check`]
//! does, so another enclave's tee_root cannot be swapped in.

use base64::Engine;
use nostr::{Event, EventBuilder, Kind, PublicKey, Timestamp};

use super::build_signature::tag_of;
use super::instance::expiration;
use super::{check_kind_and_signature, mode_of, npub, tag, Mode, KIND_TEE_ROOT};
use crate::error::{mismatch, Error};

const WHAT: &str = "tee_root event";

/// A tee_root event whose id and signature verify and whose tags parse.
#[derive(Debug, Clone)]
pub struct TeeRoot {
    event: Event,
    mode: Mode,
    expiration: u64,
}

impl TeeRoot {
    /// The unsigned event for `attestation`, in `mode`, valid until
    /// `expiration`, made at `created_at`.
    pub fn builder(
        attestation: &[u8],
        mode: Mode,
        expiration: u64,
        created_at: u64,
    ) -> Result<EventBuilder, Error> {
        let content = base64::engine::general_purpose::STANDARD.encode(attestation);
        Ok(EventBuilder::new(Kind::from_u16(KIND_TEE_ROOT), content)
            .tags([
                tag_of([tag::PROTECTED])?,
                tag_of([tag::MODE, mode.as_str()])?,
                tag_of([tag::EXPIRATION, expiration.to_string().as_str()])?,
                tag_of([tag::ALT, "attestation of an enclave's service key"])?,
            ])
            .custom_created_at(Timestamp::from_secs(created_at)))
    }

    /// Checks kind, id, signature, mode and expiration tags.
    pub fn from_event(event: Event) -> Result<Self, Error> {
        check_kind_and_signature(&event, KIND_TEE_ROOT, WHAT)?;
        let mode = mode_of(&event)?;
        let expiration = expiration(&event)?;
        Ok(Self {
            event,
            mode,
            expiration,
        })
    }

    /// It is by `author` (the announcement's service key) and has not
    /// expired at `time`.
    pub fn check(&self, author: &PublicKey, time: u64) -> Result<(), Error> {
        if self.event.pubkey != *author {
            return Err(mismatch(
                "tee_root author (the announcement's service key)",
                npub(author),
                npub(&self.event.pubkey),
            ));
        }
        if time >= self.expiration {
            return Err(Error::Expired {
                what: WHAT,
                expired_at: self.expiration,
                time,
            });
        }
        Ok(())
    }

    /// The signed event.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The base64 attestation (content).
    pub fn attestation_base64(&self) -> &str {
        &self.event.content
    }

    /// The `t` tag.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The `expiration` tag.
    pub fn expiration(&self) -> u64 {
        self.expiration
    }
}
