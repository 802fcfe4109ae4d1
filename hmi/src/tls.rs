//! Optional native TLS of the HTTP server (issue 8 §5), for sites without a reverse proxy: rustls with the
//! `ring` provider, TLS 1.2 and 1.3, HTTP/1.1 by ALPN. `[server] tls_cert` (the certificate chain, leaf
//! first) and `tls_key` (its private key: PKCS#8, PKCS#1 or SEC1), both PEM. Configuration loads them with
//! [`load`] when it validates, so `waterworks validate` reports a missing file, a PEM that does not parse or a
//! key that does not match its certificate, each naming the key and the file. Certificates are read once, at
//! start: a renewed certificate takes a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the certificate or key cannot be used; each names the file, and [`TlsError::key`] the configuration key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {error}", path.display())]
    Read { key: &'static str, path: PathBuf, error: std::io::Error },
    #[error("{} is not PEM {what}: {error}", path.display())]
    Pem { key: &'static str, path: PathBuf, what: &'static str, error: String },
    #[error("{} does not fit the certificate in server.tls_cert ({error})", path.display())]
    Mismatch { path: PathBuf, error: String },
}

impl TlsError {
    /// The configuration key at fault: `server.tls_cert` or `server.tls_key`.
    pub fn key(&self) -> &'static str {
        match self {
            TlsError::Read { key, .. } | TlsError::Pem { key, .. } => {
                if *key == "tls_cert" {
                    "server.tls_cert"
                } else {
                    "server.tls_key"
                }
            }
            TlsError::Mismatch { .. } => "server.tls_key",
        }
    }
}

/// The server's TLS settings, ready for the acceptor.
pub type ServerTls = Arc<rustls::ServerConfig>;

/// Reads and checks the certificate chain and key.
pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
    let read = |name: &'static str, path: &Path| {
        std::fs::read(path).map_err(|error| TlsError::Read { key: name, path: path.to_owned(), error })
    };
    let cert_pem = read("tls_cert", cert)?;
    let key_pem = read("tls_key", key)?;
    let pem_error =
        |name, path: &Path, what, error: String| TlsError::Pem { key: name, path: path.to_owned(), what, error };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("tls_cert", cert, "certificates", e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error("tls_cert", cert, "certificates", "no CERTIFICATE section found".into()));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        let error = match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY section found".to_owned(),
            other => other.to_string(),
        };
        pem_error("tls_key", key, "a private key", error)
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Mismatch { path: key.to_owned(), error: e.to_string() })?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| TlsError::Mismatch { path: key.to_owned(), error: e.to_string() })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
