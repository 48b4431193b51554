//! TLS for `wss://` relays, terminated inside the enclave so the parent
//! only ever carries ciphertext. rustls with aws-lc-rs, trusting the Mozilla
//! roots from webpki-roots (the enclave has no system trust store).

use std::sync::Arc;

use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::{IpAddr as PkiIpAddr, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::socks::{SocksError, Target};
use crate::link::Stream;

/// How the enclave authenticates relays.
pub struct TlsConfig {
    connector: TlsConnector,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig")
    }
}

impl TlsConfig {
    /// Trusting the Mozilla roots (webpki-roots): production.
    pub fn webpki_roots() -> Result<Self, String> {
        let roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        Self::with_roots(roots)
    }

    /// Trusting exactly `roots`: for tests with a local TLS relay.
    pub fn with_roots(roots: RootCertStore) -> Result<Self, String> {
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// TLS over `tunnel` to `target`, checking its certificate for the host name.
    pub async fn connect(
        &self,
        target: &Target,
        tunnel: Box<dyn Stream>,
    ) -> Result<TlsStream<Box<dyn Stream>>, SocksError> {
        let name = match target {
            Target::Domain(d, _) => ServerName::try_from(d.clone())
                .map_err(|e| SocksError(format!("{d:?} is not a TLS server name: {e}")))?,
            Target::Ip(ip, _) => ServerName::IpAddress(PkiIpAddr::from(*ip)),
        };
        self.connector
            .connect(name, tunnel)
            .await
            .map_err(|e| SocksError(format!("TLS with {target}: {e}")))
    }
}
