//! A minimal S3 client: one HTTP/1.1 keep-alive connection (hyper), path-style
//! URLs, SigV4 header auth. Reconnects after any failure, as a boto3 client's
//! connection pool would.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::sigv4::{
    EMPTY_SHA256, RequestToSign, Signer, amz_date, now_unix, sha256_hex, uri_encode,
};

/// Bound on connecting to the endpoint (boto3's connect_timeout in loadgen.py).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of an error response body kept for the report.
const ERROR_BODY_BYTES_MAX: usize = 4096;
/// Characters of an error message kept (loadgen.py keeps 300).
const ERROR_CHARS_MAX: usize = 300;

/// Where requests go and who signs them; shared by all workers.
#[derive(Debug)]
pub struct Endpoint {
    /// `host:port` to connect to and to send as `Host`.
    pub authority: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
}

impl Endpoint {
    /// Parse `http://host[:port][/]`; only plain HTTP is supported.
    pub fn parse(url: &str, access_key: &str, secret_key: &str, region: &str) -> Result<Endpoint> {
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("endpoint {url:?}: only http:// endpoints are supported");
        };
        let authority = rest.split('/').next().unwrap_or("");
        if authority.is_empty() || rest.trim_end_matches('/') != authority {
            bail!("endpoint {url:?}: expected http://host[:port] without a path");
        }
        Ok(Endpoint {
            authority: authority.to_owned(),
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            region: region.to_owned(),
        })
    }

    fn connect_addr(&self) -> String {
        // `[::1]:8080`, `host:8080` as is; no port → 80.
        let has_port = match self.authority.rfind(']') {
            Some(i) => self.authority[i..].contains(':'),
            None => self.authority.contains(':'),
        };
        if has_port {
            self.authority.clone()
        } else {
            format!("{}:80", self.authority)
        }
    }
}

/// One connection's worth of S3 client.
#[derive(Debug)]
pub struct S3Client {
    endpoint: Arc<Endpoint>,
    signer: Signer,
    conn: Option<SendRequest<Full<Bytes>>>,
    op_timeout: Duration,
}

impl S3Client {
    pub fn new(endpoint: Arc<Endpoint>, op_timeout: Duration) -> S3Client {
        let signer = Signer::new(&endpoint.access_key, &endpoint.secret_key, &endpoint.region);
        S3Client {
            endpoint,
            signer,
            conn: None,
            op_timeout,
        }
    }

    /// Open the connection now if there is none (so the first request of a
    /// phase does not pay for it). Errors are left for the next request.
    pub async fn warm_up(&mut self) {
        if self.conn.is_none() {
            self.conn = self.connect().await.ok();
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let addr = self.endpoint.connect_addr();
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
            .await
            .map_err(|_| anyhow!("connect to {addr}: timed out"))?
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the peer closes; a failure shows up
            // as an error on the request that was in flight.
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Send one signed request; returns status and the (unread) body.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
        payload_hash: &str,
    ) -> Result<(StatusCode, Incoming)> {
        let mut sender = match self.conn.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        sender.ready().await.context("connection not ready")?;
        let date = amz_date(now_unix());
        let auth = self.signer.authorization(&RequestToSign {
            method: method.as_str(),
            path,
            query: &[],
            headers: &[
                ("host", &self.endpoint.authority),
                ("x-amz-content-sha256", payload_hash),
                ("x-amz-date", &date),
            ],
            payload_hash,
            amz_date: &date,
        });
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, &self.endpoint.authority)
            .header("x-amz-content-sha256", payload_hash)
            .header("x-amz-date", &date)
            .header(header::AUTHORIZATION, auth);
        if method == Method::PUT || !body.is_empty() {
            req = req.header(header::CONTENT_LENGTH, body.len());
        }
        let resp = sender
            .send_request(req.body(Full::new(body))?)
            .await
            .with_context(|| format!("{method} {path}"))?;
        // Keep the connection only once the request went through; the caller
        // drops it again (via `run`) if reading the body fails.
        self.conn = Some(sender);
        let status = resp.status();
        Ok((status, resp.into_body()))
    }

