//! nitro-cli's `pcrs.json`: the measurements `nitro-cli build-enclave` prints
//! for an image, which a verifier compares with an attestation.
//!
//! ```json
//! { "Measurements": { "HashAlgorithm": "Sha384 { ... }",
//!   "PCR0": "<hex>", "PCR1": "<hex>", "PCR2": "<hex>", "PCR8": "<hex>" } }
//! ```
//! PCR8 is present only for signed images.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{parse_pcr_label, Pcr};
use crate::error::{malformed, Error};

/// The hash algorithm string nitro-cli writes.
const HASH_ALGORITHM: &str = "Sha384 { ... }";
/// Cap on the size of a `pcrs.json` file.
pub const MAX_PCRS_JSON: usize = 16 * 1024;

/// Expected PCR values of an enclave image (`pcrs.json`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Measurements {
    /// Expected values by PCR index (0, 1, 2, and 8 for signed images).
    pub pcrs: BTreeMap<u8, Pcr>,
}

#[derive(Serialize, Deserialize)]
struct File {
    #[serde(rename = "Measurements")]
    measurements: BTreeMap<String, String>,
}

impl Measurements {
    /// Parses nitro-cli's `pcrs.json`. Every `PCR<n>` entry must be 96 hex
    /// digits with n in 0..=31; the hash algorithm, if given, must be SHA-384.
    /// At least one PCR must be present.
    pub fn from_json(input: &[u8]) -> Result<Self, Error> {
        if input.len() > MAX_PCRS_JSON {
            return Err(Error::TooLarge {
                what: "pcrs.json",
                size: input.len(),
                max: MAX_PCRS_JSON,
            });
        }
        let file: File = serde_json::from_slice(input).map_err(|e| malformed("pcrs.json", e))?;
        let mut pcrs = BTreeMap::new();
        for (key, value) in &file.measurements {
            if key == "HashAlgorithm" {
                if !value.starts_with("Sha384") {
                    return Err(Error::Unsupported {
                        what: "pcrs.json hash algorithm",
                        found: value.clone(),
                    });
                }
                continue;
            }
            let index = parse_pcr_label(key)
                .ok_or_else(|| malformed("pcrs.json", format!("unknown entry {key:?}")))?;
            pcrs.insert(index, value.parse()?);
        }
        if pcrs.is_empty() {
            return Err(malformed("pcrs.json", "no PCR values"));
        }
        Ok(Self { pcrs })
    }

    /// Writes the file in nitro-cli's format.
    pub fn to_json(&self) -> String {
        let mut measurements = BTreeMap::new();
        measurements.insert("HashAlgorithm".to_owned(), HASH_ALGORITHM.to_owned());
        for (index, pcr) in &self.pcrs {
            measurements.insert(format!("PCR{index}"), pcr.to_string());
        }
        // Serialising a map of strings cannot fail.
        serde_json::to_string_pretty(&File { measurements }).unwrap_or_default() + "\n"
    }

    /// The expected value of one PCR, if the file gives it.
    pub fn get(&self, index: u8) -> Option<&Pcr> {
        self.pcrs.get(&index)
    }

    /// Whether these measurements pin the enclave's code: PCR0 (the whole
    /// image), PCR1 (the kernel) and PCR2 (the application) are all given
    /// and none is all zeros. A `pcrs.json` with only PCR8 pins who signed
    /// the image, not what it runs. A client that sends a secret requires
    /// this ([`CODE_PCRS`]).
    pub fn pins_code(&self) -> Result<(), Error> {
        for index in CODE_PCRS {
            match self.pcrs.get(&index) {
                Some(pcr) if !pcr.is_zero() => {}
                Some(_) => {
                    return Err(malformed(
                        "pcrs.json",
                        format!("PCR{index} is all zeros (a debug enclave's)"),
                    ))
                }
                None => {
                    return Err(malformed(
                        "pcrs.json",
                        format!("no PCR{index}: PCR0, PCR1 and PCR2 pin the enclave's code"),
                    ))
                }
            }
        }
        Ok(())
    }
}

/// The PCRs that measure an enclave's code: image, kernel, application.
pub const CODE_PCRS: [u8; 3] = [0, 1, 2];

#[cfg(test)]
mod tests {
    use super::*;

    const NITRO_CLI_OUTPUT: &str = r#"{
  "Measurements": {
    "HashAlgorithm": "Sha384 { ... }",
    "PCR0": "2adc99990f8c26accf04e319fd7024381f1d4b460d4b4c2309c96a3260969994011484eb8038e04993ed95e7c9c75918",
    "PCR1": "4b4d5b3661b3efc12920900c80e126e4ce783c522de6c02a2a5bf7af3a2b9327b86776f188e4be1c1c404a129dbda493",
    "PCR2": "0044b92a9dcb2762d14cd51e63ac0e8f122ef1b3c9fdf67774e614315abe210b260dee01ac665e0a93953ebacd3ed21e",
    "PCR8": "0b01031ec62f7a62b8f7ba21a688663453418624b09a72c067572f74259dd7d056f9cc6fbf1fb04f56f7a5db1d5dac82"
  }
}"#;

    #[test]
    fn reads_and_writes_nitro_cli_format() {
        let m = Measurements::from_json(NITRO_CLI_OUTPUT.as_bytes()).unwrap();
        assert_eq!(m.pcrs.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2, 8]);
        let again = Measurements::from_json(m.to_json().as_bytes()).unwrap();
        assert_eq!(m, again);
        assert!(m
            .to_json()
            .contains("\"HashAlgorithm\": \"Sha384 { ... }\""));
    }

    #[test]
    fn code_is_pinned_only_by_pcr0_1_and_2() {
        let full = Measurements::from_json(NITRO_CLI_OUTPUT.as_bytes()).unwrap();
        assert!(full.pins_code().is_ok());
        let mut only_pcr8 = full.clone();
        only_pcr8.pcrs.retain(|i, _| *i == 8);
        assert!(only_pcr8.pins_code().is_err());
        let mut no_pcr2 = full.clone();
        no_pcr2.pcrs.remove(&2);
        assert!(no_pcr2.pins_code().is_err());
        let mut debug = full;
        debug.pcrs.insert(0, Pcr([0; 48]));
        assert!(debug.pins_code().is_err());
    }

    #[test]
    fn rejects_bad_files() {
        for bad in [
            "{}",
            r#"{"Measurements":{}}"#,
            r#"{"Measurements":{"PCR0":"00"}}"#,
            r#"{"Measurements":{"PCR32":"00"}}"#,
            r#"{"Measurements":{"PCR+1":"00"}}"#,
            r#"{"Measurements":{"HashAlgorithm":"Sha256","PCR0":"00"}}"#,
            r#"{"Measurements":{"Foo":"bar"}}"#,
        ] {
            assert!(Measurements::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
