//! Start-up: attest the service key, ask the parent for the signature
//! events, and check them against our own attestation with the verifier
//! library: the builder's and launcher's, and the maintainers' release
//! signatures under the release policy built into the image. Anything that does not match stops the enclave with a clear
//! message; a lying parent can only stop it, never make it serve.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};
use verifier::rpc::relays::parse_relay_url;

use nostr::{Keys, RelayUrl};
use verifier::attestation::{Attestation, TrustedRoot, VerifiedAttestation};
use verifier::event::Mode;
use verifier::protocol::{StartResult, MAX_ANNOUNCE_RELAYS};
use verifier::release::{check_own_release, OwnRelease, ReleasePolicy};
use verifier::verify::{check_signatures, Signatures};

use crate::attester::Attester;
use crate::link::ParentAddr;
use crate::metadata;

/// How long connecting to the parent may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the enclave refuses to start.
#[derive(Debug)]
pub struct StartupError(pub String);

impl std::fmt::Display for StartupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartupError {}

fn fail(e: impl std::fmt::Display) -> StartupError {
    StartupError(e.to_string())
}

/// What start-up established: the checked signature events and where to announce.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The builder's and launcher's events, verified against our attestation.
    pub signatures: Signatures,
    /// Relays the parent asked us to announce on.
    pub announce_relays: Vec<RelayUrl>,
    /// Whether the launcher asked for a production instance.
    pub prod: bool,
    /// The instance event's mode.
    pub mode: Mode,
    /// The release signatures of our own measurements, and whether they
    /// make a release under the policy built into the image.
    pub release: OwnRelease,
}

/// The x-only service public key, as the attestation's `public_key` carries it.
pub fn attested_key(keys: &Keys) -> [u8; 32] {
    keys.public_key().to_bytes()
}

/// Takes an attestation of `keys` from `attester` and verifies it against
/// the attester's own root at `now`: a broken attester stops us here.
pub async fn attest(
    attester: &Arc<dyn Attester>,
    keys: &Keys,
    now: u64,
) -> Result<(Vec<u8>, VerifiedAttestation), StartupError> {
    let key = attested_key(keys);
    let a = Arc::clone(attester);
    let document = tokio::task::spawn_blocking(move || a.attest(&key))
        .await
        .map_err(|e| fail(format!("attester task failed: {e}")))?
        .map_err(|e| fail(format!("cannot get an attestation: {e}")))?;
    // Checked at the time the document was made, at the earliest: an
    // attester makes its leaf at that time, which may be a second past
    // `now` (the dev attester's leaf starts at the document's second).
    let verified = verify_own(
        &document,
        &attester.root(),
        &key,
        now.max(crate::unix_now()),
    )?;
    Ok((document, verified))
}

fn verify_own(
    document: &[u8],
    root: &TrustedRoot,
    key: &[u8; 32],
    now: u64,
) -> Result<VerifiedAttestation, StartupError> {
    let verified = Attestation::parse(document)
        .and_then(|a| a.verify(root, now))
        .map_err(|e| fail(format!("our own attestation does not verify: {e}")))?;
    if verified.doc().public_key.as_deref() != Some(&key[..]) {
        return Err(fail("our own attestation does not carry the service key"));
    }
    Ok(verified)
}

/// Checks the parent's answer against our verified attestation and, for
/// the release signatures, against `policy`.
pub fn admit(
    attestation: &VerifiedAttestation,
    start: StartResult,
    policy: &ReleasePolicy,
) -> Result<Admitted, StartupError> {
    let signatures = check_signatures(attestation, start.build, start.instance).map_err(|e| {
        fail(format!(
            "the parent's build or instance signature does not match our attestation: {e}"
        ))
    })?;
    let mode = signatures
        .instance_mode(attestation, start.prod)
        .map_err(|e| {
            fail(format!(
                "cannot announce in the mode the parent asks for: {e}"
            ))
        })?;
    let release = check_own_release(
        policy,
        start.releases,
        &attestation.doc().pcrs,
        mode,
        crate::software_version(),
    )
    .map_err(|e| {
        fail(format!(
            "a prod instance must run a release signed by the maintainers in its built-in policy: {e}"
        ))
    })?;
    for why in &release.ignored {
        warn!("release signature set aside: {why}");
    }
    match &release.release {
        Ok(r) => info!(
            version = %r.version,
            signers = r.signers.len(),
            threshold = r.threshold,
            "this code is a release under its release policy"
        ),
        Err(e) => info!("{mode} instance, not a release under its release policy: {e}"),
    }
    if start.announce_relays.is_empty() {
        return Err(fail("the parent gave no relays to announce on"));
    }
    if start.announce_relays.len() > MAX_ANNOUNCE_RELAYS {
        return Err(fail(format!(
            "the parent gave {} announce relays, more than {MAX_ANNOUNCE_RELAYS}",
            start.announce_relays.len()
        )));
    }
    let announce_relays = start
        .announce_relays
        .iter()
        .map(|url| parse_relay_url(url).map_err(|e| fail(format!("announce relay: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Admitted {
        signatures,
        announce_relays,
        prod: start.prod,
        mode,
        release,
    })
}

/// The whole start-up: attest, ask the parent (waiting up to `wait` for
/// it to come up), check its answer.
pub async fn start(
    attester: &Arc<dyn Attester>,
    keys: &Keys,
    metadata: ParentAddr,
    wait: Duration,
    policy: &ReleasePolicy,
) -> Result<Admitted, StartupError> {
    let (document, verified) = attest(attester, keys, crate::unix_now()).await?;
    let stream = connect_patiently(metadata, wait).await?;
    let answer = metadata::start(stream, &document).await.map_err(fail)?;
    admit(&verified, answer, policy)
}

/// Connects to the parent, retrying while it starts, for up to `wait`.
async fn connect_patiently(
    addr: ParentAddr,
    wait: Duration,
) -> Result<Box<dyn crate::link::Stream>, StartupError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut delay = Duration::from_millis(100);
    let mut logged = false;
    loop {
        match addr.connect(CONNECT_TIMEOUT).await {
            Ok(stream) => return Ok(stream),
            Err(e) if tokio::time::Instant::now() + delay < deadline => {
                if !logged {
                    info!("waiting for the parent's metadata server at {addr}: {e}");
                    logged = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                return Err(fail(format!(
                    "cannot reach the parent's metadata server at {addr}: {e}"
                )))
            }
        }
    }
}
