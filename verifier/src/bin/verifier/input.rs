//! Reading the files the CLI is given, with size caps, and recognising the
//! encoding of an attestation document.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use base64::Engine;

/// Largest file the CLI reads. Formats have tighter caps of their own.
pub(crate) const MAX_INPUT: u64 = 1024 * 1024;

/// Reads `path` (or standard input for `-`), refusing more than [`MAX_INPUT`].
pub(crate) fn read_input(path: &Path) -> Result<Vec<u8>, String> {
    let name = path.display();
    let reader: Box<dyn Read> = if path == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(path).map_err(|e| format!("cannot open {name}: {e}"))?)
    };
    let mut buf = Vec::new();
    reader
        .take(MAX_INPUT + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    if buf.len() as u64 > MAX_INPUT {
        return Err(format!("{name} is larger than {MAX_INPUT} bytes"));
    }
    Ok(buf)
}

/// Reads a text file (UTF-8).
pub(crate) fn read_text(path: &Path) -> Result<String, String> {
    String::from_utf8(read_input(path)?)
        .map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

/// How an attestation document was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Cbor,
    Hex,
    Base64,
}

impl Encoding {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Cbor => "raw CBOR",
            Self::Hex => "hex",
            Self::Base64 => "base64",
        }
    }
}

/// Recognises raw CBOR (a COSE_Sign1 array starts with byte 0x84), hex, or
/// base64 (standard or URL-safe, padded or not) and returns the raw bytes.
pub(crate) fn decode_document(input: &[u8]) -> Result<(Encoding, Vec<u8>), String> {
    if input.first() == Some(&0x84) {
        return Ok((Encoding::Cbor, input.to_vec()));
    }
    let text: String = std::str::from_utf8(input)
        .map_err(|_| "the input is neither CBOR (starts with 0x84) nor text".to_owned())?
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if text.is_empty() {
        return Err("the input is empty".into());
    }
    if text.len() % 2 == 0 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(&text)
            .map(|b| (Encoding::Hex, b))
            .map_err(|e| format!("bad hex: {e}"));
    }
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let unpadded = text.trim_end_matches('=');
    STANDARD
        .decode(&text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(unpadded))
        .map(|b| (Encoding::Base64, b))
        .map_err(|_| "the input is neither CBOR, hex nor base64".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_encoding() {
        let raw = vec![0x84, 0x44, 0xa1, 0x01];
        assert_eq!(
            decode_document(&raw).unwrap(),
            (Encoding::Cbor, raw.clone())
        );
        assert_eq!(
            decode_document(b"8444a101\n").unwrap(),
            (Encoding::Hex, raw.clone())
        );
        let b64 = STANDARD_ENGINE.encode(&raw);
        assert_eq!(
            decode_document(b64.as_bytes()).unwrap(),
            (Encoding::Base64, raw)
        );
        assert!(decode_document(b"").is_err());
        assert!(decode_document(b"not a document!").is_err());
    }

    const STANDARD_ENGINE: base64::engine::GeneralPurpose =
        base64::engine::general_purpose::STANDARD;
}
