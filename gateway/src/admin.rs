//! The identity admin REST API (`/admin/v1/...`, JSON), for the `cairn project|user|key`
//! commands and for operators' scripts. Callers authenticate with a Swift token
//! (`X-Auth-Token`) of a user holding the `admin` role on the `admin` project.
//!
//! - `GET|POST /admin/v1/projects`, `DELETE /admin/v1/projects/{project}`
//! - `GET|POST /admin/v1/users`, `DELETE /admin/v1/users/{user}`
//! - `PUT|DELETE /admin/v1/projects/{project}/users/{user}/roles/{role}`
//! - `GET|POST /admin/v1/users/{user}/keys` (`{"project": ...}`), `DELETE /admin/v1/keys/{access key}`
//!
//! `{project}` and `{user}` are ids or names.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use cairn_meta::identity::{IdentityError, Project, Role, User};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::body::read_small;
use crate::server::RequestCtx;

/// Admin request bodies are small JSON documents.
const ADMIN_BODY_MAX: usize = 64 * 1024;
/// The project whose admins administer the cluster.
pub const ADMIN_PROJECT: &str = "admin";

#[derive(Debug)]
struct AdminError(StatusCode, String);

impl From<IdentityError> for AdminError {
    fn from(e: IdentityError) -> Self {
        let status = match &e {
            IdentityError::Invalid { .. } => StatusCode::BAD_REQUEST,
            IdentityError::NameTaken { .. } => StatusCode::CONFLICT,
            IdentityError::NotFound { .. } => StatusCode::NOT_FOUND,
            IdentityError::NoRoleOnProject { .. } => StatusCode::BAD_REQUEST,
            IdentityError::AuthenticationFailed => StatusCode::UNAUTHORIZED,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        AdminError(status, e.to_string())
    }
}

fn bad(msg: impl Into<String>) -> AdminError {
    AdminError(StatusCode::BAD_REQUEST, msg.into())
}

fn not_found(what: &str) -> AdminError {
    AdminError(StatusCode::NOT_FOUND, format!("no such {what}"))
}

pub async fn handle(ctx: RequestCtx, req: Request) -> Response {
    match handle_inner(&ctx, req).await {
        Ok((status, body)) => (status, axum::Json(body)).into_response(),
        Err(AdminError(status, message)) => (
            status,
            axum::Json(json!({ "error": message, "request_id": ctx.request_id })),
        )
            .into_response(),
    }
}

async fn authorize(ctx: &RequestCtx, req: &http::request::Parts) -> Result<(), AdminError> {
    let token = req
        .headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| AdminError(StatusCode::UNAUTHORIZED, "X-Auth-Token required".into()))?;
    let identity = &ctx.state.identity;
    let principal = identity
        .validate_swift_token(token)
        .await?
        .ok_or_else(|| AdminError(StatusCode::UNAUTHORIZED, "invalid or expired token".into()))?;
    let admin_project = identity
        .find_project(ADMIN_PROJECT)
        .await?
        .ok_or_else(|| AdminError(StatusCode::FORBIDDEN, "no admin project".into()))?;
    if principal.project_id.as_deref() != Some(admin_project.id.as_str())
        || !principal.has_role(Role::Admin)
    {
        return Err(AdminError(
            StatusCode::FORBIDDEN,
            "only admins of the admin project may use this API".into(),
        ));
    }
    Ok(())
}

async fn project(ctx: &RequestCtx, s: &str) -> Result<Project, AdminError> {
    let identity = &ctx.state.identity;
    if let Ok(Some(p)) = identity.get_project(s).await {
        return Ok(p);
    }
    identity
        .find_project(s)
        .await?
        .ok_or_else(|| not_found("project"))
}

async fn user(ctx: &RequestCtx, s: &str) -> Result<User, AdminError> {
    let identity = &ctx.state.identity;
    if let Ok(Some(u)) = identity.get_user(s).await {
        return Ok(u);
    }
    identity
        .find_user(s)
        .await?
        .ok_or_else(|| not_found("user"))
}

