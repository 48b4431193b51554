//! The Nostr events of enclaved: kinds, tag names, and the formats of the
//! three announcement events (spec: `ARCHITECTURE.md`, "Formats"; tags are
//! wire-compatible with the original noauth-enclaved):
//!
//! - [`build_signature`]: kind 63795, by the builder, binds PCR8 to an npub;
//! - [`instance_signature`]: kind 63796, by the launcher, binds PCR4 (the EC2
//!   instance) to an npub;
//! - [`instance`]: kind 63793, by the enclave's service key, carries the
//!   attestation and both signatures;
//! - [`announcement`]: kind 13793, the NECS form of the same, whose
//!   attestation is in a kind 23793 [`tee_root`] event;
//! - release signatures (63794) are in [`crate::release`].
//!
//! NECS clients also write the builder's and launcher's signatures as kinds
//! 23794 and 23795; both kinds are read wherever 63795 and 63796 are.
//! nostrband's `enclaved` and `encli` use 63795 and 63796 for docker app
//! releases too: [`build_signature`] and [`instance_signature`] recognise
//! those by their tags and say so.
//!
//! Parsers here check shape and signatures only; how an instance event is
//! judged as a whole lives in [`crate::verify`].

pub mod announcement;
pub mod build_signature;
pub mod continuity;
pub mod instance;
pub mod instance_signature;
pub mod relay_list;
pub mod tee_root;

use std::fmt;
use std::str::FromStr;

use nostr::{Event, JsonUtil, PublicKey};

use crate::error::{malformed, mismatch, Error};

/// Kind of the instance event, published by the enclave's service key.
pub const KIND_INSTANCE: u16 = 63793;
/// Kind of the build signature, published by the image builder.
pub const KIND_BUILD_SIGNATURE: u16 = 63795;
/// Kind of the instance signature, published by the launcher.
pub const KIND_INSTANCE_SIGNATURE: u16 = 63796;
/// Kind of the NECS service announcement (replaceable), by the service key.
pub const KIND_ANNOUNCEMENT: u16 = 13793;
/// The kinds an instance announces itself with, both verified alike.
pub const ANNOUNCEMENT_KINDS: [u16; 2] = [KIND_INSTANCE, KIND_ANNOUNCEMENT];
/// Kind of the NECS `tee_root` event: the attestation, by the service key.
pub const KIND_TEE_ROOT: u16 = 23793;
/// Kind of the NECS build signature (the builder's, like 63795).
pub const KIND_NECS_BUILD_SIGNATURE: u16 = 23794;
/// Kind of the NECS instance signature (the launcher's, like 63796).
pub const KIND_NECS_INSTANCE_SIGNATURE: u16 = 23795;
/// Kind of NIP-46 remote signing requests and replies.
pub const KIND_NIP46: u16 = 24133;
/// Kind of admin API requests and replies (key import), same framing as NIP-46.
pub const KIND_ADMIN: u16 = 24135;
/// Kind of custody requests and replies between enclaves' service keys
/// (`crate::custodian`), same framing as the admin API.
pub const KIND_CUSTODY: u16 = 24136;

/// Largest event JSON accepted (the instance event embeds two others).
pub const MAX_EVENT_JSON: usize = 64 * 1024;

/// Tag names used by the announcement events.
pub mod tag {
    /// NIP-70 protected event marker (`["-"]`).
    pub const PROTECTED: &str = "-";
    /// Mode: `prod`, `dev` (or `debug` on instance events).
    pub const MODE: &str = "t";
    /// Image signing certificate, standard base64 of its DER (63795).
    pub const CERT: &str = "cert";
    /// PCR8 hex (63795).
    pub const PCR8: &str = "PCR8";
    /// PCR4 hex (63796).
    pub const PCR4: &str = "PCR4";
    /// Source repository URL (63793).
    pub const REPO: &str = "r";
    /// Software name (63793).
    pub const NAME: &str = "name";
    /// Software version (63793).
    pub const VERSION: &str = "v";
    /// Enclave module id (63793).
    pub const MODULE: &str = "m";
    /// A PCR: `["x", hex, "PCR<n>"]` (63793).
    pub const PCR: &str = "x";
    /// Relay where the admin API listens (63793).
    pub const RELAY: &str = "relay";
    /// NIP-40 expiration, unix seconds (63793).
    pub const EXPIRATION: &str = "expiration";
    /// NIP-31 alt text (63793).
    pub const ALT: &str = "alt";
    /// JSON of the build signature event (63793).
    pub const BUILD: &str = "build";
    /// JSON of the instance signature event (63793).
    pub const INSTANCE: &str = "instance";
    /// Pubkey tag; with marker `builder` or `launcher` (63793).
    pub const PUBKEY: &str = "p";
    /// Marker of the builder's `p` tag.
    pub const BUILDER: &str = "builder";
    /// Marker of the launcher's `p` tag.
    pub const LAUNCHER: &str = "launcher";
    /// JSON of a release signature event (63793 and 13793).
    pub const RELEASE: &str = "release";
    /// Marker of a release signer's `p` tag.
    pub const RELEASER: &str = "releaser";
    /// JSON of the kind 23793 event holding the attestation (13793).
    pub const TEE_ROOT: &str = "tee_root";
}

