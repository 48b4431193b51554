//! The dev attester: documents in exactly the NSM format, signed by a local
//! P-384 root → intermediate → leaf chain made at start-up (the verifier's
//! dev CA, built on rcgen). Each document gets a fresh three-hour leaf, as
//! the NSM's do. The root is written where a verifier can be pointed at it
//! (`verifier check --root dev-root.der`); nothing trusts it otherwise.
//!
//! Measurements, so that the verifier's PCR checks mean something here too:
//! - PCR0, PCR1, PCR2: `pcr_digest(SHA384("enclaved-dev-pcr<i>" || SHA384(binary)))`
//!   where `binary` is the running executable: a rebuilt enclave has new PCRs;
//! - PCR4: `pcr_digest(instance id)`, the launcher's instance, as on EC2;
//! - PCR8: `pcr_digest(SHA384(signing certificate DER))`, the builder's, as
//!   `nitro-cli` measures a signed image.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

use sha2::{Digest, Sha384};
use verifier::attestation::dev::{nsm_document, DevChain};
use verifier::attestation::TrustedRoot;
use verifier::pcr::{pcr4_from_instance_id, pcr8_from_cert_der, pcr_digest, Measurements, Pcr};

use super::{AttestError, Attester};

mod ca_store;

/// How long each document's leaf certificate lives, like the NSM's.
pub const LEAF_LIFETIME_SECS: i64 = 3 * 3600;

/// What the dev attester measures.
#[derive(Debug, Clone)]
pub struct DevMeasurements {
    /// SHA-384 of the running binary.
    pub binary_sha384: [u8; 48],
    /// The EC2 instance id the launcher signed (PCR4).
    pub instance_id: String,
    /// DER of the builder's image signing certificate (PCR8).
    pub signing_cert_der: Vec<u8>,
}

impl DevMeasurements {
    /// Measures the executable at `path`.
    pub fn of_binary(
        path: &Path,
        instance_id: String,
        signing_cert_der: Vec<u8>,
    ) -> Result<Self, AttestError> {
        Self::of_build(path, None, instance_id, signing_cert_der)
    }

    /// Measures the executable at `path` as a build of `version` (when it
    /// is not the built-in one): a build of another version is another
    /// image, so the version goes into PCR0 as its bytes would.
    pub fn of_build(
        path: &Path,
        version: Option<&str>,
        instance_id: String,
        signing_cert_der: Vec<u8>,
    ) -> Result<Self, AttestError> {
        let mut file = std::fs::File::open(path)
            .map_err(|e| AttestError(format!("cannot read {}: {e}", path.display())))?;
        let mut hasher = Sha384::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| AttestError(format!("cannot read {}: {e}", path.display())))?;
            if n == 0 {
                break;
            }
            hasher.update(buf.get(..n).unwrap_or_default());
        }
        if let Some(v) = version.filter(|v| *v != crate::SOFTWARE_VERSION) {
            hasher.update(b"\0enclaved dev build version\0");
            hasher.update(v.as_bytes());
        }
        Ok(Self {
            binary_sha384: hasher.finalize().into(),
            instance_id,
            signing_cert_der,
        })
    }

    /// PCR0, 1, 2, 4 and 8.
    pub fn pcrs(&self) -> BTreeMap<u8, Pcr> {
        let mut pcrs = BTreeMap::new();
        for index in [0u8, 1, 2] {
            let mut h = Sha384::new();
            h.update(format!("enclaved-dev-pcr{index}").as_bytes());
            h.update(self.binary_sha384);
            pcrs.insert(index, pcr_digest(&h.finalize()));
        }
        pcrs.insert(4, pcr4_from_instance_id(&self.instance_id));
        pcrs.insert(8, pcr8_from_cert_der(&self.signing_cert_der));
        pcrs
    }

    /// The image measurements (PCR0, 1, 2, 8) as a `pcrs.json`, for
    /// `verifier check --pcrs`.
    pub fn measurements(&self) -> Measurements {
        let pcrs = self.pcrs();
        Measurements {
            pcrs: pcrs.into_iter().filter(|(i, _)| *i != 4).collect(),
        }
    }
}

/// The dev attester.
pub struct DevAttester {
    chain: Mutex<DevChain>,
    root: TrustedRoot,
    pcrs: BTreeMap<u8, Pcr>,
    module_id: String,
}

impl fmt::Debug for DevAttester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevAttester")
            .field("module_id", &self.module_id)
            .field("root_sha256", &self.root.sha256_hex())
            .finish()
    }
}

impl DevAttester {
    /// A fresh chain at time `now` (unix seconds) for an enclave measured as `m`.
    pub fn new(m: &DevMeasurements, now: u64) -> Result<Self, AttestError> {
        Self::with_root_serial(m, now, None)
    }

    /// The same, with a root whose serial number is `root_serial`: for the
    /// interop test with a validator that knows AWS's root by its serial
    /// alone. The root is still a fresh key; nothing that checks the root
    /// itself (as this project's verifier does) mistakes it for AWS's.
    pub fn with_root_serial(
        m: &DevMeasurements,
        now: u64,
        root_serial: Option<&[u8]>,
    ) -> Result<Self, AttestError> {
        let now = i64::try_from(now).map_err(|_| AttestError("clock out of range".into()))?;
        let chain = DevChain::generate_with_root_serial(now, root_serial)
            .map_err(|e| AttestError(e.to_string()))?;
        Self::with_chain(m, chain)
    }