async fn json_body<T: for<'de> Deserialize<'de>>(body: axum::body::Body) -> Result<T, AdminError> {
    let bytes = read_small(body, ADMIN_BODY_MAX)
        .await
        .map_err(|e| bad(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("malformed JSON: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProject {
    name: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    default_project: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    project: String,
}

async fn handle_inner(
    ctx: &RequestCtx,
    req: Request,
) -> Result<(StatusCode, serde_json::Value), AdminError> {
    let (req, body) = req.into_parts();
    authorize(ctx, &req).await?;
    let identity = &ctx.state.identity;
    let method = req.method.clone();
    let path = req.uri.path().to_string();
    let parts: Vec<String> = path
        .trim_start_matches("/admin/v1/")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let ok = |v| Ok((StatusCode::OK, v));
    if let Some(("images", rest)) = parts.split_first().map(|(a, b)| (*a, b)) {
        let query = req.uri.query().map(str::to_string);
        return crate::admin_images::handle(ctx, &method, rest, query.as_deref(), async || {
            json_body::<serde_json::Value>(body)
                .await
                .map_err(|AdminError(s, m)| (s, m))
        })
        .await
        .map_err(|(s, m)| AdminError(s, m));
    }
    match (&method, parts.as_slice()) {
        (&Method::GET, ["projects"]) => {
            let list = identity.list_projects(None, 1000).await?;
            ok(json!(list))
        }
        (&Method::POST, ["projects"]) => {
            let p: NewProject = json_body(body).await?;
            let created = identity.create_project(&p.name, &p.description).await?;
            Ok((StatusCode::CREATED, json!(created)))
        }
        (&Method::DELETE, ["projects", p]) => {
            let p = project(ctx, p).await?;
            identity.delete_project(&p.id).await?;
            ok(json!({ "deleted": p.id }))
        }
        (&Method::GET, ["users"]) => ok(json!(identity.list_users(None, 1000).await?)),
        (&Method::POST, ["users"]) => {
            let u: NewUser = json_body(body).await?;
            let default = match &u.default_project {
                Some(p) => Some(project(ctx, p).await?.id),
                None => None,
            };
            let created = identity
                .create_user(&u.name, &u.password, default.as_deref())
                .await?;
            Ok((StatusCode::CREATED, json!(created)))
        }
        (&Method::DELETE, ["users", u]) => {
            let u = user(ctx, u).await?;
            identity.delete_user(&u.id).await?;
            ok(json!({ "deleted": u.id }))
        }
        (m, ["projects", p, "users", u, "roles", r])
            if *m == Method::PUT || *m == Method::DELETE =>
        {
            let role: Role = r.parse().map_err(|_| bad(format!("unknown role {r}")))?;
            let (p, u) = (project(ctx, p).await?, user(ctx, u).await?);
            if *m == Method::PUT {
                identity.grant_role(&u.id, &p.id, role).await?;
            } else {
                identity.revoke_role(&u.id, &p.id, role).await?;
            }
            ok(
                json!({ "project": p.id, "user": u.id, "roles": identity.roles_of(&u.id, &p.id).await?.iter().map(|r| r.as_str()).collect::<Vec<_>>() }),
            )
        }
        (&Method::GET, ["users", u, "keys"]) => {
            let u = user(ctx, u).await?;
            let keys: Vec<_> = identity
                .list_s3_keys(&u.id)
                .await?
                .into_iter()
                .map(|k| json!({ "access_key": k.access_key, "project": k.project_id, "created_at_unix_ms": k.created_at_unix_ms }))
                .collect();
            ok(json!(keys))
        }
        (&Method::POST, ["users", u, "keys"]) => {
            let k: NewKey = json_body(body).await?;
            let (u, p) = (user(ctx, u).await?, project(ctx, &k.project).await?);
            let cred = identity.create_s3_key(&u.id, &p.id).await?;
            Ok((
                StatusCode::CREATED,
                json!({ "access_key": cred.access_key, "secret_key": cred.secret_key, "user": u.id, "project": p.id }),
            ))
        }
        (&Method::DELETE, ["keys", ak]) => {
            if !identity.delete_s3_key(ak).await? {
                return Err(not_found("key"));
            }
            ok(json!({ "deleted": ak }))
        }
        _ => Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("no admin resource {method} {path}"),
        )),
    }
}
