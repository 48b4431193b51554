//! The `enclave` binary: explicit attester choice, clear refusals, non-zero
//! exit when the parent's answer does not match.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;

use futures_util::{SinkExt, StreamExt};
use parent::dev_stack::signatures::DevSignatures;
use tokio_tungstenite::tungstenite::Message;
use verifier::protocol::{Reply, StartResult};

fn enclave() -> Command {
    Command::new(env!("CARGO_BIN_EXE_enclave"))
}

#[test]
fn the_attester_must_be_chosen_explicitly() {
    let out = enclave().args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--attester"));
    // Dev options are refused with the NSM, and the NSM is refused outside an enclave.
    let out = enclave()
        .args(["run", "--attester", "nsm", "--dev-instance-id", "i-0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--attester dev"));
    if !std::path::Path::new("/dev/nsm").exists() {
        let out = enclave()
            .args(["run", "--attester", "nsm"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("Nitro") || stderr.contains("nsm"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn exits_non_zero_when_the_parent_lies() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("enclave-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ours = DevSignatures::generate("i-0123456789abcdef0", enclave::unix_now()).unwrap();
    let theirs = DevSignatures::generate("i-0fffffffffffffff0", enclave::unix_now()).unwrap();
    std::fs::write(dir.join("cert.der"), &ours.cert_der).unwrap();
    // The parent hands over an instance signature for another EC2 instance.
    let reply = Reply::ok(
        "start",
        &StartResult {
            build: ours.build.clone(),
            instance: theirs.instance.clone(),
            announce_relays: vec!["ws://127.0.0.1:1".into()],
            prod: false,
            releases: vec![],
        },
    )
    .to_json();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        let _ = ws.next().await;
        ws.send(Message::text(reply)).await.unwrap();
        let _ = ws.next().await;
    });
    let args = [
        "run".to_owned(),
        "--attester=dev".into(),
        format!("--metadata=tcp:{addr}"),
        "--socks=tcp:127.0.0.1:1".into(),
        "--dev-instance-id=i-0123456789abcdef0".into(),
        format!("--dev-signing-cert={}", dir.join("cert.der").display()),
        format!("--dev-root-out={}", dir.join("root.der").display()),
    ];
    let out = tokio::task::spawn_blocking(move || enclave().args(args).output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(stderr.contains("PCR4"), "{stderr}");
    assert!(!stderr.contains("announcing"), "{stderr}");
}
