//! Calls as the rest of Cairn sees them: requests, responses, the transport and handler traits,
//! and typed helpers that encode message enums with postcard.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::body::Body;
use crate::error::NetError;
use crate::limits;

/// Identifies one call end to end; it travels on the wire and is entered into the server's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

impl RequestId {
    /// A random id. Callers that already have an id (e.g. the API request's) should reuse it.
    pub fn random() -> Self {
        RequestId(rand::random())
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One outgoing call.
#[derive(Debug)]
pub struct Request {
    pub id: RequestId,
    /// The encoded message (usually postcard), at most `limits::HEADER_BYTES_MAX`.
    pub header: Bytes,
    pub body: Body,
    /// Covers connecting, waiting for an in-flight slot, sending the head (and a single-chunk
    /// body) and receiving the response head. Streamed bodies are bounded separately by
    /// `limits::BODY_CHUNK_IDLE_TIMEOUT_MS` per chunk. Clamped to `limits::CALL_TIMEOUT_MS_MAX`.
    pub timeout: Duration,
}

impl Request {
    pub fn new(header: Bytes, body: Body) -> Self {
        Request {
            id: RequestId::random(),
            header,
            body,
            timeout: Duration::from_millis(limits::CALL_TIMEOUT_MS_DEFAULT),
        }
    }

    pub(crate) fn timeout_ms(&self) -> u64 {
        let ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        ms.clamp(1, limits::CALL_TIMEOUT_MS_MAX)
    }
}

/// What a handler returns and a caller receives.
#[derive(Debug, Default)]
pub struct Response {
    pub header: Bytes,
    pub body: Body,
}

impl Response {
    pub fn new(header: Bytes, body: Body) -> Self {
        Response { header, body }
    }

    /// Encode a typed response message with postcard.
    pub fn encode<T: Serialize>(msg: &T, body: Body) -> Result<Response, HandlerError> {
        let header = postcard::to_stdvec(msg)
            .map_err(|e| HandlerError::new(format!("encode response: {e}")))?;
        Ok(Response {
            header: Bytes::from(header),
            body,
        })
    }
}

/// What a handler knows about the call it serves.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub request_id: RequestId,
    pub peer_addr: SocketAddr,
    /// The node name from the peer's verified cluster certificate (its first DNS SAN).
    pub peer_name: Arc<str>,
    /// The caller's timeout; work after it has passed is wasted.
    pub timeout: Duration,
}

/// A handler's refusal, returned to the caller as `NetError::Remote(message)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    pub message: String,
}

impl HandlerError {
    pub fn new(message: impl Into<String>) -> Self {
        HandlerError {
            message: message.into(),
        }
    }
}

/// Decode a typed request message (server side).
pub fn decode_request<T: DeserializeOwned>(header: &[u8]) -> Result<T, HandlerError> {
    postcard::from_bytes(header).map_err(|e| HandlerError::new(format!("decode request: {e}")))
}

/// The server side of RPC: one call in, one response out. Implementations are shared between
/// connections and must be cheap to call concurrently.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        ctx: CallContext,
        header: Bytes,
        body: Body,
    ) -> impl Future<Output = Result<Response, HandlerError>> + Send;
}

/// Object-safe form of `Handler`, so servers and the test network can hold any handler.
pub(crate) trait DynHandler: Send + Sync + 'static {
    fn handle_dyn(
        &self,
        ctx: CallContext,
        header: Bytes,
        body: Body,
    ) -> BoxFuture<'_, Result<Response, HandlerError>>;
}

impl<H: Handler> DynHandler for H {
    fn handle_dyn(
        &self,
        ctx: CallContext,
        header: Bytes,
        body: Body,
    ) -> BoxFuture<'_, Result<Response, HandlerError>> {
        Box::pin(self.handle(ctx, header, body))
    }
}

/// The client side of RPC, implemented by QUIC, TCP+TLS and the in-process test network.
/// Object safe so the node crate can hold an `Arc<dyn Transport>`.
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    fn call(&self, peer: SocketAddr, req: Request) -> BoxFuture<'_, Result<Response, NetError>>;
}

/// Options of one typed call.
#[derive(Debug, Clone, Copy)]
pub struct CallOptions {
    pub timeout: Duration,
    /// Reuse an id from upstream (e.g. the API request); `None` picks a random one.
    pub request_id: Option<RequestId>,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            timeout: Duration::from_millis(limits::CALL_TIMEOUT_MS_DEFAULT),
            request_id: None,
        }
    }
}

/// Typed calls over any transport: messages are serde types encoded with postcard.
#[derive(Debug, Clone)]
pub struct RpcClient {
    transport: Arc<dyn Transport>,
}

impl RpcClient {
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        RpcClient { transport }
    }

    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Call with default options (10 s timeout, random request id).
    pub async fn call<Req, Resp>(
        &self,
        peer: SocketAddr,
        req: &Req,
        body: Body,
    ) -> Result<(Resp, Body), NetError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        self.call_with(peer, req, body, CallOptions::default())
            .await
    }

    pub async fn call_with<Req, Resp>(
        &self,
        peer: SocketAddr,
        req: &Req,
        body: Body,
        opts: CallOptions,
    ) -> Result<(Resp, Body), NetError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let header = postcard::to_stdvec(req)
            .map_err(|e| NetError::protocol(format!("encode request: {e}")))?;
        let request = Request {
            id: opts.request_id.unwrap_or_else(RequestId::random),
            header: Bytes::from(header),
            body,
            timeout: opts.timeout,
        };
        let resp = self.transport.call(peer, request).await?;
        let msg = postcard::from_bytes(&resp.header)
            .map_err(|e| NetError::protocol(format!("decode response: {e}")))?;
        Ok((msg, resp.body))
    }
}
