//! The cluster CA and node certificates (rcgen), and rustls configurations that require them on
//! both sides of every connection.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::NetError;
use crate::limits;

/// ALPN protocol id; QUIC requires one and it keeps other TLS services off the port.
pub(crate) const ALPN: &[u8] = b"cairn-rpc/1";

fn cfg_err(what: &str, e: impl std::fmt::Display) -> NetError {
    NetError::Config(format!("{what}: {e}"))
}

fn ca_params(cluster_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Cairn");
    dn.push(
        DnType::CommonName,
        format!("cairn cluster CA {cluster_name}"),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// The cluster certificate authority, created once at bootstrap. Its key signs node certificates;
/// every node trusts exactly this certificate.
#[derive(Clone)]
pub struct ClusterCa {
    cluster_name: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ClusterCa {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("cluster_name", &self.cluster_name)
            .finish_non_exhaustive()
    }
}

/// A node's certificate (SAN: node name and IPs) and private key, both PEM.
#[derive(Clone)]
pub struct NodeCert {
    pub node_name: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCert")
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// Create a new CA (ECDSA P-256).
    pub fn generate(cluster_name: &str) -> Result<ClusterCa, NetError> {
        let key = KeyPair::generate().map_err(|e| cfg_err("generate CA key", e))?;
        let cert = ca_params(cluster_name)
            .self_signed(&key)
            .map_err(|e| cfg_err("self-sign CA", e))?;
        Ok(ClusterCa {
            cluster_name: cluster_name.to_owned(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Load a CA saved by `generate`. The cluster name must be the one it was generated with:
    /// issued certificates name the CA by its distinguished name, which is derived from it.
    pub fn from_pem(cluster_name: &str, cert_pem: &str, key_pem: &str) -> Result<Self, NetError> {
        KeyPair::from_pem(key_pem).map_err(|e| cfg_err("parse CA key", e))?;
        CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| cfg_err("parse CA certificate", e))?;
        Ok(ClusterCa {
            cluster_name: cluster_name.to_owned(),
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    /// Issue a node certificate: the node name as DNS SAN (what handlers see as `peer_name`)
    /// plus the node's IPs (what clients verify when they dial an address).
    pub fn issue_node(&self, node_name: &str, ips: &[IpAddr]) -> Result<NodeCert, NetError> {
        if node_name.is_empty() || node_name.len() > limits::NODE_NAME_BYTES_MAX {
            return Err(NetError::Config(format!("bad node name {node_name:?}")));
        }
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(|e| cfg_err("parse CA key", e))?;
        let issuer = Issuer::new(ca_params(&self.cluster_name), ca_key);
        let key = KeyPair::generate().map_err(|e| cfg_err("generate node key", e))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_name);
        params.distinguished_name = dn;
        let dns = node_name
            .to_owned()
            .try_into()
            .map_err(|e| cfg_err("node name is not a valid DNS name", e))?;
        params.subject_alt_names = std::iter::once(SanType::DnsName(dns))
            .chain(ips.iter().map(|ip| SanType::IpAddress(*ip)))
            .collect();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Every node is both client and server.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| cfg_err("sign node certificate", e))?;
        Ok(NodeCert {
            node_name: node_name.to_owned(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What a node needs to speak RPC: the cluster CA certificate it trusts and its own certificate.
#[derive(Clone)]
pub struct TlsIdentity {
    ca_cert: CertificateDer<'static>,
    cert_chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    pub node_name: String,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    pub fn from_pem(ca_cert_pem: &str, node: &NodeCert) -> Result<Self, NetError> {
        let ca_cert = CertificateDer::from_pem_slice(ca_cert_pem.as_bytes())
            .map_err(|e| cfg_err("parse CA certificate", e))?;
        let cert = CertificateDer::from_pem_slice(node.cert_pem.as_bytes())
            .map_err(|e| cfg_err("parse node certificate", e))?;
        let key = PrivateKeyDer::from_pem_slice(node.key_pem.as_bytes())
            .map_err(|e| cfg_err("parse node key", e))?;
        Ok(TlsIdentity {
            ca_cert,
            cert_chain: vec![cert],
            key: Arc::new(key),
            node_name: node.node_name.clone(),
        })
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, NetError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca_cert.clone())
            .map_err(|e| cfg_err("CA certificate", e))?;
        Ok(Arc::new(roots))
    }

    /// Server side: a client certificate signed by the cluster CA is mandatory.
    pub fn server_config(&self) -> Result<ServerConfig, NetError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone())
            .build()
            .map_err(|e| cfg_err("client verifier", e))?;
        let mut cfg = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| cfg_err("TLS versions", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())
            .map_err(|e| cfg_err("server certificate", e))?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        Ok(cfg)
    }

    /// A public HTTPS server (the S3/Swift gateway): this certificate, no client certificate
    /// asked for (S3 and Swift clients authenticate by signature or token), TLS 1.2 or 1.3,
    /// HTTP/1.1.
    pub fn https_server_config(&self) -> Result<ServerConfig, NetError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| cfg_err("TLS versions", e))?
            .with_no_client_auth()
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())
            .map_err(|e| cfg_err("server certificate", e))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }

    /// Client side: trusts only the cluster CA and presents this node's certificate. The server
    /// is verified against the IP address dialled, which its certificate must list.
    pub fn client_config(&self) -> Result<ClientConfig, NetError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| cfg_err("TLS versions", e))?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.cert_chain.clone(), self.key.clone_key())
            .map_err(|e| cfg_err("client certificate", e))?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        Ok(cfg)
    }
}

/// The node name of a verified peer certificate: its first DNS subject alternative name.
/// The certificate has already been verified by rustls; this only reads it.
pub(crate) fn peer_node_name(certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
    let cert = certs?.first()?;
    crate::der::first_dns_san(cert.as_ref()).filter(|n| n.len() <= limits::NODE_NAME_BYTES_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_name_comes_from_the_dns_san() {
        let ca = ClusterCa::generate("t").unwrap();
        let node = ca
            .issue_node(
                "node-7.rack-2",
                &["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            )
            .unwrap();
        let der = CertificateDer::from_pem_slice(node.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            peer_node_name(Some(&[der])).as_deref(),
            Some("node-7.rack-2")
        );
        assert_eq!(peer_node_name(None), None);
    }

    #[test]
    fn ca_reloads_from_pem_and_keeps_issuing() {
        let ca = ClusterCa::generate("t").unwrap();
        let again = ClusterCa::from_pem("t", &ca.cert_pem, &ca.key_pem).unwrap();
        let node = again.issue_node("n1", &[]).unwrap();
        let id = TlsIdentity::from_pem(&ca.cert_pem, &node).unwrap();
        assert!(id.server_config().is_ok() && id.client_config().is_ok());
        assert!(ca.issue_node("", &[]).is_err());
        assert!(ClusterCa::from_pem("t", "junk", &ca.key_pem).is_err());
    }
}
