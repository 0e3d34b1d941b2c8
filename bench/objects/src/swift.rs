//! OpenStack Swift through its native API (tempauth token, then `PUT`/`GET /v1/AUTH_x/c/o`),
//! with a minimal keep-alive HTTP/1.1 client: one connection per worker, so the client costs
//! about what the Cairn cluster client costs (no Python on the client side, unlike loadgen.py).

use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::measure::{Load, Sample, run_async};

/// Response header lines accepted before giving up on a response.
const HEADER_LINES_MAX: usize = 200;
/// Largest response body read (the objects here are at most a few MiB).
const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// One HTTP/1.1 connection.
#[derive(Debug)]
struct Conn {
    stream: BufReader<TcpStream>,
}

/// A response: status, lower-cased header names, body.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Conn {
    async fn connect(host: &str) -> Result<Conn> {
        let s = TcpStream::connect(host)
            .await
            .with_context(|| format!("connecting to Swift at {host}"))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            stream: BufReader::new(s),
        })
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: swift\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes()).await?;
        if !body.is_empty() {
            s.write_all(body).await?;
        }
        s.flush().await?;

        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut out = Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        };
        let mut header_done = false;
        for _ in 0..HEADER_LINES_MAX {
            line.clear();
            let n = self.stream.read_line(&mut line).await?;
            ensure!(n > 0, "connection closed inside the response head");
            let l = line.trim_end();
            if l.is_empty() {
                header_done = true;
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                out.headers
                    .push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        ensure!(header_done, "more than {HEADER_LINES_MAX} header lines");
        if method == "HEAD" || status == 204 || status == 304 {
            return Ok(out);
        }
        if out
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            self.read_chunked(&mut out.body).await?;
        } else {
            let len: usize = out
                .header("content-length")
                .context("response without Content-Length")?
                .parse()?;
            ensure!(len <= RESPONSE_BYTES_MAX, "response of {len} bytes");
            out.body.resize(len, 0);
            self.stream.read_exact(&mut out.body).await?;
        }
        Ok(out)
    }

    async fn read_chunked(&mut self, body: &mut Vec<u8>) -> Result<()> {
        let mut line = String::new();
        // Every chunk but the last holds at least one byte.
        for _ in 0..=RESPONSE_BYTES_MAX {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .with_context(|| format!("bad chunk size {line:?}"))?;
            if size == 0 {
                line.clear();
                self.stream.read_line(&mut line).await?; // the CRLF after the last chunk
                return Ok(());
            }
            ensure!(
                body.len() + size <= RESPONSE_BYTES_MAX,
                "response too large"
            );
            let at = body.len();
            body.resize(at + size, 0);
            self.stream.read_exact(&mut body[at..]).await?;
            line.clear();
            self.stream.read_line(&mut line).await?;
        }
        bail!("too many chunks")
    }
}

/// A logged-in Swift endpoint with one connection slot per worker.
#[derive(Debug)]
pub struct Swift {
    host: String,
    token: String,
    container_path: String,
    conns: Vec<Mutex<Option<Conn>>>,
}

impl Swift {
    /// Authenticates with tempauth (`user`, `key`) at `url` (`http://host:port`) and creates
    /// `container`.
    pub async fn connect(
        url: &str,
        user: &str,
        key: &str,
        container: &str,
        workers: usize,
    ) -> Result<Swift> {
        let host = url
            .strip_prefix("http://")
            .context("the Swift URL must be http://host:port")?
            .trim_end_matches('/')
            .to_owned();
        let mut c = Conn::connect(&host).await?;
        let r = c
            .request(
                "GET",
                "/auth/v1.0",
                &[("X-Auth-User", user), ("X-Auth-Key", key)],
                &[],
            )
            .await?;
        ensure!(r.status / 100 == 2, "tempauth answered {}", r.status);
        let token = r
            .header("x-auth-token")
            .context("no X-Auth-Token")?
            .to_owned();
        let storage = r
            .header("x-storage-url")
            .context("no X-Storage-Url")?
            .to_owned();
        let account_path = storage
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
            .with_context(|| format!("bad storage URL {storage}"))?;
        let container_path = format!("{account_path}/{container}");
        let r = c
            .request("PUT", &container_path, &[("X-Auth-Token", &token)], &[])
            .await?;
        ensure!(
            r.status / 100 == 2,
            "creating container {container_path}: {}",
            r.status
        );
        Ok(Swift {
            host,
            token,
            container_path,
            conns: (0..workers).map(|_| Mutex::new(None)).collect(),
        })
    }

    /// One request on worker `w`'s connection (opened on first use, reopened after an error
    /// or a `Connection: close`).
    async fn call(&self, w: usize, method: &str, object: &str, body: &[u8]) -> Result<Response> {
        let slot = self.conns.get(w).context("worker out of range")?;
        let mut guard = slot.lock().await;
        if guard.is_none() {
            *guard = Some(Conn::connect(&self.host).await?);
        }
        let path = format!("{}/{object}", self.container_path);
        let headers = [
            ("X-Auth-Token", self.token.as_str()),
            ("Content-Type", "application/octet-stream"),
        ];
        let result = match guard.as_mut() {
            Some(conn) => conn.request(method, &path, &headers, body).await,
            None => bail!("no connection"),
        };
        match &result {
            Ok(r)
                if !r
                    .header("connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close")) => {}
            _ => *guard = None,
        }
        result
    }
}

fn object_name(tag: &str, i: usize) -> String {
    format!("{tag}/obj-{i:08}")
}

/// PUT `ops` objects of `data`.
pub async fn put(swift: &Arc<Swift>, tag: &str, load: Load, data: Bytes) -> Result<Sample> {
    let swift = swift.clone();
    let tag = tag.to_owned();
    let len = data.len();
    run_async(load.ops, load.conc, len, load.limit, move |w, i| {
        let swift = swift.clone();
        let data = data.clone();
        let object = object_name(&tag, i);
        async move {
            let r = swift.call(w, "PUT", &object, &data).await?;
            ensure!(r.status == 201, "PUT {object}: {}", r.status);
            Ok(())
        }
    })
    .await
}

/// GET (whole body) the objects a `put` with the same `tag` wrote.
pub async fn get(swift: &Arc<Swift>, tag: &str, load: Load, len: usize) -> Result<Sample> {
    let swift = swift.clone();
    let tag = tag.to_owned();
    run_async(load.ops, load.conc, len, load.limit, move |w, i| {
        let swift = swift.clone();
        let object = object_name(&tag, i);
        async move {
            let r = swift.call(w, "GET", &object, &[]).await?;
            ensure!(r.status == 200, "GET {object}: {}", r.status);
            ensure!(
                r.body.len() == len,
                "{object}: read {} of {len} bytes",
                r.body.len()
            );
            Ok(())
        }
    })
    .await
}
