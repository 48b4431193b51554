//! The real instance event of 2025-04-01 and the parts tests take from it.

use base64::Engine;

pub const FIXTURE: &str = include_str!("../data/instance-2025-04-01.json");

fn b64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// Value of the first tag named `name` in an event given as JSON.
pub fn tag_value(event: &serde_json::Value, name: &str) -> String {
    event["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t[0] == name)
        .unwrap()[1]
        .as_str()
        .unwrap()
        .to_owned()
}

fn event() -> serde_json::Value {
    serde_json::from_str(FIXTURE).unwrap()
}

/// The raw attestation document (the event's content).
pub fn fixture_document() -> Vec<u8> {
    b64(event()["content"].as_str().unwrap())
}

/// DER of the image signing certificate in the embedded build event.
pub fn fixture_build_cert() -> Vec<u8> {
    let build: serde_json::Value = serde_json::from_str(&tag_value(&event(), "build")).unwrap();
    b64(&tag_value(&build, "cert"))
}
