//! `cairn project|user|role|key ...`: the identity admin commands, spoken to a gateway's
//! admin REST API (the gateway owns the control-plane store while it runs). Credentials come
//! from flags, the environment, or a `cairn up` endpoints file.

use anyhow::Context;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Where the gateway is and who the admin is.
#[derive(clap::Args, Debug, Clone)]
pub struct AdminTarget {
    /// Gateway base URL (default: the `cairn up` endpoints file's, else http://127.0.0.1:8080).
    #[arg(long, env = "CAIRN_URL", global = true)]
    pub url: Option<String>,
    /// `project:user` of an admin of the `admin` project.
    #[arg(long, env = "CAIRN_ADMIN_USER", global = true)]
    pub admin_user: Option<String>,
    /// That admin's password.
    #[arg(long, env = "CAIRN_ADMIN_KEY", hide_env_values = true, global = true)]
    pub admin_key: Option<String>,
    /// A `cairn up` endpoints.json to take the above from.
    #[arg(long, default_value = "cairn-data/endpoints.json", global = true)]
    pub endpoints: std::path::PathBuf,
    /// CA certificate (PEM) to verify an https:// gateway with (default: the endpoints
    /// file's `s3.ca_bundle`).
    #[arg(long, env = "CAIRN_CA_BUNDLE", global = true)]
    pub ca_bundle: Option<std::path::PathBuf>,
}

/// How requests reach the gateway: plain HTTP, or one TLS connection per request (admin calls
/// are few, and a fresh connection cannot race a kept-alive one being closed).
#[derive(Clone)]
enum AdminHttp {
    Plain(Box<Client<hyper_util::client::legacy::connect::HttpConnector, String>>),
    Tls {
        connector: tokio_rustls::TlsConnector,
        addr: String,
        server_name: tokio_rustls::rustls::pki_types::ServerName<'static>,
    },
}

impl std::fmt::Debug for AdminHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminHttp::Plain(_) => f.write_str("AdminHttp::Plain"),
            AdminHttp::Tls { addr, .. } => write!(f, "AdminHttp::Tls({addr})"),
        }
    }
}

impl AdminHttp {
    fn new(base: &str, ca_bundle: Option<&std::path::Path>) -> anyhow::Result<AdminHttp> {
        let Some(rest) = base.strip_prefix("https://") else {
            // No idle connection reuse: a long admin call (flatten, rollback) right after the
            // auth call must not race the server closing a kept-alive connection.
            let http = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build_http();
            return Ok(AdminHttp::Plain(Box::new(http)));
        };
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        let ca = ca_bundle.context(
            "an https:// gateway needs its CA certificate: --ca-bundle (or the endpoints file's s3.ca_bundle)",
        )?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("reading {}", ca.display()))?
        {
            roots.add(cert.with_context(|| format!("parsing {}", ca.display()))?)?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let addr = rest.split('/').next().unwrap_or(rest).to_string();
        let host = match addr.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h,
            _ => addr.as_str(),
        };
        let server_name = rustls::pki_types::ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        )
        .with_context(|| format!("{host} is not a host name or address"))?;
        let addr = if addr
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            addr
        } else {
            format!("{addr}:443")
        };
        Ok(AdminHttp::Tls {
            connector: tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)),
            addr,
            server_name,
        })
    }

    async fn request(
        &self,
        req: http::Request<String>,
    ) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
        match self {
            AdminHttp::Plain(c) => Ok(c.request(req).await?),
            AdminHttp::Tls {
                connector,
                addr,
                server_name,
            } => {
                let tcp = tokio::net::TcpStream::connect(addr.as_str()).await?;
                let tls = connector.connect(server_name.clone(), tcp).await?;
                let (mut send, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                        .await?;
                tokio::spawn(conn);
                // HTTP/1 over a direct connection wants the path, not the absolute URI.
                let (mut parts, body) = req.into_parts();
                let path = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into());
                parts.headers.insert(http::header::HOST, addr.parse()?);
                parts.uri = path.parse()?;
                Ok(send
                    .send_request(http::Request::from_parts(parts, body))
                    .await?)
            }
        }
    }
}

/// An authenticated admin session.
#[derive(Debug)]
pub struct AdminClient {
    base: String,
    token: String,
    http: AdminHttp,
}

const ADMIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl AdminClient {
    pub async fn connect(t: &AdminTarget) -> anyhow::Result<AdminClient> {
        let file: Option<Value> = std::fs::read(&t.endpoints)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let from_file = |ptr: &str| {
            file.as_ref()
                .and_then(|f| f.pointer(ptr))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let base = t
            .url
            .clone()
            .or_else(|| from_file("/s3/endpoint"))
            .unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let user = t
            .admin_user
            .clone()
            .or_else(|| from_file("/swift/user"))
            .context("name the admin: --admin-user project:user (or CAIRN_ADMIN_USER)")?;
        let key = t
            .admin_key
            .clone()
            .or_else(|| from_file("/swift/key"))
            .context("give the admin's password: --admin-key (or CAIRN_ADMIN_KEY)")?;
        let ca_bundle = t
            .ca_bundle
            .clone()
            .or_else(|| from_file("/s3/ca_bundle").map(std::path::PathBuf::from));
        let http = AdminHttp::new(&base, ca_bundle.as_deref())?;
        let req = http::Request::get(format!("{base}/auth/v1.0"))
            .header("x-auth-user", &user)
            .header("x-auth-key", &key)
            .body(String::new())?;
        let resp = tokio::time::timeout(ADMIN_TIMEOUT, http.request(req))
            .await
            .context("the gateway did not answer")??;
        anyhow::ensure!(
            resp.status().is_success(),
            "authentication as {user} failed: {}",
            resp.status()
        );
        let token = resp
            .headers()
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .context("no token in the auth answer")?
            .to_string();
        Ok(AdminClient { base, token, http })
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}/admin/v1/{path}", self.base))
            .header("x-auth-token", &self.token)
            .header("content-type", "application/json")
            .body(body.map(|b| b.to_string()).unwrap_or_default())?;
        let resp = tokio::time::timeout(ADMIN_TIMEOUT, self.http.request(req))
            .await
            .context("the gateway did not answer")??;
        let status = resp.status();
        let bytes = tokio::time::timeout(ADMIN_TIMEOUT, resp.into_body().collect())
            .await
            .context("the gateway's answer stalled")??
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!(
                "{method} {path}: {status}: {}",
                value["error"].as_str().unwrap_or("(no message)")
            );
        }
        Ok(value)
    }
}
