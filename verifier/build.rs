//! Refuses to build if the embedded AWS Nitro Enclaves Root-G1 is not the
//! certificate AWS publishes (pinned by the SHA-256 of its DER).

use sha2::{Digest, Sha256};

const ROOT_PATH: &str = "src/attestation/aws-root-g1.der";
const ROOT_SHA256: &str = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

fn main() {
    println!("cargo:rerun-if-changed={ROOT_PATH}");
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