/// The mode an event declares in its `t` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// A production build or instance.
    Prod,
    /// A development build or instance.
    Dev,
    /// An enclave in debug mode (PCR0 all zeros); instance events only.
    Debug,
}

impl Mode {
    /// The tag value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Prod => "prod",
            Self::Dev => "dev",
            Self::Debug => "debug",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "prod" => Ok(Self::Prod),
            "dev" => Ok(Self::Dev),
            "debug" => Ok(Self::Debug),
            other => Err(malformed(
                "mode (t tag)",
                format!("{other:?} is not prod, dev or debug"),
            )),
        }
    }
}

/// Parses event JSON, capped at [`MAX_EVENT_JSON`] bytes. Does not verify.
pub fn parse_event_json(json: &str, what: &'static str) -> Result<Event, Error> {
    if json.len() > MAX_EVENT_JSON {
        return Err(Error::TooLarge {
            what,
            size: json.len(),
            max: MAX_EVENT_JSON,
        });
    }
    Event::from_json(json).map_err(|e| malformed(what, e))
}

/// Checks an event's kind, then its id and BIP-340 signature.
pub fn check_kind_and_signature(event: &Event, kind: u16, what: &'static str) -> Result<(), Error> {
    check_kinds_and_signature(event, &[kind], what)
}

/// Checks that an event's kind is one of `kinds`, then its id and signature.
pub fn check_kinds_and_signature(
    event: &Event,
    kinds: &[u16],
    what: &'static str,
) -> Result<(), Error> {
    let kind = event.kind.as_u16();
    if !kinds.contains(&kind) {
        let expected: Vec<String> = kinds.iter().map(|k| format!("kind {k}")).collect();
        return Err(mismatch(
            what,
            expected.join(" or "),
            format!("kind {kind}"),
        ));
    }
    check_signature(event, what)
}

/// Whether `event` is one of the docker app release events that
/// nostrband's `enclaved` and `encli` publish as kinds 63795 and 63796
/// (`["x", <image id>, "docker"]`, a `u` tag), which are not build or
/// instance signatures.
pub fn is_docker_release(event: &Event) -> bool {
    tags_named(event, tag::PCR).any(|t| t.get(2).is_some_and(|l| l == "docker"))
        || tags_named(event, "u").next().is_some()
}

/// The error for a docker app release where a signature event belongs.
pub fn docker_release_error(what: &'static str) -> Error {
    Error::Unsupported {
        what,
        found: "a docker app release of enclaved/encli (kind 63795/63796 with an x \"docker\" or u tag), \
                not a build or instance signature"
            .into(),
    }
}

/// Checks an event's id (hash of its content) and BIP-340 signature.
pub fn check_signature(event: &Event, what: &'static str) -> Result<(), Error> {
    if !event.verify_id() {
        return Err(Error::BadEventId(what));
    }
    if !event.verify_signature() {
        return Err(Error::BadSignature(what));
    }
    Ok(())
}

/// All tags named `name`, as string slices (name included).
pub fn tags_named<'a>(event: &'a Event, name: &'a str) -> impl Iterator<Item = &'a [String]> + 'a {
    event
        .tags
        .iter()
        .map(|t| t.as_slice())
        .filter(move |t| t.first().is_some_and(|n| n == name))
}

/// The value of the one tag named `name`; absent or repeated is an error.
pub fn single_tag<'a>(event: &'a Event, name: &'static str) -> Result<&'a str, Error> {
    let mut found = tags_named(event, name);
    match (found.next(), found.next()) {
        (Some(t), None) => t
            .get(1)
            .map(String::as_str)
            .ok_or_else(|| malformed(name, "tag has no value")),
        (None, _) => Err(Error::Missing(name)),
        (Some(_), Some(_)) => Err(malformed(name, "tag given more than once")),
    }
}

/// Parses the `t` tag of an event.
pub fn mode_of(event: &Event) -> Result<Mode, Error> {
    single_tag(event, tag::MODE)?.parse()
}

/// The bech32 npub of a key.
pub fn npub(key: &PublicKey) -> String {
    use nostr::nips::nip19::ToBech32;
    // ok: bech32 encoding of a 32-byte key cannot fail.
    key.to_bech32().unwrap_or_else(|_| key.to_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_round_trips() {
        for m in [Mode::Prod, Mode::Dev, Mode::Debug] {
            assert_eq!(m.as_str().parse::<Mode>().ok(), Some(m));
        }
        assert!("production".parse::<Mode>().is_err());
    }

    #[test]
    fn caps_event_json_before_parsing() {
        let big = " ".repeat(MAX_EVENT_JSON + 1);
        assert!(matches!(
            parse_event_json(&big, "event"),
            Err(Error::TooLarge { .. })
        ));
    }
}
