//! `build.json` (the builder's kind 63795 event), `instance.json` (the
//! launcher's kind 63796 event) and the maintainers' release signatures
//! (kind 63794, `release/<version>/<npub>.json`): read, capped and checked
//! for shape and signature, so a wrong file is reported at start-up, not
//! when the enclave asks for it.

use std::path::{Path, PathBuf};

use nostr::Event;
use verifier::event::build_signature::BuildSignature;
use verifier::event::instance_signature::InstanceSignature;
use verifier::event::{parse_event_json, MAX_EVENT_JSON};
use verifier::release::{ReleaseSignature, MAX_RELEASE_SIGNATURES};

/// Where the two files are.
#[derive(Debug, Clone)]
pub struct SignatureFiles {
    /// Path of `build.json`.
    pub build: PathBuf,
    /// Path of `instance.json`.
    pub instance: PathBuf,
    /// A directory of release signatures (every `*.json` in it), if any.
    pub releases: Option<PathBuf>,
}

/// The two events, each with a valid id, signature and tag shape.
#[derive(Debug, Clone)]
pub struct LoadedSignatures {
    /// The build signature event.
    pub build: Event,
    /// The instance signature event.
    pub instance: Event,
    /// The release signatures, each valid in shape and signature.
    pub releases: Vec<ReleaseSignature>,
}

impl SignatureFiles {
    /// Reads both files and checks each event's kind, id, signature and tags.
    /// The error names the file and what is wrong with it.
    pub fn load(&self) -> Result<LoadedSignatures, String> {
        let build = read_event(&self.build)?;
        BuildSignature::from_event(build.clone())
            .map_err(|e| format!("{}: not a valid build signature: {e}", self.build.display()))?;
        let instance = read_event(&self.instance)?;
        InstanceSignature::from_event(instance.clone()).map_err(|e| {
            format!(
                "{}: not a valid instance signature: {e}",
                self.instance.display()
            )
        })?;
        let releases = match &self.releases {
            Some(dir) => read_releases(dir)?,
            None => Vec::new(),
        };
        Ok(LoadedSignatures {
            build,
            instance,
            releases,
        })
    }
}

/// Every `*.json` in `dir`, each a valid release signature; at most
/// [`MAX_RELEASE_SIGNATURES`] files.
fn read_releases(dir: &Path) -> Result<Vec<ReleaseSignature>, String> {
    let name = dir.display();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{name}: {e}"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json") && p.is_file())
        .collect();
    if paths.len() > MAX_RELEASE_SIGNATURES {
        return Err(format!(
            "{name}: {} release signatures, more than the {MAX_RELEASE_SIGNATURES} an enclave accepts",
            paths.len()
        ));
    }
    paths.sort();
    paths
        .iter()
        .map(|path| {
            ReleaseSignature::from_event(read_event(path)?)
                .map_err(|e| format!("{}: not a valid release signature: {e}", path.display()))
        })
        .collect()
}

fn read_event(path: &Path) -> Result<Event, String> {
    let name = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{name}: {e}"))?;
    if meta.len() > MAX_EVENT_JSON as u64 {
        return Err(format!("{name}: larger than {MAX_EVENT_JSON} bytes"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    parse_event_json(text.trim(), "event").map_err(|e| format!("{name}: {e}"))
}
