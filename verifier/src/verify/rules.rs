//! The rules of [`super::verify_instance`] that compare one part of an
//! instance event with another: kinds, PCR tags, marked `p` tags, modes and
//! expected measurements.

use std::collections::BTreeMap;

use nostr::Event;

use crate::error::{mismatch, Error};
use crate::event::instance::{marked_pubkey, pcr_tags, ANNOUNCED_PCRS};
use crate::event::{npub, tag, Mode, KIND_ANNOUNCEMENT, KIND_INSTANCE};
use crate::pcr::{Measurements, Pcr};

/// An instance event (63793) or a NECS announcement (13793).
pub(super) fn check_kind(event: &Event) -> Result<String, Error> {
    match event.kind.as_u16() {
        KIND_INSTANCE => Ok("kind 63793 (instance event)".to_owned()),
        KIND_ANNOUNCEMENT => Ok("kind 13793 (NECS announcement)".to_owned()),
        kind => Err(mismatch("event kind", "63793 or 13793", kind)),
    }
}

/// Every `x` tag equals the attested PCR; every announced PCR has a tag.
pub(super) fn check_pcr_tags(event: &Event, attested: &BTreeMap<u8, Pcr>) -> Result<String, Error> {
    let tags = pcr_tags(event)?;
    for (index, value) in &tags {
        let actual = attested.get(index).copied().unwrap_or(Pcr::ZERO);
        if actual != *value {
            return Err(mismatch(pcr_what(*index), actual, value));
        }
    }
    if let Some(missing) = ANNOUNCED_PCRS.iter().find(|i| !tags.contains_key(i)) {
        return Err(Error::Missing(pcr_what(*missing)));
    }
    Ok(format!("{} x tags match", tags.len()))
}

fn pcr_what(index: u8) -> &'static str {
    match index {
        0 => "x tag PCR0",
        1 => "x tag PCR1",
        2 => "x tag PCR2",
        4 => "x tag PCR4",
        8 => "x tag PCR8",
        _ => "x tag",
    }
}

pub(super) fn check_marked(
    event: &Event,
    marker: &'static str,
    signed: &Event,
) -> Result<String, Error> {
    let named = marked_pubkey(event, marker)?;
    if named == signed.pubkey {
        Ok(npub(&named))
    } else {
        Err(mismatch(
            if marker == tag::BUILDER {
                "builder p tag"
            } else {
                "launcher p tag"
            },
            npub(&signed.pubkey),
            npub(&named),
        ))
    }
}

/// `debug` exactly when PCR0 is zero; `prod` only with prod signatures.
pub(crate) fn check_mode(
    mode: Mode,
    pcr0_zero: bool,
    build: Mode,
    launch: Option<Mode>,
) -> Result<(), Error> {
    match (mode, pcr0_zero) {
        (Mode::Debug, false) => {
            return Err(mismatch("mode tag", "prod or dev (PCR0 is set)", mode))
        }
        (Mode::Prod | Mode::Dev, true) => {
            return Err(mismatch("mode tag", "debug (PCR0 is all zeros)", mode))
        }
        _ => {}
    }
    if mode == Mode::Prod {
        if build != Mode::Prod {
            return Err(mismatch(
                "build signature mode for a prod instance",
                Mode::Prod,
                build,
            ));
        }
        if let Some(launch) = launch.filter(|m| *m != Mode::Prod) {
            return Err(mismatch(
                "instance signature mode for a prod instance",
                Mode::Prod,
                launch,
            ));
        }
    }
    Ok(())
}

pub(super) fn check_expected(
    expected: &Measurements,
    attested: &BTreeMap<u8, Pcr>,
) -> Result<String, Error> {
    for required in [0u8, 1, 2] {
        if expected.get(required).is_none() {
            return Err(Error::Missing(match required {
                0 => "PCR0 in the expected measurements",
                1 => "PCR1 in the expected measurements",
                _ => "PCR2 in the expected measurements",
            }));
        }
    }
    for (index, value) in &expected.pcrs {
        let actual = attested.get(index).copied().unwrap_or(Pcr::ZERO);
        if actual != *value {
            return Err(Error::Mismatch {
                what: "expected measurement",
                expected: format!("PCR{index} {value}"),
                found: format!("PCR{index} {actual}"),
            });
        }
    }
    let names: Vec<String> = expected.pcrs.keys().map(|i| format!("PCR{i}")).collect();
    Ok(format!("{} match", names.join(", ")))
}

pub(super) fn both<A, B>(
    a: Option<A>,
    b: Option<B>,
    why_a: &'static str,
    why_b: &'static str,
) -> Result<(A, B), &'static str> {
    match (a, b) {
        (Some(a), Some(b)) => Ok((a, b)),
        (None, _) => Err(why_a),
        (_, None) => Err(why_b),
    }
}
