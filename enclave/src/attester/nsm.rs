//! The production attester: the Nitro Secure Module at `/dev/nsm`.
//!
//! Before it is used, [`NsmAttester::open`] checks that the kernel's random
//! number generator is the NSM's (`nsm-hwrng`), as the original's start
//! script did: the service key must come from hardware entropy, not from a
//! generator the parent could have seeded.

use std::fmt;

use verifier::attestation::TrustedRoot;

use super::{AttestError, Attester};

/// Where Linux names the hardware RNG feeding the kernel pool.
pub const RNG_CURRENT: &str = "/sys/devices/virtual/misc/hw_random/rng_current";
/// The NSM's hardware RNG, as `rng_current` names it.
pub const NSM_RNG: &str = "nsm-hwrng";

/// Checks that `rng_current` (the content of [`RNG_CURRENT`]) names the NSM.
pub fn check_rng(rng_current: &str) -> Result<(), AttestError> {
    let name = rng_current.trim();
    if name == NSM_RNG {
        Ok(())
    } else {
        Err(AttestError(format!(
            "the kernel RNG is {name:?}, not {NSM_RNG:?}: refusing to make keys"
        )))
    }
}

/// An open `/dev/nsm`.
pub struct NsmAttester {
    #[cfg(target_os = "linux")]
    fd: i32,
}

impl fmt::Debug for NsmAttester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NsmAttester")
    }
}

#[cfg(target_os = "linux")]
impl NsmAttester {
    /// Checks the RNG and opens `/dev/nsm`.
    pub fn open() -> Result<Self, AttestError> {
        let rng = std::fs::read_to_string(RNG_CURRENT).map_err(|e| {
            AttestError(format!(
                "cannot read {RNG_CURRENT} ({e}): not in a Nitro Enclave? \
                 Use --attester dev to run without one"
            ))
        })?;
        check_rng(&rng)?;
        let fd = aws_nitro_enclaves_nsm_api::driver::nsm_init();
        if fd < 0 {
            return Err(AttestError(
                "cannot open /dev/nsm: not in a Nitro Enclave? \
                 Use --attester dev to run without one"
                    .into(),
            ));
        }
        Ok(Self { fd })
    }
}

#[cfg(not(target_os = "linux"))]
impl NsmAttester {
    /// The NSM exists only in Linux enclaves.
    pub fn open() -> Result<Self, AttestError> {
        Err(AttestError(
            "/dev/nsm exists only in a Linux Nitro Enclave".into(),
        ))
    }
}

#[cfg(target_os = "linux")]
impl Drop for NsmAttester {
    fn drop(&mut self) {
        aws_nitro_enclaves_nsm_api::driver::nsm_exit(self.fd);
    }
}

impl Attester for NsmAttester {
    #[cfg(target_os = "linux")]
    fn attest(&self, public_key: &[u8]) -> Result<Vec<u8>, AttestError> {
        use aws_nitro_enclaves_nsm_api::api::{Request, Response};
        let request = Request::Attestation {
            user_data: None,
            nonce: None,
            public_key: Some(serde_bytes::ByteBuf::from(public_key.to_vec())),
        };
        match aws_nitro_enclaves_nsm_api::driver::nsm_process_request(self.fd, request) {
            Response::Attestation { document } => Ok(document),
            Response::Error(code) => Err(AttestError(format!("the NSM refused: {code:?}"))),
            _ => Err(AttestError("the NSM answered with something else".into())),
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn attest(&self, _public_key: &[u8]) -> Result<Vec<u8>, AttestError> {
        Err(AttestError(
            "/dev/nsm exists only in a Linux Nitro Enclave".into(),
        ))
    }

    fn root(&self) -> TrustedRoot {
        TrustedRoot::aws_nitro_g1()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_nsm_rng_is_accepted() {
        assert!(check_rng("nsm-hwrng\n").is_ok());
        for other in ["", "none\n", "tpm-rng-0", "nsm-hwrng-x"] {
            assert!(check_rng(other).is_err(), "{other:?}");
        }
    }

    #[test]
    fn open_fails_clearly_outside_an_enclave() {
        if std::path::Path::new("/dev/nsm").exists() {
            return; // really inside an enclave
        }
        let err = NsmAttester::open().unwrap_err();
        assert!(err.0.contains("Nitro") || err.0.contains("nsm"), "{err}");
    }
}
