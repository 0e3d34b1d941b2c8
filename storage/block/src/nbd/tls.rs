//! rustls server configuration for NBD_OPT_STARTTLS.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use super::NbdError;
use super::config::TlsConfig;

fn read_pem(path: &Path) -> Result<Vec<u8>, NbdError> {
    // Runs once at startup, before serving, so blocking file I/O is fine here.
    std::fs::read(path).map_err(|e| NbdError::Tls(format!("read {}: {e}", path.display())))
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, NbdError> {
    let pem = read_pem(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NbdError::Tls(format!("parse {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(NbdError::Tls(format!(
            "{}: no certificates",
            path.display()
        )));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, NbdError> {
    let pem = read_pem(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| NbdError::Tls(format!("parse {}: {e}", path.display())))?
        .ok_or_else(|| NbdError::Tls(format!("{}: no private key", path.display())))
}

/// Builds the acceptor. TLS 1.2 stays enabled: the NBD spec requires it, and older GnuTLS
/// clients (qemu, libnbd) may not offer 1.3.
pub(crate) fn acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, NbdError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| NbdError::Tls(e.to_string()))?;
    let builder = match &cfg.ca_pem {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| NbdError::Tls(format!("CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| NbdError::Tls(format!("client verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs(&cfg.cert_pem)?, key(&cfg.key_pem)?)
        .map_err(|e| NbdError::Tls(format!("server certificate: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
