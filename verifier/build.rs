//! Refuses to build if the embedded AWS Nitro Enclaves Root-G1 is not the
//! certificate AWS publishes (pinned by the SHA-256 of its DER), and embeds
//! the release's measurements (`pcrs.json` at the top of the repository,
//! once a release has been built) for `verifier key` to pin.

use sha2::{Digest, Sha256};

const ROOT_PATH: &str = "src/attestation/aws-root-g1.der";
const ROOT_SHA256: &str = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

/// The release's measurements, written by `build-enclave-signed.sh`.
const RELEASE_PCRS: &str = "../pcrs.json";

fn main() {
    println!("cargo:rerun-if-changed={ROOT_PATH}");
    embed_release_pcrs();
    let der = match std::fs::read(ROOT_PATH) {
        Ok(der) => der,
        Err(e) => panic!("cannot read {ROOT_PATH}: {e}"),
    };
    let got: String = Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if got != ROOT_SHA256 {
        panic!("{ROOT_PATH} has SHA-256 {got}, expected AWS Nitro Enclaves Root-G1 {ROOT_SHA256}");
    }
}

/// Writes `$OUT_DIR/release_pcrs.rs`: `Some(<pcrs.json>)` if the release's
/// file exists, else `None`. Only the `verifier` binary includes it (the
/// library that the enclave links does not, so the enclave image's own
/// measurements cannot depend on it).
///
/// A missing file cannot be watched without re-running this script on
/// every build, so only an existing one is: a target directory built
/// before `pcrs.json` appeared needs `touch verifier/build.rs` (a release
/// is built from a clean checkout).
fn embed_release_pcrs() {
    let out = match std::env::var("OUT_DIR") {
        Ok(dir) => std::path::PathBuf::from(dir).join("release_pcrs.rs"),
        Err(e) => panic!("OUT_DIR: {e}"),
    };
    let path = std::path::Path::new(RELEASE_PCRS);
    let code = match std::fs::canonicalize(path) {
        Ok(abs) if abs.is_file() => {
            println!("cargo:rerun-if-changed={RELEASE_PCRS}");
            format!("Some(include_str!({:?}))", abs.display().to_string())
        }
        _ => "None".to_owned(),
    };
    if let Err(e) = std::fs::write(&out, code) {
        panic!("cannot write {}: {e}", out.display());
    }
}
