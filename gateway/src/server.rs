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
}

/// What every request handler can reach.
#[derive(Debug)]
pub struct GatewayState {
    pub objects: ObjectLayer,
    pub identity: IdentityStore<AnyMetaStore>,
    pub region: String,
    /// The block layer, when this process serves images (`cairn up`).
    pub block: Option<Arc<cairn_block::BlockService<AnyMetaStore>>>,
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
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|e| anyhow::anyhow!("gateway cannot listen on {}: {e}", opts.listen))?;
        let local_addr = listener.local_addr()?;
        let state = Arc::new(GatewayState {
            objects: ObjectLayer::new(client),
            identity,
            region: opts.region,
            block: opts.block,
        });
        let app = axum::Router::new().fallback(dispatch).with_state(state);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
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
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
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
