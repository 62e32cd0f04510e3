//! Server-side TLS (feature `rustls`): a rustls configuration from a certificate chain and
//! its private key, for [`Listener::tls`](crate::Listener::tls) and socketry-axum.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use socketry::{Acceptor, Listener, tls};
//!
//! let config = tls::server_config_from_pem_files("cert.pem", "key.pem")?;
//! let tcp = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
//! let mut incoming = Listener::new(Acceptor::new()).tls(config).serve(tcp);
//! # let _ = incoming.accept().await;
//! # Ok(()) }
//! # let _ = run;
//! ```
//!
//! The PEM files are what certificate authorities and `certbot` give (`fullchain.pem` and
//! `privkey.pem`): the leaf certificate first, then the intermediates; the key as PKCS#8,
//! PKCS#1 (RSA) or SEC1 (EC).

use std::{path::Path, sync::Arc};

use tokio_rustls::rustls::{
    self, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {path}: {source}")]
    Pem {
        /// "certificates" or "private key".
        what: &'static str,
        /// The file.
        path: String,
        /// The cause.
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("no certificate in {0}")]
    NoCertificate(String),
    /// rustls refused the certificate and key (a key that does not match, say).
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// `config` with its ALPN list fit for serving WebSockets: `h2` (when `http2`) and
/// `http/1.1` when it has none; without `http2`, `h2` is taken out of a list that has it, as a
/// client that picked it would get HTTP/1.1 answers. Used by the
/// [`Listener`](crate::Listener) and socketry-axum's server.
pub fn with_alpn(config: Arc<ServerConfig>, http2: bool) -> Arc<ServerConfig> {
    let has_h2 = config.alpn_protocols.iter().any(|p| p == b"h2");
    if !config.alpn_protocols.is_empty() && (http2 || !has_h2) {
        return config;
    }
    let mut config = Arc::unwrap_or_clone(config);
    if config.alpn_protocols.is_empty() {
        if http2 {
            config.alpn_protocols.push(b"h2".to_vec());
        }
        config.alpn_protocols.push(b"http/1.1".to_vec());
    } else {
        config.alpn_protocols.retain(|p| p != b"h2");
    }
    Arc::new(config)
}

/// A server configuration for `certs` (leaf first) and `key`: TLS 1.2 and 1.3 with the ring
/// provider, no client authentication, no ALPN (the [`Listener`](crate::Listener) and
/// socketry-axum's server set `h2` and `http/1.1`).
///
/// # Errors
///
/// [`TlsConfigError::Rustls`] when the key does not fit the certificate or is unsupported.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// [`server_config`] from PEM files: the certificate chain (leaf first) and the private key.
///
/// # Errors
///
/// [`TlsConfigError::Pem`] when a file cannot be read or holds no such PEM section,
/// [`TlsConfigError::NoCertificate`], and as [`server_config`].
pub fn server_config_from_pem_files(
    cert: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let (cert, key) = (cert.as_ref(), key.as_ref());
    let pem_error = |what, path: &Path| {
        let path = path.display().to_string();
        move |source| TlsConfigError::Pem { what, path, source }
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(pem_error("certificates", cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error("certificates", cert))?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate(cert.display().to_string()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem_error("private key", key))?;
    server_config(certs, key)
}

/// [`server_config`] from PEM text held in memory.
///
/// # Errors
///
/// As [`server_config_from_pem_files`].
pub fn server_config_from_pem(
    cert: &[u8],
    key: &[u8],
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let pem_error = |what| {
        move |source| TlsConfigError::Pem {
            what,
            path: "memory".to_owned(),
            source,
        }
    };
    let certs = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error("certificates"))?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate("memory".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(pem_error("private key"))?;
    server_config(certs, key)
}
