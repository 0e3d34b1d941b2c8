//! The image admin API (`/admin/v1/images/...`, JSON) over the block layer, for `cairn image`:
//!
//! - `GET|POST /admin/v1/images` (`{"name", "size", "order"?}`), `GET|DELETE /admin/v1/images/{name}`
//! - `PUT /admin/v1/images/{name}/size` (`{"size"}`)
//! - `GET|POST /admin/v1/images/{name}/snapshots` (`{"name"}`), `DELETE .../snapshots/{snap}`
//! - `POST .../snapshots/{snap}/rollback`, `PUT|DELETE .../snapshots/{snap}/protection`
//! - `POST /admin/v1/images/{name}/clone` (`{"snapshot", "name"}`), `POST .../flatten`
//! - `GET /admin/v1/images/{name}/diff?from=SNAP&to=SNAP`

use cairn_block::BlockError;
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::server::RequestCtx;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewImage {
    name: String,
    /// Bytes, or with a unit: "10G".
    size: Value,
    #[serde(default)]
    order: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSize {
    size: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSnapshot {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewClone {
    snapshot: String,
    name: String,
}

fn status_of(e: &BlockError) -> StatusCode {
    match e {
        BlockError::NoSuchImage(_) | BlockError::NoSuchSnapshot { .. } => StatusCode::NOT_FOUND,
        BlockError::ImageExists(_)
        | BlockError::SnapshotExists { .. }
        | BlockError::Conflict(_)
        | BlockError::Busy { .. }
        | BlockError::Fenced { .. } => StatusCode::CONFLICT,
        BlockError::Invalid(_) | BlockError::ReadOnly(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn size_of(v: &Value) -> Result<u64, (StatusCode, String)> {
    let r = match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| BlockError::Invalid(format!("size {n} is not a byte count"))),
        Value::String(s) => cairn_block::header::parse_size(s),
        other => Err(BlockError::Invalid(format!("size {other} is not a size"))),
    };
    r.map_err(|e| (status_of(&e), e.to_string()))
}

/// Handles `parts` (after `images`); `Err((status, message))` on failure.
pub(crate) async fn handle(
    ctx: &RequestCtx,
    method: &Method,
    parts: &[&str],
    query: Option<&str>,
    body: impl AsyncFnOnce() -> Result<Value, (StatusCode, String)>,
) -> Result<(StatusCode, Value), (StatusCode, String)> {
    let block = ctx.state.block.as_ref().ok_or((
        StatusCode::NOT_IMPLEMENTED,
        "this gateway serves no block layer".to_string(),
    ))?;
    let fail = |e: BlockError| (status_of(&e), e.to_string());
    let ok = |v: Value| Ok((StatusCode::OK, v));
    let q = |key: &str| -> Option<String> {
        query?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    };
    match (method, parts) {
        (&Method::GET, []) => ok(json!(block.list().await.map_err(fail)?)),
        (&Method::POST, []) => {
            let n: NewImage = from_value(body().await?)?;
            let size = size_of(&n.size)?;
            let h = block.create(&n.name, size, n.order).await.map_err(fail)?;
            Ok((StatusCode::CREATED, json!(h)))
        }
        (&Method::GET, [name]) => ok(json!(block.info(name).await.map_err(fail)?)),
        (&Method::DELETE, [name]) => {
            block.remove(name).await.map_err(fail)?;
            ok(json!({ "deleted": name }))
        }
        (&Method::PUT, [name, "size"]) => {
            let n: NewSize = from_value(body().await?)?;
            let h = block.resize(name, size_of(&n.size)?).await.map_err(fail)?;
            ok(json!(h))
        }
        (&Method::GET, [name, "snapshots"]) => {
            ok(json!(block.snap_list(name).await.map_err(fail)?))
        }
        (&Method::POST, [name, "snapshots"]) => {
            let n: NewSnapshot = from_value(body().await?)?;
            let s = block.snap_create(name, &n.name).await.map_err(fail)?;
            Ok((StatusCode::CREATED, json!(s)))
        }
        (&Method::DELETE, [name, "snapshots", snap]) => {
            block.snap_remove(name, snap).await.map_err(fail)?;
            ok(json!({ "deleted": format!("{name}@{snap}") }))
        }
        (&Method::POST, [name, "snapshots", snap, "rollback"]) => {
            block.snap_rollback(name, snap).await.map_err(fail)?;
            ok(json!({ "rolled_back_to": format!("{name}@{snap}") }))
        }
        (m, [name, "snapshots", snap, "protection"])
            if *m == Method::PUT || *m == Method::DELETE =>
        {
            let protect = *m == Method::PUT;
            block
                .snap_protect(name, snap, protect)
                .await
                .map_err(fail)?;
            ok(json!({ "snapshot": format!("{name}@{snap}"), "protected": protect }))
        }
        (&Method::POST, [name, "clone"]) => {
            let n: NewClone = from_value(body().await?)?;
            let h = block
                .clone_image(name, &n.snapshot, &n.name)
                .await
                .map_err(fail)?;
            Ok((StatusCode::CREATED, json!(h)))
        }
        (&Method::POST, [name, "flatten"]) => {
            block.flatten(name).await.map_err(fail)?;
            ok(json!({ "flattened": name }))
        }
        (&Method::GET, [name, "diff"]) => {
            let (from, to) = (q("from"), q("to"));
            let d = block
                .diff(name, from.as_deref(), to.as_deref())
                .await
                .map_err(fail)?;
            ok(json!(d))
        }
        _ => Err((
            StatusCode::NOT_FOUND,
            format!("no image resource {method} {}", parts.join("/")),
        )),
    }
}

fn from_value<T: for<'de> Deserialize<'de>>(v: Value) -> Result<T, (StatusCode, String)> {
    serde_json::from_value(v).map_err(|e| (StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))
}
