//! What the targets share: fixed keys, the real AWS document of the
//! fixture, and ways to cut fuzz input into parts.

use std::sync::OnceLock;

use nostr::{Event, JsonUtil, Keys, SecretKey};
use verifier::attestation::Attestation;

/// The real instance event a production enclave published (the fixture).
pub const FIXTURE: &str = include_str!("../../verifier/tests/data/instance-2025-04-01.json");

/// A fixed key: the same on every run, so that corpora keep their meaning.
pub fn fixed_keys(n: u8) -> Keys {
    let mut bytes = [0x11u8; 32];
    bytes[31] = n.wrapping_add(1);
    // Every value here is a valid secp256k1 scalar (far below the order).
    match SecretKey::from_slice(&bytes) {
        Ok(secret) => Keys::new(secret),
        Err(_) => Keys::generate(),
    }
}

/// The fixture's event, parsed once.
pub fn fixture_event() -> &'static Event {
    static EVENT: OnceLock<Event> = OnceLock::new();
    EVENT.get_or_init(|| match Event::from_json(FIXTURE) {
        Ok(e) => e,
        Err(e) => panic!("the fixture does not parse: {e}"),
    })
}

/// The fixture's attestation document (raw COSE bytes), decoded once.
pub fn fixture_document() -> &'static [u8] {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    DOC.get_or_init(|| {
        use base64::Engine;
        let text = fixture_event().content.trim();
        match base64::engine::general_purpose::STANDARD.decode(text) {
            Ok(d) => d,
            Err(e) => panic!("the fixture's content is not base64: {e}"),
        }
    })
}

/// The fixture's attestation, parsed once.
pub fn fixture_attestation() -> &'static Attestation {
    static ATT: OnceLock<Attestation> = OnceLock::new();
    ATT.get_or_init(|| match Attestation::parse(fixture_document()) {
        Ok(a) => a,
        Err(e) => panic!("the fixture's document does not parse: {e}"),
    })
}

/// The input as text, if it is UTF-8.
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Cuts `data` into parts, each prefixed by its length (two bytes, big
/// endian); a short last part takes what is left.
pub fn parts(data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() < max && rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
        let take = len.min(rest.len());
        out.push(&rest[..take]);
        rest = &rest[take..];
    }
    out
}

/// Joins parts in the format [`parts`] reads (for seeds).
pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        let len = u16::try_from(p.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&p[..usize::from(len)]);
    }
    out
}

/// Splits text at NUL characters (for lists of parameters).
pub fn fields(text: &str) -> Vec<String> {
    text.split('\0').map(str::to_owned).collect()
}
