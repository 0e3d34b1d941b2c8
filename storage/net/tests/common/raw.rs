//! Helpers for tests that talk to servers below the transport API.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;

pub const ALPN: &[u8] = b"cairn-rpc/1";

/// A TLS client that trusts the CA but presents no certificate.
pub fn no_cert_config(ca_pem: &str) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let mut cfg =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg
}

pub async fn tls_connect(
    cfg: ClientConfig,
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
}

/// A well-formed request frame followed by an empty body.
pub fn request_bytes(header: &[u8]) -> Vec<u8> {
    let mut v = vec![1u8];
    v.extend_from_slice(&((13 + header.len()) as u32).to_le_bytes());
    v.push(1); // wire version
    v.extend_from_slice(&42u64.to_le_bytes());
    v.extend_from_slice(&5_000u32.to_le_bytes());
    v.extend_from_slice(header);
    v.extend_from_slice(&[5, 0, 0, 0, 0]); // END
    v
}