    /// Run `op` under the per-request timeout; on any failure drop the
    /// connection so the next request starts on a fresh one.
    async fn run<T>(
        &mut self,
        what: &str,
        op: impl AsyncFnOnce(&mut S3Client) -> Result<T>,
    ) -> Result<T> {
        let timeout = self.op_timeout;
        let r = match tokio::time::timeout(timeout, op(self)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow!("{what}: no complete response within {timeout:?}")),
        };
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    pub async fn put_object(
        &mut self,
        bucket: &str,
        key: &str,
        body: Bytes,
        sha256: &str,
    ) -> Result<()> {
        let path = object_path(bucket, key);
        self.run("PUT", async |c| {
            let (status, resp) = c.send(Method::PUT, &path, body, sha256).await?;
            expect_status(status, resp, &[StatusCode::OK], "PUT", &path).await?;
            Ok(())
        })
        .await
    }

    /// Read the whole object, discarding it; returns its length.
    pub async fn get_object(&mut self, bucket: &str, key: &str) -> Result<u64> {
        let path = object_path(bucket, key);
        self.run("GET", async |c| {
            let (status, mut resp) = c
                .send(Method::GET, &path, Bytes::new(), EMPTY_SHA256)
                .await?;
            if status != StatusCode::OK {
                return Err(status_error(status, resp, "GET", &path).await);
            }
            let mut n = 0u64;
            while let Some(frame) = resp.frame().await {
                let frame = frame.with_context(|| format!("GET {path}: reading body"))?;
                if let Some(d) = frame.data_ref() {
                    n += d.len() as u64;
                }
            }
            Ok(n)
        })
        .await
    }

    pub async fn delete_object(&mut self, bucket: &str, key: &str) -> Result<()> {
        self.delete("DELETE", object_path(bucket, key)).await
    }

    /// DELETE `path`, expecting 204 (or 200).
    async fn delete(&mut self, what: &'static str, path: String) -> Result<()> {
        self.run(what, async |c| {
            let (status, resp) = c
                .send(Method::DELETE, &path, Bytes::new(), EMPTY_SHA256)
                .await?;
            expect_status(
                status,
                resp,
                &[StatusCode::NO_CONTENT, StatusCode::OK],
                "DELETE",
                &path,
            )
            .await
        })
        .await
    }

    /// True if the bucket exists and is ours (HEAD 200).
    pub async fn head_bucket(&mut self, bucket: &str) -> Result<bool> {
        let path = format!("/{}", uri_encode(bucket, false));
        self.run("HEAD", async |c| {
            let (status, mut resp) = c
                .send(Method::HEAD, &path, Bytes::new(), EMPTY_SHA256)
                .await?;
            while let Some(f) = resp.frame().await {
                f?;
            }
            Ok(status == StatusCode::OK)
        })
        .await
    }

    /// Create the bucket (with a LocationConstraint outside us-east-1, as boto3 does).
    pub async fn create_bucket(&mut self, bucket: &str) -> Result<()> {
        let path = format!("/{}", uri_encode(bucket, false));
        let body = if self.endpoint.region == "us-east-1" {
            Bytes::new()
        } else {
            Bytes::from(format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.endpoint.region
            ))
        };
        let hash = sha256_hex(&body);
        self.run("PUT bucket", async |c| {
            let (status, resp) = c.send(Method::PUT, &path, body, &hash).await?;
            expect_status(status, resp, &[StatusCode::OK], "PUT", &path).await
        })
        .await
    }

    pub async fn delete_bucket(&mut self, bucket: &str) -> Result<()> {
        let path = format!("/{}", uri_encode(bucket, false));
        self.delete("DELETE bucket", path).await
    }
}

fn object_path(bucket: &str, key: &str) -> String {
    format!("/{}/{}", uri_encode(bucket, false), uri_encode(key, true))
}

/// Drain the body; error unless the status is one of `ok`.
async fn expect_status(
    status: StatusCode,
    mut body: Incoming,
    ok: &[StatusCode],
    method: &str,
    path: &str,
) -> Result<()> {
    if !ok.contains(&status) {
        return Err(status_error(status, body, method, path).await);
    }
    while let Some(f) = body.frame().await {
        f.with_context(|| format!("{method} {path}: reading response"))?;
    }
    Ok(())
}

/// An error naming the status and the start of the S3 error body.
async fn status_error(
    status: StatusCode,
    mut body: Incoming,
    method: &str,
    path: &str,
) -> anyhow::Error {
    let mut text = Vec::new();
    while text.len() < ERROR_BODY_BYTES_MAX {
        match body.frame().await {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    text.extend_from_slice(d);
                }
            }
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&text);
    let text = text.replace('\n', " ");
    let mut msg = format!("{method} {path}: HTTP {status}: {}", text.trim());
    if msg.len() > ERROR_CHARS_MAX {
        let mut cut = ERROR_CHARS_MAX;
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        msg.truncate(cut);
    }
    anyhow!(msg)
}
