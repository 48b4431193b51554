//! The builder's and launcher's signature events (kinds 63795 and 63796)
//! and the maintainers' release signatures (kind 63794),
//! signed remotely through NIP-46 with rust-nostr's `NostrConnect`: from a
//! bunker URL, or from a `nostrconnect://` URI the user's signer app
//! scans. The private keys never touch this machine. The formats are the
//! verifier library's; every event is checked with it before it is
//! written, and an instance signature already valid for this instance and
//! launcher is reused instead of asking again.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nostr::nips::nip46::NostrConnectURI;
use nostr::{Event, JsonUtil, Keys, NostrSigner, PublicKey, RelayUrl};
use nostr_connect::client::NostrConnect;
use tracing::info;
use verifier::event::build_signature::BuildSignature;
use verifier::event::instance_signature::InstanceSignature;
use verifier::event::{npub, Mode};
use verifier::pcr::{pcr4_from_instance_id, Pcr};
use verifier::release::ReleaseSignature;
use verifier::signing_cert::SigningCert;

/// Where the remote signer is.
#[derive(Debug, Clone)]
pub enum RemoteSigner {
    /// A `bunker://` URL from the signer.
    Bunker(String),
    /// Print a `nostrconnect://` URI on these relays for the signer app.
    NostrConnect(Vec<RelayUrl>),
}

/// Connects to the remote signer; for `nostrconnect://`, prints the URI
/// on standard error and waits up to `timeout` for the app.
pub async fn connect(signer: &RemoteSigner, timeout: Duration) -> Result<NostrConnect> {
    let app = Keys::generate();
    let uri = match signer {
        RemoteSigner::Bunker(url) => {
            NostrConnectURI::parse(url).context("--bunker is not a bunker URL")?
        }
        RemoteSigner::NostrConnect(relays) => {
            let uri = NostrConnectURI::client(app.public_key(), relays.clone(), "enclaved");
            eprintln!("Open this in your NIP-46 signer app to approve:\n  {uri}");
            uri
        }
    };
    NostrConnect::new(uri, app, timeout, None).map_err(|e| anyhow!("NIP-46: {e}"))
}

/// The key the remote signer signs with.
pub async fn signer_key(signer: &NostrConnect) -> Result<PublicKey> {
    signer
        .get_public_key()
        .await
        .map_err(|e| anyhow!("the remote signer did not answer: {e}"))
}

/// Kind 63795 for `cert` in `mode`, signed by the builder it names; with
/// `expected_pcr8` (from nitro-cli's pcrs.json), the certificate must give it.
pub async fn sign_build(
    signer: &NostrConnect,
    cert: &SigningCert,
    mode: Mode,
    expected_pcr8: Option<&Pcr>,
) -> Result<Event> {
    if mode == Mode::Debug {
        bail!("a build is signed as prod or dev");
    }
    if let Some(expected) = expected_pcr8 {
        if cert.pcr8() != *expected {
            bail!(
                "the certificate gives PCR8 {}, but pcrs.json says {expected}",
                cert.pcr8()
            );
        }
    }
    let builder = signer_key(signer).await?;
    cert.check_builder(&npub(&builder)).map_err(|e| {
        anyhow!(
            "the remote signer is {}, not the builder the certificate names: {e}",
            npub(&builder)
        )
    })?;
    let event = BuildSignature::builder(cert, mode)?
        .sign(signer)
        .await
        .map_err(|e| anyhow!("the remote signer refused: {e}"))?;
    if event.pubkey != builder {
        bail!("the remote signer signed with another key");
    }
    let checked = BuildSignature::from_event(event.clone())?;
    checked.check_cert()?;
    checked.check_pcr8(&cert.pcr8())?;
    info!(builder = %npub(&builder), "build signature signed");
    Ok(event)
}

/// Kind 63796 for EC2 instance `instance_id` in `mode`, signed by the
/// launcher (who must be `launcher`, if given).
pub async fn sign_instance(
    signer: &NostrConnect,
    instance_id: &str,
    mode: Mode,
    launcher: Option<&PublicKey>,
) -> Result<Event> {
    if mode == Mode::Debug {
        bail!("an instance is signed as prod or dev");
    }
    let key = signer_key(signer).await?;
    if launcher.is_some_and(|l| *l != key) {
        bail!(
            "the remote signer is {}, not the launcher given",
            npub(&key)
        );
    }
    let pcr4 = pcr4_from_instance_id(instance_id);
    let event = InstanceSignature::builder(&pcr4, mode)?
        .sign(signer)
        .await
        .map_err(|e| anyhow!("the remote signer refused: {e}"))?;
    if event.pubkey != key {
        bail!("the remote signer signed with another key");
    }
    InstanceSignature::from_event(event.clone())?.check_pcr4(&pcr4)?;
    info!(launcher = %npub(&key), instance_id, "instance signature signed");
    Ok(event)
}

/// Kind 63794: the maintainer behind `signer` vouches that an image with
/// PCR0/1/2 `pcrs` is version `version` of `repo`, for `mode`.
pub async fn sign_release(
    signer: &NostrConnect,
    repo: &str,
    version: &semver::Version,
    mode: Mode,
    pcrs: &[Pcr; 3],
) -> Result<Event> {
    if mode == Mode::Debug {
        bail!("a release is signed as prod or dev");
    }
    let key = signer_key(signer).await?;
    let event = ReleaseSignature::builder(repo, version, mode, pcrs)?
        .sign(signer)
        .await
        .map_err(|e| anyhow!("the remote signer refused: {e}"))?;
    if event.pubkey != key {
        bail!("the remote signer signed with another key");
    }
    let checked = ReleaseSignature::from_event(event.clone())?;
    if checked.pcrs() != pcrs
        || checked.version() != version
        || checked.mode() != mode
        || checked.repo() != repo
    {
        bail!("the remote signer changed the release it signed");
    }
    info!(maintainer = %npub(&key), %version, %mode, "release signature signed");
    Ok(event)
}

/// The instance signature in `path`, if it is valid for `instance_id` in
/// `mode` and (if given) signed by `launcher`.
pub fn reusable_instance(
    path: &Path,
    instance_id: &str,
    mode: Mode,
    launcher: Option<&PublicKey>,
) -> Option<Event> {
    let size = std::fs::metadata(path).ok()?.len();
    if size > verifier::event::MAX_EVENT_JSON as u64 {
        return None;
    }
    let json = std::fs::read_to_string(path).ok()?;
    let event = Event::from_json(json.trim()).ok()?;
    let parsed = InstanceSignature::from_event(event.clone()).ok()?;
    parsed
        .check_pcr4(&pcr4_from_instance_id(instance_id))
        .ok()?;
    (parsed.mode() == mode && launcher.is_none_or(|l| *l == event.pubkey)).then_some(event)
}

/// Writes `event` as JSON to `path` (through a temporary file).
pub fn write_event(path: &Path, event: &Event) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, event.as_json()).with_context(|| format!("{}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))
}
