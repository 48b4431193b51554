//! A real parent's metadata server with a state store, on 127.0.0.1, for
//! tests of sealed state.

use std::path::PathBuf;
use std::sync::Arc;

use enclave::metadata::MetadataClient;
use parent::metadata::{MetadataConfig, MetadataServer};
use parent::signature_files::SignatureFiles;
use parent::state_store::{StateStore, StoreLimits};
use parent::transport::{ListenAddr, Listener};
use tokio::net::TcpStream;
use verifier::attestation::TrustedRoot;

pub(crate) struct Parent {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) dir: PathBuf,
}

impl Drop for Parent {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) async fn parent(name: &str, keeps_state: bool) -> Parent {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("state-link-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = keeps_state
        .then(|| Arc::new(StateStore::open(&dir.join("state"), StoreLimits::default()).unwrap()));
    let listener = Listener::bind(&"tcp:127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let ListenAddr::Tcp(addr) = listener.local_addr().unwrap() else {
        unreachable!()
    };
    let server = MetadataServer::new(MetadataConfig {
        files: SignatureFiles {
            build: dir.join("build.json"),
            instance: dir.join("instance.json"),
            releases: None,
        },
        root: TrustedRoot::aws_nitro_g1(),
        announce_relays: vec![],
        prod: false,
        max_connections: 4,
        state,
    });
    tokio::spawn(server.run(listener));
    Parent { addr, dir }
}

pub(crate) async fn client(p: &Parent) -> MetadataClient<TcpStream> {
    MetadataClient::connect(TcpStream::connect(p.addr).await.unwrap())
        .await
        .unwrap()
}
