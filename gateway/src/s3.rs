//! S3 (placeholder until written).
use axum::extract::Request;
use axum::response::{IntoResponse, Response};

use crate::server::RequestCtx;

pub async fn handle(_ctx: RequestCtx, _req: Request) -> Response {
    (http::StatusCode::NOT_IMPLEMENTED, "not yet\n").into_response()
}
