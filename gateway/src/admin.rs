//! The admin REST API (placeholder until written).
use axum::extract::Request;
use axum::response::{IntoResponse, Response};

use crate::server::RequestCtx;

pub async fn handle(_ctx: RequestCtx, _req: Request) -> Response {
    (http::StatusCode::NOT_IMPLEMENTED, "admin API not yet\n").into_response()
}
