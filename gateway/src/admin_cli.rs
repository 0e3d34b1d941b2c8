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
}

/// An authenticated admin session.
#[derive(Debug)]
pub struct AdminClient {
    base: String,
    token: String,
    http: Client<hyper_util::client::legacy::connect::HttpConnector, String>,
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
        // No idle connection reuse: a long admin call (flatten, rollback) right after the auth
        // call must not race the server closing a kept-alive connection.
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http();
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
        let bytes = resp.into_body().collect().await?.to_bytes();
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
