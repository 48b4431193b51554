//! `parent signing-cert`: the builder's one-time image signing key and
//! certificate for `nitro-cli build-enclave`. The subject is made by the
//! verifier library (`O=Nostr`, `OU=<builder npub>`), so it always matches
//! what clients check. The key file is created new with mode 0600; the
//! build script deletes it after the build.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use nostr::{FromBech32, PublicKey};
use verifier::event::npub;
use verifier::signing_cert::{generate, NewSigningCert};

/// Days the certificate is valid by default.
pub const DEFAULT_DAYS: u32 = 3650;

/// Makes the key and certificate for `builder` (npub or hex), valid from an
/// hour before `now` for `days`, and writes them (PEM) to the two paths.
/// Refuses to overwrite either file.
pub fn write_signing_cert(
    builder: &str,
    days: u32,
    now: u64,
    cert_out: &Path,
    key_out: &Path,
) -> Result<NewSigningCert> {
    let builder = PublicKey::from_bech32(builder)
        .or_else(|_| PublicKey::from_hex(builder))
        .with_context(|| format!("{builder:?} is not an npub"))?;
    let now = i64::try_from(now)?;
    let made = generate(&npub(&builder), now - 3600, now + i64::from(days) * 86_400)?;
    let cert_pem = pem::encode(&pem::Pem::new("CERTIFICATE", made.cert_der.clone()));
    create_new(key_out, made.key_pem.as_bytes(), 0o600)
        .with_context(|| format!("key {}", key_out.display()))?;
    if let Err(e) = create_new(cert_out, cert_pem.as_bytes(), 0o644) {
        let _ = std::fs::remove_file(key_out);
        return Err(e).with_context(|| format!("certificate {}", cert_out.display()));
    }
    Ok(made)
}

fn create_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use verifier::pcr::pcr8_from_cert_der;
    use verifier::signing_cert::SigningCert;

    #[test]
    fn writes_a_certificate_naming_the_builder_and_a_private_key_file() {
        let dir = std::env::temp_dir().join(format!("signing-cert-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let builder = nostr::Keys::generate().public_key();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let made = write_signing_cert(&npub(&builder), 30, 1_800_000_000, &cert, &key).unwrap();
        let der = pem::parse(std::fs::read(&cert).unwrap())
            .unwrap()
            .into_contents();
        assert_eq!(der, made.cert_der);
        SigningCert::from_der(&der)
            .unwrap()
            .check_builder(&npub(&builder))
            .unwrap();
        assert_eq!(
            pcr8_from_cert_der(&der),
            SigningCert::from_der(&der).unwrap().pcr8()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        // Never overwrites.
        assert!(write_signing_cert(&npub(&builder), 30, 1_800_000_000, &cert, &key).is_err());
        assert!(
            write_signing_cert("nope", 30, 1_800_000_000, &dir.join("a"), &dir.join("b")).is_err()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
