//! What a local stack keeps in its folder from run to run, so that the
//! files a user saved (a `pcrs.json`, an instance event, the dev root, the
//! release signers' npubs) stay valid across restarts: the throw-away
//! builder, launcher and maintainer keys, the builder's certificate (so
//! PCR8), the dev CA (kept by the enclave's dev attester, in `ca/`), and
//! the relay port. All under `DIR/identity/`, keys readable by the owner
//! only; `dev-stack --fresh` deletes it to start over. Nothing here is for
//! real use.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nostr::Keys;
use zeroize::Zeroizing;

use super::signatures::DevSignatures;

/// The stack's kept identities.
#[derive(Debug)]
pub struct Identity {
    /// The builder's key.
    pub builder: Keys,
    /// The launcher's key.
    pub launcher: Keys,
    /// The builder's image signing certificate (DER).
    pub cert_der: Vec<u8>,
    /// The maintainers' keys.
    pub maintainers: Vec<Keys>,
}

/// `DIR/identity`.
pub fn dir_of(stack_dir: &Path) -> PathBuf {
    stack_dir.join("identity")
}

/// Where the enclave keeps its dev CA.
pub fn ca_dir(stack_dir: &Path) -> PathBuf {
    dir_of(stack_dir).join("ca")
}

/// Where the relay's port is kept.
pub fn relay_port_file(stack_dir: &Path) -> PathBuf {
    dir_of(stack_dir).join("relay-port")
}

impl Identity {
    /// The identities kept in `stack_dir`, made there (at `now`) if there
    /// are none, with `maintainers` maintainers (a different number makes
    /// new maintainers).
    pub fn load_or_create(stack_dir: &Path, maintainers: usize, now: u64) -> Result<Self> {
        let dir = dir_of(stack_dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
        let (builder, new_builder) = key(&dir.join("builder.key"))?;
        let (launcher, _) = key(&dir.join("launcher.key"))?;
        let cert_path = dir.join("signing-cert.der");
        // A new builder needs its own certificate: the kept one names the
        // old builder.
        let kept_cert = if new_builder {
            None
        } else {
            std::fs::read(&cert_path).ok()
        };
        let cert_der = match kept_cert {
            Some(der) => der,
            None => {
                let der = DevSignatures::certificate(&builder, now)?;
                std::fs::write(&cert_path, &der)
                    .with_context(|| format!("{}", cert_path.display()))?;
                der
            }
        };
        let kept = (0..)
            .map(|i| dir.join(format!("maintainer-{i}.key")))
            .take_while(|p| p.is_file())
            .count();
        if kept != maintainers {
            for i in 0..kept {
                let _ = std::fs::remove_file(dir.join(format!("maintainer-{i}.key")));
            }
        }
        let maintainers = (0..maintainers)
            .map(|i| key(&dir.join(format!("maintainer-{i}.key"))).map(|(k, _)| k))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            builder,
            launcher,
            cert_der,
            maintainers,
        })
    }
}

impl Identity {
    /// The cluster's identity as instance `number` sees it: the same
    /// builder and maintainers, and a launcher of its own.
    pub fn as_member(self, cluster_dir: &Path, number: usize) -> Result<Self> {
        let launcher = member_launcher(cluster_dir, number)?;
        Ok(Self { launcher, ..self })
    }
}

/// Instance `number`'s launcher in a cluster, kept in the cluster's
/// `identity/launcher-N.key` (made there if absent).
pub fn member_launcher(cluster_dir: &Path, number: usize) -> Result<Keys> {
    std::fs::create_dir_all(dir_of(cluster_dir))
        .with_context(|| format!("{}", dir_of(cluster_dir).display()))?;
    key(&dir_of(cluster_dir).join(format!("launcher-{number}.key"))).map(|(k, _)| k)
}

/// The key in `path` (hex), made and written there (owner-only) if absent;
/// says whether it was made now.
fn key(path: &Path) -> Result<(Keys, bool)> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = Zeroizing::new(String::from_utf8(bytes).unwrap_or_default());
            match Keys::parse(text.trim()) {
                Ok(keys) => Ok((keys, false)),
                Err(_) => bail!(
                    "{} does not hold a key; delete it, or run dev-stack --fresh",
                    path.display()
                ),
            }
        }
        Err(_) => {
            let keys = Keys::generate();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options
                .open(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            let hex = Zeroizing::new(keys.secret_key().to_secret_hex());
            file.write_all(hex.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok((keys, true))
        }
    }
}