    /// The same with the dev CA kept in `dir` (made there on first use,
    /// with `root_serial` if given): the root stays the same from run to
    /// run, so events and roots saved from an earlier run still verify.
    pub fn with_ca_dir(
        m: &DevMeasurements,
        now: u64,
        dir: &Path,
        root_serial: Option<&[u8]>,
    ) -> Result<Self, AttestError> {
        let at = i64::try_from(now).map_err(|_| AttestError("clock out of range".into()))?;
        let chain = match ca_store::load(dir, at)? {
            Some(chain) => chain,
            None => {
                let chain = DevChain::generate_with_root_serial(at, root_serial)
                    .map_err(|e| AttestError(e.to_string()))?;
                ca_store::save(dir, &chain)?;
                chain
            }
        };
        Self::with_chain(m, chain)
    }

    fn with_chain(m: &DevMeasurements, chain: DevChain) -> Result<Self, AttestError> {
        let root = TrustedRoot::from_der_or_pem(chain.root.der())
            .map_err(|e| AttestError(format!("dev root: {e}")))?;
        // Unique per run, like the NSM's: the leaf is a fresh key (the
        // root may be kept from an earlier run).
        let suffix: String = hex::encode(sha2::Sha256::digest(chain.leaf.der()))
            .chars()
            .take(16)
            .collect();
        Ok(Self {
            chain: Mutex::new(chain),
            root,
            pcrs: m.pcrs(),
            // Shaped like an NSM module id: "<instance id>-enc<16 hex>".
            module_id: format!("{}-enc{suffix}", m.instance_id),
        })
    }

    /// DER of the root, for `verifier check --root`.
    pub fn root_der(&self) -> &[u8] {
        self.root.der()
    }

    /// Signs a document at `now_ms` (unix milliseconds).
    pub fn attest_at(&self, public_key: &[u8], now_ms: u64) -> Result<Vec<u8>, AttestError> {
        let now = i64::try_from(now_ms / 1000).map_err(|_| AttestError("clock".into()))?;
        let mut chain = self
            .chain
            .lock()
            .map_err(|_| AttestError("dev chain lock poisoned".into()))?;
        chain
            .renew_leaf(now, LEAF_LIFETIME_SECS)
            .map_err(|e| AttestError(e.to_string()))?;
        let doc = nsm_document(&self.module_id, now_ms, &self.pcrs, public_key);
        Ok(chain.attest(doc))
    }
}

impl Attester for DevAttester {
    fn attest(&self, public_key: &[u8]) -> Result<Vec<u8>, AttestError> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        self.attest_at(public_key, now_ms)
    }

    fn root(&self) -> TrustedRoot {
        self.root.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verifier::attestation::Attestation;

    fn measurements() -> DevMeasurements {
        DevMeasurements {
            binary_sha384: [7; 48],
            instance_id: "i-0123456789abcdef0".into(),
            signing_cert_der: b"not really a certificate".to_vec(),
        }
    }

    #[test]
    fn documents_verify_against_the_dev_root_only() {
        let now = 1_790_000_000;
        let attester = DevAttester::new(&measurements(), now).unwrap();
        let key = [9u8; 32];
        let doc = attester.attest_at(&key, now * 1000).unwrap();
        let verified = Attestation::parse(&doc)
            .unwrap()
            .verify(&attester.root(), now)
            .unwrap();
        assert_eq!(verified.doc().public_key.as_deref(), Some(&key[..]));
        assert_eq!(
            verified.doc().pcr(4),
            pcr4_from_instance_id("i-0123456789abcdef0")
        );
        assert!(!verified.is_debug());
        assert!(verified
            .doc()
            .module_id
            .starts_with("i-0123456789abcdef0-enc"));
        assert_eq!(verified.leaf_not_after(), (now as i64) + LEAF_LIFETIME_SECS);
        assert!(Attestation::parse(&doc)
            .unwrap()
            .verify(&TrustedRoot::aws_nitro_g1(), now)
            .is_err());
    }

    #[test]
    fn each_document_gets_a_fresh_leaf() {
        let now = 1_790_000_000;
        let attester = DevAttester::new(&measurements(), now).unwrap();
        let later = now + 7200;
        let doc = attester.attest_at(&[1; 32], later * 1000).unwrap();
        let verified = Attestation::parse(&doc)
            .unwrap()
            .verify(&attester.root(), later + 3600)
            .unwrap();
        assert_eq!(
            verified.leaf_not_after(),
            (later as i64) + LEAF_LIFETIME_SECS
        );
    }

    #[test]
    fn pcrs_follow_the_binary() {
        let a = measurements();
        let mut b = measurements();
        b.binary_sha384 = [8; 48];
        for i in [0, 1, 2] {
            assert_ne!(a.pcrs()[&i], b.pcrs()[&i]);
        }
        assert_eq!(a.pcrs()[&8], b.pcrs()[&8]);
        assert!(!a.measurements().pcrs.contains_key(&4));
    }
}
