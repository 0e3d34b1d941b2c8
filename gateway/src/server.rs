//! The HTTP front door: one listener serving S3 (path-style), Swift (`/v1/...`, `/auth/v1.0`)
//! and the admin API (`/admin/v1/...`). Every request gets an id (in its tracing span and in
//! `x-amz-request-id` / `X-Trans-Id`), and requests are routed by path, since S3 dispatches on
//! methods and query parameters rather than on a path grammar a router could express.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use cairn_meta::{AnyMetaStore, IdentityStore};
use cairn_node::ClusterClient;
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span};

use crate::objects::ObjectLayer;

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub listen: SocketAddr,
    /// The S3 region this gateway answers for (SigV4 scopes must name it).
    pub region: String,
    /// Serve the image admin API over this block service.
    pub block: Option<Arc<cairn_block::BlockService<AnyMetaStore>>>,
    /// Where Swift uploads without a Content-Length wait before they are written
    /// ([`crate::spool`]).
    pub spool_dir: std::path::PathBuf,
    /// Serve HTTPS with this configuration instead of plain HTTP.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

/// What every request handler can reach.
#[derive(Debug)]
pub struct GatewayState {
    pub objects: ObjectLayer,
    pub identity: IdentityStore<AnyMetaStore>,
    pub region: String,
    /// The block layer, when this process serves images (`cairn up`).
    pub block: Option<Arc<cairn_block::BlockService<AnyMetaStore>>>,
    pub spool: crate::spool::Spool,
    /// Served over HTTPS (storage URLs handed out say so).
    pub https: bool,
    /// Swift account totals, summed over containers and kept briefly.
    pub account_stats: crate::account_stats::AccountStatsCache,
}

/// One request's context.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub state: Arc<GatewayState>,
    pub request_id: String,
}

/// A running gateway; dropping it does not stop it, [`Gateway::shutdown`] does.
#[derive(Debug)]
pub struct Gateway {
    local_addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// Binds and serves. `tasks` are background loops stopped with the gateway.
    pub async fn start(
        opts: GatewayOptions,
        client: Arc<ClusterClient>,
        identity: IdentityStore<AnyMetaStore>,
        tasks: Vec<JoinHandle<()>>,
    ) -> anyhow::Result<Gateway> {
        std::fs::create_dir_all(&opts.spool_dir).map_err(|e| {
            anyhow::anyhow!(
                "creating the spool directory {}: {e}",
                opts.spool_dir.display()
            )
        })?;
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|e| anyhow::anyhow!("gateway cannot listen on {}: {e}", opts.listen))?;
        let local_addr = listener.local_addr()?;
        let state = Arc::new(GatewayState {
            objects: ObjectLayer::new(client),
            identity,
            region: opts.region,
            block: opts.block,
            spool: crate::spool::Spool::new(opts.spool_dir),
            https: opts.tls.is_some(),
            account_stats: Default::default(),
        });
        let app = axum::Router::new().fallback(dispatch).with_state(state);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some(tls) = opts.tls {
            let server = tokio::spawn(serve_https(listener, app, tls, stopped));
            info!(%local_addr, "gateway serving S3 and Swift over HTTPS");
            return Ok(Gateway {
                local_addr,
                stop: Some(stop),
                server: Some(server),
                tasks,
            });
        }
        // Small responses must not wait for the client's delayed ACK (Nagle).
        let listener =
            axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY not set");
                }
            });
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        info!(%local_addr, "gateway serving S3 and Swift");
        Ok(Gateway {
            local_addr,
            stop: Some(stop),
            server: Some(server),
            tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets requests in flight finish (bounded), stops background loops.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut server) = self.server.take() {
            // Past the wait, the listener must not outlive the gateway.
            if tokio::time::timeout(std::time::Duration::from_secs(12), &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

/// A client gets this long to finish its TLS handshake, and then to send each request's head
/// (hyper's header read timeout, which also ends connections idle between requests).
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Connections being served at once over HTTPS; more wait in the listen backlog.
const HTTPS_CONNECTIONS_MAX: usize = 1024;
/// After the stop signal, requests in flight get this long to finish.
const HTTPS_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts TLS connections and serves each with hyper until `stopped`; then lets requests in
/// flight finish (bounded by [`HTTPS_DRAIN`]) and closes every connection.
async fn serve_https(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(HTTPS_CONNECTIONS_MAX));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    http.http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let http = Arc::new(http);
    loop {
        let (slot, (tcp, peer)) = tokio::select! {
            _ = &mut stopped => break,
            slot = slots.clone().acquire_owned() => {
                let Ok(slot) = slot else { break };
                let accepted = tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => accepted,
                };
                match accepted {
                    Ok(a) => (slot, a),
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let (acceptor, app, http) = (acceptor.clone(), app.clone(), http.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let stream =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let conn = http
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(HTTPS_DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTPS connections still open {HTTPS_DRAIN:?} after the stop; leaving them");
    }
    Ok(())
}

fn new_request_id() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // Ids only correlate logs; a clock-based one will do.
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return format!("{n:016x}");
    }
    hex::encode(b).to_uppercase()
}

#[axum::debug_handler]
async fn dispatch(State(state): State<Arc<GatewayState>>, req: Request) -> Response {
    let request_id = new_request_id();
    let span = info_span!("http", request_id = %request_id, method = %req.method(), path = %req.uri().path());
    let ctx = RequestCtx { state, request_id };
    // A request whose body is left unread (refused before it was needed) ends its connection:
    // the client's next request must not be parsed from the rest of that body.
    let has_body = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .is_some_and(|l| l.as_bytes() != b"0")
        || req.headers().contains_key(http::header::TRANSFER_ENCODING);
    async move {
        let path = req.uri().path();
        let response = if path == "/auth/v1.0" || path == "/auth/v1" {
            crate::swift::auth(ctx.clone(), req).await
        } else if path == "/v1" || path.starts_with("/v1/") {
            crate::swift::handle(ctx.clone(), req).await
        } else if path.starts_with("/admin/v1/") {
            crate::admin::handle(ctx.clone(), req).await
        } else if path == "/info" && !crate::s3::is_signed(&req) {
            // Swift's capabilities; a signed S3 request here is about a bucket named `info`.
            crate::swift::info(ctx.clone(), req).await
        } else if path == "/healthz" {
            Response::new(axum::body::Body::from("ok\n"))
        } else {
            crate::s3::handle(ctx.clone(), req).await
        };
        let mut response = response;
        if has_body && !response.status().is_success() {
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        tracing::debug!(status = response.status().as_u16(), "answered");
        response
    }
    .instrument(span)
    .await
}
