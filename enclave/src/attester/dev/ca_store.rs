//! The dev CA kept in a folder between runs of a local stack: the root and
//! intermediate certificates (DER) and their keys (PKCS#8 PEM, readable by
//! the owner only). Throw-away dev keys, never used for anything real; the
//! dev attester alone reads them.

use std::io::Write;
use std::path::Path;

use verifier::attestation::dev::{DevChain, DevIssuer};

use crate::attester::AttestError;

const FILES: [&str; 4] = [
    "root.der",
    "root-key.pem",
    "intermediate.der",
    "intermediate-key.pem",
];

fn fail(what: &str, path: &Path, e: impl std::fmt::Display) -> AttestError {
    AttestError(format!("dev CA {what} {}: {e}", path.display()))
}

/// The chain kept in `dir`, with a fresh leaf at `now`; `None` if `dir`
/// holds none yet. A partial or unreadable one is an error (it is not
/// replaced silently: delete the folder to start over).
pub(super) fn load(dir: &Path, now: i64) -> Result<Option<DevChain>, AttestError> {
    let present: Vec<bool> = FILES.iter().map(|f| dir.join(f).is_file()).collect();
    if present.iter().all(|p| !p) {
        return Ok(None);
    }
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| fail("cannot read", &path, e))
    };
    let issuer = |cert: &str, key: &str| {
        let der = read(cert)?;
        let pem = zeroize::Zeroizing::new(read(key)?);
        let pem =
            std::str::from_utf8(&pem).map_err(|e| fail("key is not text", &dir.join(key), e))?;
        DevIssuer::from_der_and_key_pem(&der, pem)
            .map_err(|e| fail("cannot use", &dir.join(cert), e))
    };
    let root = issuer(FILES[0], FILES[1])?;
    let intermediate = issuer(FILES[2], FILES[3])?;
    DevChain::with_cas(root, intermediate, now)
        .map(Some)
        .map_err(|e| AttestError(e.to_string()))
}

/// Keeps `chain`'s root and intermediate in `dir`.
pub(super) fn save(dir: &Path, chain: &DevChain) -> Result<(), AttestError> {
    std::fs::create_dir_all(dir).map_err(|e| fail("cannot create", dir, e))?;
    write(&dir.join(FILES[0]), chain.root.der(), false)?;
    write(&dir.join(FILES[1]), chain.root.key_pem().as_bytes(), true)?;
    write(&dir.join(FILES[2]), chain.intermediate.der(), false)?;
    write(
        &dir.join(FILES[3]),
        chain.intermediate.key_pem().as_bytes(),
        true,
    )?;
    Ok(())
}

fn write(path: &Path, bytes: &[u8], secret: bool) -> Result<(), AttestError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options
        .open(path)
        .map_err(|e| fail("cannot write", path, e))?;
    file.write_all(bytes)
        .map_err(|e| fail("cannot write", path, e))
}
