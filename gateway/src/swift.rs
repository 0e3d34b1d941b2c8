//! The Swift API: v1 auth, accounts, containers and objects, listings, metadata, ACLs, large
//! objects (SLO and DLO), TempURL and object expiry. Protocol rules come from
//! `cairn-swift-proto`; this module authenticates and maps requests onto the object layer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use cairn_engine::{ListItem, ListQuery};
use cairn_meta::identity::{Principal, Role};
use cairn_node::{ClientError, ClusterClient, ObjectPut};
use cairn_swift_proto::constraints::{self, MetaKind};
use cairn_swift_proto::listing::{self, AccountItem, ContainerItem, ListingParams};
use cairn_swift_proto::{
    AclSubject, ContainerAcl, SegmentFacts, SwiftError, dlo, expiry, range, slo, tempurl, timestamp,
};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tracing::warn;

use crate::body::{IngestFailure, PlainBody, ingest, read_small, to_http};
use crate::objects::{self, ObjectInfo, OpenObject, Opened, USER_META, now_unix_s};
use crate::policy;
use crate::server::RequestCtx;
use crate::spool::SpoolError;

/// Swift tokens live this long.
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Container record keys for ACLs (user metadata is `meta-<name>`).
const SYS_READ_ACL: &str = "sys-read-acl";
const SYS_WRITE_ACL: &str = "sys-write-acl";

type SwiftResult<T> = Result<T, SwiftError>;

impl From<IngestFailure> for SwiftError {
    fn from(e: IngestFailure) -> Self {
        match e {
            IngestFailure::Short { .. } => SwiftError::new(499, e.to_string()),
            IngestFailure::Idle(_) => SwiftError::new(408, e.to_string()),
            _ => SwiftError::bad_request(e.to_string()),
        }
    }
}

fn cluster_error(e: ClientError) -> SwiftError {
    match e {
        ClientError::NotFound => SwiftError::not_found("Not Found"),
        ClientError::NotEmpty { .. } => {
            SwiftError::conflict("There was a conflict when trying to complete your request.")
        }
        ClientError::Invalid(m) => SwiftError::bad_request(m),
        ClientError::RangeNotSatisfiable { .. } => {
            SwiftError::range_not_satisfiable("Requested Range Not Satisfiable")
        }
        ClientError::DiskFull => SwiftError::new(507, "Insufficient Storage"),
        ClientError::Body(m) => SwiftError::new(499, format!("Client Disconnect: {m}")),
        ClientError::NoQuorum(m) => {
            warn!(error = %m, "no quorum");
            SwiftError::new(503, "Service Unavailable")
        }
        // Objects carry no fencing epochs; only block-layer calls can be fenced.
        f @ ClientError::Fenced { .. } => SwiftError::new(500, f.to_string()),
    }
}

fn error_response(ctx: &RequestCtx, e: &SwiftError) -> Response {
    let mut r = Response::new(axum::body::Body::from(e.body()));
    *r.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    add_trans_id(ctx, r.headers_mut());
    r
}

fn add_trans_id(ctx: &RequestCtx, h: &mut HeaderMap) {
    if let Ok(v) = HeaderValue::from_str(&format!("tx{}", ctx.request_id)) {
        h.insert("x-trans-id", v.clone());
        h.insert("x-openstack-request-id", v);
    }
}

fn header<'a>(req: &'a Parts, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

fn header_pairs(req: &Parts) -> Vec<(String, String)> {
    req.headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// An answer that is only a status.
fn status_only(status: StatusCode) -> Response {
    respond(status, Vec::new(), axum::body::Body::empty())
}

fn respond(status: StatusCode, headers: Vec<(String, String)>, body: axum::body::Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            r.headers_mut().append(k, v);
        }
    }
    r
}

/// `GET /info`: the cluster's capabilities and storage policies (no authentication, as in
/// Swift).
pub async fn info(ctx: RequestCtx, req: Request) -> Response {
    let mut r = match *req.method() {
        Method::GET | Method::HEAD => {
            let body = policy::swift_info(ctx.state.objects.client().policies()).to_string();
            let mut r = respond(
                StatusCode::OK,
                vec![(
                    "Content-Type".into(),
                    "application/json; charset=utf-8".into(),
                )],
                if req.method() == Method::HEAD {
                    axum::body::Body::empty()
                } else {
                    axum::body::Body::from(body)
                },
            );
            r.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
        _ => {
            let mut r = error_response(&ctx, &SwiftError::new(405, "Method Not Allowed"));
            r.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
    };
    add_trans_id(&ctx, r.headers_mut());
    r
}

/// `GET /auth/v1.0` with `X-Auth-User: project:user` and `X-Auth-Key: password`.
pub async fn auth(ctx: RequestCtx, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    let req = &parts;
    let result = async {
        let user = header(req, "x-auth-user")
            .or_else(|| header(req, "x-storage-user"))
            .ok_or_else(|| SwiftError::unauthorized("Unauthorized: X-Auth-User missing"))?;
        let key = header(req, "x-auth-key")
            .or_else(|| header(req, "x-storage-pass"))
            .ok_or_else(|| SwiftError::unauthorized("Unauthorized: X-Auth-Key missing"))?;
        let (project, user) = user.split_once(':').ok_or_else(|| {
            SwiftError::unauthorized("Unauthorized: X-Auth-User must be project:user")
        })?;
        let (token, principal) = ctx
            .state
            .identity
            .swift_v1_auth(project, user, key, TOKEN_TTL)
            .await
            .map_err(|_| SwiftError::unauthorized("Unauthorized"))?;
        let project_id = principal
            .project_id
            .ok_or_else(|| SwiftError::unauthorized("Unauthorized"))?;
        let host = header(req, "host").unwrap_or("127.0.0.1");
        let scheme = if ctx.state.https { "https" } else { "http" };
        let url = format!("{scheme}://{host}/v1/AUTH_{project_id}");
        let expires_in = token
            .expires_at_unix_ms
            .saturating_sub(now_unix_s().saturating_mul(1000))
            / 1000;
        Ok::<_, SwiftError>(respond(
            StatusCode::OK,
            vec![
                ("X-Auth-Token".into(), token.token.clone()),
                ("X-Storage-Token".into(), token.token),
                ("X-Storage-Url".into(), url),
                ("X-Auth-Token-Expires".into(), expires_in.to_string()),
            ],
            axum::body::Body::empty(),
        ))
    }
    .await;
    match result {
        Ok(mut r) => {
            add_trans_id(&ctx, r.headers_mut());
            r
        }
        Err(e) => error_response(&ctx, &e),
    }
}

/// The parsed path of a `/v1/...` request.
#[derive(Debug)]
struct SwiftPath {
    account: String,
    container: Option<String>,
    object: Option<String>,
}

fn parse_path(raw: &str) -> SwiftResult<SwiftPath> {
    let rest = raw
        .strip_prefix("/v1/")
        .ok_or_else(|| SwiftError::bad_request("Bad URL"))?;
    let decode = |s: &str| cairn_swift_proto::query::decode_component(s);
    let mut parts = rest.splitn(3, '/');
    let account = decode(parts.next().unwrap_or_default())?;
    if account.is_empty() {
        return Err(SwiftError::bad_request("Bad URL"));
    }
    let container = parts
        .next()
        .filter(|c| !c.is_empty())
        .map(decode)
        .transpose()?;
    let object = parts
        .next()
        .filter(|o| !o.is_empty())
        .map(decode)
        .transpose()?;
    if let Some(c) = &container {
        constraints::validate_container_name(c)?;
    }
    if let Some(o) = &object {
        constraints::validate_object_name(o)?;
    }
    Ok(SwiftPath {
        account,
        container,
        object,
    })
}

/// Who is asking.
#[derive(Debug)]
enum Caller {
    /// A token holder: the account is theirs (or an ACL decides).
    Token(Principal),
    /// A valid TempURL for this very object and method.
    TempUrl,
    Anonymous,
}

impl Caller {
    fn owns(&self, account: &str) -> bool {
        match self {
            Caller::Token(p) => p
                .project_id
                .as_deref()
                .is_some_and(|id| account == format!("AUTH_{id}")),
            _ => false,
        }
    }

    fn can_write(&self) -> bool {
        match self {
            Caller::Token(p) => p.has_role(Role::Admin) || p.has_role(Role::Member),
            _ => false,
        }
    }

    fn subject(&self) -> Option<AclSubject> {
        match self {
            Caller::Token(p) => Some(AclSubject {
                project_id: p.project_id.clone().unwrap_or_default(),
                project_name: String::new(),
                user_id: p.user_id.clone(),
                user_name: p.user_name.clone(),
                roles: p.roles.iter().map(|r| r.as_str().to_string()).collect(),
            }),
            _ => None,
        }
    }
}

pub async fn handle(ctx: RequestCtx, req: Request) -> Response {
    let method = req.method().clone();
    let is_head = method == Method::HEAD;
    let mut response = match handle_inner(&ctx, req).await {
        Ok(r) => r,
        Err(e) => {
            let mut r = error_response(&ctx, &e);
            if is_head {
                *r.body_mut() = axum::body::Body::empty();
            }
            r
        }
    };
    add_trans_id(&ctx, response.headers_mut());
    response
}

async fn handle_inner(ctx: &RequestCtx, req: Request) -> SwiftResult<Response> {
    let (req, body) = req.into_parts();
    let req = &req;
    let path = parse_path(req.uri.path())?;
    let raw_query = req.uri.query().unwrap_or("").to_string();
    let caller = authenticate(ctx, req, &path, &raw_query).await?;
    let method = req.method.clone();
    match (&path.container, &path.object) {
        (None, _) => account_request(ctx, req, &path.account, &caller, &raw_query).await,
        (Some(c), None) => {
            let c = c.clone();
            container_request(ctx, req, &path.account, &c, &caller, &raw_query).await
        }
        (Some(c), Some(o)) => {
            let (c, o) = (c.clone(), o.clone());
            if !caller.owns(&path.account) && !matches!(caller, Caller::TempUrl) {
                let write = !matches!(method, Method::GET | Method::HEAD);
                container_acl_check(ctx, &path.account, &c, &caller, req, write, false).await?;
            }
            object_request(ctx, req, body, &path.account, &c, &o, &caller, &raw_query).await
        }
    }
}

async fn authenticate(
    ctx: &RequestCtx,
    req: &Parts,
    path: &SwiftPath,
    raw_query: &str,
) -> SwiftResult<Caller> {
    if let Some(token) = header(req, "x-auth-token").or_else(|| header(req, "x-storage-token")) {
        return match ctx.state.identity.validate_swift_token(token).await {
            Ok(Some(p)) => Ok(Caller::Token(p)),
            Ok(None) => Err(SwiftError::unauthorized("Unauthorized")),
            Err(e) => {
                warn!(error = %e, "token check failed");
                Err(SwiftError::new(503, "Service Unavailable"))
            }
        };
    }
    if let Some(params) = tempurl::parse_tempurl_query(raw_query) {
        let params = params?;
        let (Some(c), Some(_)) = (&path.container, &path.object) else {
            return Err(SwiftError::unauthorized(
                "401 Unauthorized: Temp URL invalid\n",
            ));
        };
        let objects = &ctx.state.objects;
        let mut keys = Vec::new();
        let account = objects
            .client()
            .account_info(&path.account)
            .await
            .map_err(cluster_error)?;
        let container = objects
            .client()
            .head_container(&path.account, c)
            .await
            .map_err(cluster_error)?;
        for info in std::iter::once(&account.info).chain(container.as_ref().map(|c| &c.info)) {
            for k in ["meta-temp-url-key", "meta-temp-url-key-2"] {
                if let Some(v) = info.metadata.get(k).and_then(|m| m.value.clone()) {
                    keys.push(v);
                }
            }
        }
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        tempurl::verify_tempurl(
            &params,
            req.method.as_str(),
            req.uri.path(),
            &keys,
            now_unix_s(),
            &tempurl::DEFAULT_ALLOWED_DIGESTS,
        )
        .or_else(|e| {
            // The signed path is the decoded one.
            let decoded =
                cairn_swift_proto::query::decode_path(req.uri.path()).map_err(|_| e.clone())?;
            tempurl::verify_tempurl(
                &params,
                req.method.as_str(),
                &decoded,
                &keys,
                now_unix_s(),
                &tempurl::DEFAULT_ALLOWED_DIGESTS,
            )
        })?;
        return Ok(Caller::TempUrl);
    }
    Ok(Caller::Anonymous)
}

/// Lets a caller who does not own the account through the container's ACL, or refuses.
async fn container_acl_check(
    ctx: &RequestCtx,
    account: &str,
    container: &str,
    caller: &Caller,
    req: &Parts,
    write: bool,
    listing: bool,
) -> SwiftResult<()> {
    let refuse = || match caller {
        Caller::Anonymous => SwiftError::unauthorized("Unauthorized"),
        _ => SwiftError::forbidden("Forbidden"),
    };
    let info = ctx
        .state
        .objects
        .client()
        .head_container(account, container)
        .await
        .map_err(cluster_error)?
        .ok_or_else(refuse)?;
    let key = if write { SYS_WRITE_ACL } else { SYS_READ_ACL };
    let Some(text) = info.info.metadata.get(key).and_then(|m| m.value.clone()) else {
        return Err(refuse());
    };
    let acl = ContainerAcl::parse(&text, write).map_err(|_| refuse())?;
    let mut subject = caller.subject();
    // ACLs name projects as users know them (`project:user`), so the name is needed too.
    if let Some(s) = subject.as_mut()
        && let Ok(Some(p)) = ctx.state.identity.get_project(&s.project_id).await
    {
        s.project_name = p.name;
    }
    if acl.allows(subject.as_ref(), header(req, "referer"), listing) {
        Ok(())
    } else {
        Err(refuse())
    }
}

fn require_owner(caller: &Caller, account: &str, write: bool) -> SwiftResult<()> {
    if !caller.owns(account) {
        return Err(match caller {
            Caller::Anonymous => SwiftError::unauthorized("Unauthorized"),
            _ => SwiftError::forbidden("Forbidden"),
        });
    }
    if write && !caller.can_write() {
        return Err(SwiftError::forbidden("Forbidden: your role is read-only"));
    }
    Ok(())
}

fn user_meta_of(info: &cairn_engine::ListingInfo) -> BTreeMap<String, String> {
    info.metadata
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(USER_META)?.to_string(), v.value.clone()?)))
        .collect()
}

fn prefixed(update: constraints::MetaUpdate) -> (BTreeMap<String, String>, BTreeSet<String>) {
    (
        update
            .set
            .into_iter()
            .map(|(k, v)| (format!("{USER_META}{k}"), v))
            .collect(),
        update
            .remove
            .into_iter()
            .map(|k| format!("{USER_META}{k}"))
            .collect(),
    )
}

fn list_query(p: &ListingParams) -> ListQuery {
    ListQuery {
        prefix: p.prefix.clone().unwrap_or_default(),
        delimiter: p.delimiter.clone(),
        marker: p.marker.clone(),
        end_marker: p.end_marker.clone(),
        limit: p.limit,
        reverse: p.reverse,
        include_deleted: false,
    }
}

async fn account_request(
    ctx: &RequestCtx,
    req: &Parts,
    account: &str,
    caller: &Caller,
    raw_query: &str,
) -> SwiftResult<Response> {
    let client = ctx.state.objects.client();
    match req.method {
        Method::GET | Method::HEAD => {
            require_owner(caller, account, false)?;
            let info = client.account_info(account).await.map_err(cluster_error)?;
            let totals = ctx
                .state
                .account_stats
                .totals(client, account)
                .await
                .map_err(cluster_error)?;
            let mut headers = listing::account_headers(
                info.stats.object_count,
                totals.objects,
                totals.bytes,
                &user_meta_of(&info.info),
            );
            if let Some(r) = record_head(&mut headers, &info.info, req.method == Method::HEAD) {
                return Ok(r);
            }
            let params = ListingParams::parse(raw_query, header(req, "accept"))?;
            let page = client
                .list_containers(account, list_query(&params))
                .await
                .map_err(cluster_error)?;
            let items: Vec<AccountItem> = page
                .items
                .into_iter()
                .map(|i| match i {
                    ListItem::Entry(e) => {
                        let (count, bytes) = totals.of(&e.name);
                        AccountItem::Container {
                            name: e.name,
                            count,
                            bytes,
                            last_modified_unix_micros: e.timestamp.wall_micros,
                        }
                    }
                    ListItem::Prefix(p) => AccountItem::Subdir(p),
                })
                .collect();
            listing_response(headers, items.is_empty(), params.format, || {
                listing::render_account_listing(account, &items, params.format)
            })
        }
        Method::POST => {
            require_owner(caller, account, true)?;
            let update = constraints::collect_meta(&header_pairs(req), MetaKind::Account)?;
            let (set, remove) = prefixed(update);
            client
                .update_account_meta(account, set, remove)
                .await
                .map_err(cluster_error)?;
            Ok(status_only(StatusCode::NO_CONTENT))
        }
        _ => Err(SwiftError::new(405, "Method Not Allowed")),
    }
}

/// Adds an account's or container's `X-Timestamp`; answers a HEAD here (204, no body).
fn record_head(
    headers: &mut Vec<(String, String)>,
    info: &cairn_engine::ListingInfo,
    head: bool,
) -> Option<Response> {
    headers.push((
        "X-Timestamp".into(),
        timestamp::x_timestamp(info.created.map(|t| t.wall_micros).unwrap_or(0)),
    ));
    if !head {
        return None;
    }
    headers.push(("Content-Length".into(), "0".into()));
    Some(respond(
        StatusCode::NO_CONTENT,
        std::mem::take(headers),
        axum::body::Body::empty(),
    ))
}

fn listing_response(
    mut headers: Vec<(String, String)>,
    empty: bool,
    format: listing::Format,
    render: impl FnOnce() -> (String, String),
) -> SwiftResult<Response> {
    if empty && format == listing::Format::Plain {
        headers.push(("Content-Type".into(), "text/plain; charset=utf-8".into()));
        return Ok(respond(
            StatusCode::NO_CONTENT,
            headers,
            axum::body::Body::empty(),
        ));
    }
    let (content_type, body) = render();
    headers.push(("Content-Type".into(), content_type));
    Ok(respond(
        StatusCode::OK,
        headers,
        axum::body::Body::from(body),
    ))
}

async fn container_request(
    ctx: &RequestCtx,
    req: &Parts,
    account: &str,
    container: &str,
    caller: &Caller,
    raw_query: &str,
) -> SwiftResult<Response> {
    let client = ctx.state.objects.client();
    let method = req.method.clone();
    match method {
        Method::GET | Method::HEAD => {
            if !caller.owns(account) {
                container_acl_check(ctx, account, container, caller, req, false, true).await?;
            }
            let found = client
                .head_container(account, container)
                .await
                .map_err(cluster_error)?
                .ok_or_else(|| SwiftError::not_found("Not Found"))?;
            let meta = &found.info.metadata;
            let acl = |k: &str| meta.get(k).and_then(|m| m.value.clone());
            let (read_acl, write_acl) = (acl(SYS_READ_ACL), acl(SYS_WRITE_ACL));
            let mut headers = listing::container_headers(
                found.stats.object_count,
                found.stats.bytes,
                &user_meta_of(&found.info),
                if caller.owns(account) {
                    read_acl.as_deref()
                } else {
                    None
                },
                if caller.owns(account) {
                    write_acl.as_deref()
                } else {
                    None
                },
            );
            headers.push((
                policy::SWIFT_POLICY_HEADER.into(),
                policy::policy_name(
                    client.policies(),
                    ClusterClient::policy_of_record(&found.info),
                ),
            ));
            if let Some(r) = record_head(&mut headers, &found.info, method == Method::HEAD) {
                return Ok(r);
            }
            let params = ListingParams::parse(raw_query, header(req, "accept"))?;
            let page = client
                .list_objects(account, container, list_query(&params))
                .await
                .map_err(cluster_error)?;
            let items: Vec<ContainerItem> = page
                .items
                .into_iter()
                .map(|i| match i {
                    ListItem::Entry(e) => ContainerItem::Object {
                        name: e.name,
                        bytes: e.size_bytes,
                        hash: e.etag,
                        content_type: e.content_type,
                        last_modified_unix_micros: e.timestamp.wall_micros,
                    },
                    ListItem::Prefix(p) => ContainerItem::Subdir(p),
                })
                .collect();
            listing_response(headers, items.is_empty(), params.format, || {
                listing::render_container_listing(container, &items, params.format)
            })
        }
        Method::PUT | Method::POST => {
            require_owner(caller, account, true)?;
            let headers = header_pairs(req);
            let update = constraints::collect_meta(&headers, MetaKind::Container)?;
            let (mut set, mut remove) = prefixed(update);
            for (h, key, write) in [
                ("x-container-read", SYS_READ_ACL, false),
                ("x-container-write", SYS_WRITE_ACL, true),
            ] {
                if let Some(v) = header(req, h) {
                    if v.trim().is_empty() {
                        remove.insert(key.to_string());
                    } else {
                        set.insert(key.to_string(), ContainerAcl::clean(v, write)?);
                    }
                }
                if header(req, &format!("x-remove-{}", &h[2..])).is_some() {
                    remove.insert(key.to_string());
                }
            }
            let existing = client
                .head_container(account, container)
                .await
                .map_err(cluster_error)?;
            if method == Method::POST {
                if existing.is_none() {
                    return Err(SwiftError::not_found("Not Found"));
                }
                client
                    .update_container_meta(account, container, set, remove)
                    .await
                    .map_err(cluster_error)?;
                return Ok(status_only(StatusCode::NO_CONTENT));
            }
            // A container keeps the policy it was created with: naming another is a conflict
            // (as in Swift), naming none (or the same) leaves it alone.
            let named =
                policy::swift_named(client.policies(), header(req, policy::SWIFT_POLICY_HEADER))
                    .map_err(SwiftError::bad_request)?;
            if let Some(existing) = &existing {
                let current = ClusterClient::policy_of_record(&existing.info);
                if named.is_some_and(|p| p.index != current) {
                    return Err(SwiftError::conflict(
                        "There was a conflict when trying to complete your request.",
                    ));
                }
                client
                    .update_container_meta(account, container, set, remove)
                    .await
                    .map_err(cluster_error)?;
                return Ok(status_only(StatusCode::ACCEPTED));
            }
            policy::record_policy(
                &mut set,
                named
                    .unwrap_or_else(|| client.policies().default_policy())
                    .index,
            );
            client
                .put_container(account, container, set)
                .await
                .map_err(cluster_error)?;
            Ok(status_only(StatusCode::CREATED))
        }
        Method::DELETE => {
            require_owner(caller, account, true)?;
            ctx.state.objects.forget_container(account, container);
            client
                .delete_container(account, container)
                .await
                .map_err(cluster_error)?;
            Ok(status_only(StatusCode::NO_CONTENT))
        }
        _ => Err(SwiftError::new(405, "Method Not Allowed")),
    }
}

fn object_headers(info: &ObjectInfo) -> Vec<(String, String)> {
    let mut h = vec![
        ("ETag".into(), format!("\"{}\"", info.etag())),
        ("Content-Type".into(), info.meta.content_type.clone()),
        (
            "Last-Modified".into(),
            timestamp::last_modified_header(info.timestamp_micros()),
        ),
        (
            "X-Timestamp".into(),
            timestamp::x_timestamp(info.timestamp_micros()),
        ),
        ("Accept-Ranges".into(), "bytes".into()),
    ];
    for (k, v) in info.user_meta() {
        h.push((
            format!("X-Object-Meta-{}", constraints::title_case(k)),
            v.to_string(),
        ));
    }
    for (key, name) in [
        (objects::SYS_CONTENT_ENCODING, "Content-Encoding"),
        (objects::SYS_CONTENT_DISPOSITION, "Content-Disposition"),
        (objects::SYS_DELETE_AT, "X-Delete-At"),
    ] {
        if let Some(v) = info.sys(key) {
            h.push((name.into(), v.to_string()));
        }
    }
    if info.manifest_kind() == Some("slo") {
        h.push(("X-Static-Large-Object".into(), "True".into()));
    }
    if let Some(d) = info.sys(objects::SYS_DLO) {
        h.push(("X-Object-Manifest".into(), d.to_string()));
    }
    h
}

#[allow(clippy::too_many_arguments)]
async fn object_request(
    ctx: &RequestCtx,
    req: &Parts,
    body: axum::body::Body,
    account: &str,
    container: &str,
    object: &str,
    caller: &Caller,
    raw_query: &str,
) -> SwiftResult<Response> {
    let query = cairn_swift_proto::query::parse_query(raw_query)?;
    let mm = cairn_swift_proto::query::first(&query, "multipart-manifest").map(str::to_string);
    let method = req.method.clone();
    let writes = !matches!(method, Method::GET | Method::HEAD);
    if caller.owns(account) && writes && !caller.can_write() {
        return Err(SwiftError::forbidden("Forbidden: your role is read-only"));
    }
    match method {
        Method::GET | Method::HEAD => {
            get_object(
                ctx,
                req,
                account,
                container,
                object,
                mm.as_deref(),
                raw_query,
            )
            .await
        }
        Method::PUT => {
            if let Some(from) = header(req, "x-copy-from") {
                let from = from.to_string();
                return copy_object(ctx, req, account, &from, container, object).await;
            }
            put_object(ctx, req, body, account, container, object, mm.as_deref()).await
        }
        Method::POST => post_object(ctx, req, account, container, object).await,
        Method::DELETE => {
            let segments = mm.as_deref() == Some("delete");
            let existed = ctx
                .state
                .objects
                .delete(account, container, object, segments)
                .await
                .map_err(cluster_error)?;
            if !existed {
                return Err(SwiftError::not_found("Not Found"));
            }
            Ok(status_only(StatusCode::NO_CONTENT))
        }
        Method::OPTIONS => Ok(status_only(StatusCode::OK)),
        _ if method.as_str() == "COPY" => {
            let dest = header(req, "destination")
                .ok_or_else(|| SwiftError::precondition_failed("Destination header required"))?;
            let dest = dest.trim_start_matches('/');
            let (dc, doj) = dest
                .split_once('/')
                .ok_or_else(|| SwiftError::precondition_failed("Bad Destination"))?;
            let source = format!("/{container}/{object}");
            let (dc, doj) = (
                cairn_swift_proto::query::decode_component(dc)?,
                cairn_swift_proto::query::decode_component(doj)?,
            );
            copy_object(ctx, req, account, &source, &dc, &doj).await
        }
        _ => Err(SwiftError::new(405, "Method Not Allowed")),
    }
}

async fn get_object(
    ctx: &RequestCtx,
    req: &Parts,
    account: &str,
    container: &str,
    object: &str,
    mm: Option<&str>,
    raw_query: &str,
) -> SwiftResult<Response> {
    let objects = &ctx.state.objects;
    let raw_manifest = mm == Some("get");
    let open = objects
        .open(account, container, object, !raw_manifest)
        .await
        .map_err(cluster_error)?
        .ok_or_else(|| SwiftError::not_found("Not Found"))?;
    let OpenObject { info, opened } = open;
    let mut headers = object_headers(&info);
    let size = opened.size();
    if let Opened::Dynamic { etag, .. } = &opened {
        headers.retain(|(k, _)| k != "ETag");
        headers.push(("ETag".into(), format!("\"{etag}\"")));
    }
    if raw_manifest {
        headers.retain(|(k, _)| k != "Content-Type");
        headers.push((
            "Content-Type".into(),
            "application/json; charset=utf-8".into(),
        ));
    }
    // Conditional GETs.
    let etag = headers
        .iter()
        .find(|(k, _)| k == "ETag")
        .map(|(_, v)| v.trim_matches('"').to_string())
        .unwrap_or_default();
    if let Some(m) = header(req, "if-match")
        && m.trim() != "*"
        && !m.split(',').any(|t| t.trim().trim_matches('"') == etag)
    {
        return Err(SwiftError::precondition_failed("Precondition Failed"));
    }
    if let Some(m) = header(req, "if-none-match")
        && (m.trim() == "*" || m.split(',').any(|t| t.trim().trim_matches('"') == etag))
    {
        return Ok(respond(
            StatusCode::NOT_MODIFIED,
            headers,
            axum::body::Body::empty(),
        ));
    }
    let ranges = match header(req, "range") {
        Some(r) => range::parse_ranges(r, size)?,
        None => Vec::new(),
    };
    let span = ranges.first().copied();
    let (status, start, end) = match span {
        Some((a, b)) => {
            headers.push(("Content-Range".into(), range::content_range(a, b, size)));
            (StatusCode::PARTIAL_CONTENT, a, b + 1)
        }
        None => (StatusCode::OK, 0, size),
    };
    if let Some(Ok(params)) = tempurl::parse_tempurl_query(raw_query)
        && (params.filename.is_some() || params.inline)
    {
        headers.push((
            "Content-Disposition".into(),
            tempurl::content_disposition(&params, object),
        ));
    }
    headers.push(("Content-Length".into(), (end - start).to_string()));
    if req.method == Method::HEAD {
        return Ok(respond(status, headers, axum::body::Body::empty()));
    }
    let body = objects
        .read_opened(account, opened, span.map(|(a, b)| (a, b + 1)))
        .await
        .map_err(cluster_error)?;
    Ok(respond(status, headers, to_http(body)))
}

/// Object metadata a PUT or POST carries.
fn object_meta_from(req: &Parts) -> SwiftResult<BTreeMap<String, String>> {
    let update = constraints::collect_meta(&header_pairs(req), MetaKind::Object)?;
    let mut meta: BTreeMap<String, String> = update
        .set
        .into_iter()
        .map(|(k, v)| (format!("{USER_META}{k}"), v))
        .collect();
    for (h, key) in [
        ("content-encoding", objects::SYS_CONTENT_ENCODING),
        ("content-disposition", objects::SYS_CONTENT_DISPOSITION),
    ] {
        if let Some(v) = header(req, h) {
            meta.insert(key.into(), v.to_string());
        }
    }
    let at = expiry::resolve_delete_at(
        header(req, "x-delete-at"),
        header(req, "x-delete-after"),
        now_unix_s(),
    )?;
    if let Some(at) = at {
        meta.insert(objects::SYS_DELETE_AT.into(), at.to_string());
    }
    Ok(meta)
}

fn content_type_of(req: &Parts, object: &str) -> String {
    header(req, "content-type")
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| guess_content_type(object).to_string())
}

/// A small extension table, as Swift guesses from the name when no type is given.
pub fn guess_content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("txt") => "text/plain",
        Some("html" | "htm") => "text/html",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gz") => "application/gzip",
        Some("tar") => "application/x-tar",
        Some("iso") => "application/x-iso9660-image",
        Some("qcow2") => "application/octet-stream",
        _ => "application/octet-stream",
    }
}

async fn put_object(
    ctx: &RequestCtx,
    req: &Parts,
    body: axum::body::Body,
    account: &str,
    container: &str,
    object: &str,
    mm: Option<&str>,
) -> SwiftResult<Response> {
    let objects = &ctx.state.objects;
    if !objects
        .container_exists(account, container)
        .await
        .map_err(cluster_error)?
    {
        return Err(SwiftError::not_found("Not Found"));
    }
    let mut meta = object_meta_from(req)?;
    let content_type = content_type_of(req, object);
    if let Some(m) = header(req, "if-none-match")
        && m.trim() == "*"
        && objects
            .head(account, container, object)
            .await
            .map_err(cluster_error)?
            .is_some()
    {
        return Err(SwiftError::precondition_failed("Precondition Failed"));
    }
    if mm == Some("put") {
        return put_slo(
            ctx,
            req,
            body,
            account,
            container,
            object,
            meta,
            content_type,
        )
        .await;
    }
    if let Some(m) = header(req, "x-object-manifest") {
        let (c, p) = dlo::parse_object_manifest(m)?;
        meta.insert(objects::SYS_DLO.into(), format!("{c}/{p}"));
    }
    let (size, body): (u64, axum::body::Body) = match header(req, "content-length") {
        Some(l) => (
            l.parse()
                .map_err(|_| SwiftError::bad_request("Invalid Content-Length"))?,
            body,
        ),
        None if header(req, "transfer-encoding").is_some() => {
            let spooled = ctx
                .state
                .spool
                .take(body, constraints::MAX_FILE_SIZE)
                .await
                .map_err(spool_error)?;
            (spooled.len, spooled.body)
        }
        None => (0, body),
    };
    constraints::check_object_size(size)?;
    let delete_at = meta.get(objects::SYS_DELETE_AT).cloned();
    let expect_etag = header(req, "etag").map(|e| e.trim_matches('"').to_ascii_lowercase());
    let (body, task, digest) =
        ingest(
            body,
            PlainBody::<SwiftError>::new(),
            size,
            move |done| match &expect_etag {
                Some(e) if *e != done.md5_hex() => {
                    Err(SwiftError::unprocessable("Unprocessable Entity"))
                }
                _ => Ok(()),
            },
        );
    let put = ObjectPut {
        account: account.into(),
        container: container.into(),
        object: object.into(),
        size_bytes: size,
        content_type,
        user_meta: meta,
        digest: Some(digest),
    };
    let written = objects.put(put, body).await;
    let ingested = task
        .await
        .map_err(|e| SwiftError::new(500, format!("body task: {e}")))?;
    let ingested = ingested?;
    let written = written.map_err(cluster_error)?;
    schedule_expiry(ctx, &delete_at, account, container, object).await?;
    Ok(respond(
        StatusCode::CREATED,
        vec![
            ("ETag".into(), format!("\"{}\"", ingested.md5_hex())),
            (
                "Last-Modified".into(),
                timestamp::last_modified_header(written.timestamp.wall_micros),
            ),
            ("Content-Length".into(), "0".into()),
        ],
        axum::body::Body::empty(),
    ))
}

/// A chunked body that could not be spooled, in Swift's terms.
fn spool_error(e: SpoolError) -> SwiftError {
    match e {
        SpoolError::TooLarge { .. } => SwiftError::entity_too_large("Your request is too large."),
        SpoolError::Busy | SpoolError::NoSpace => SwiftError::new(503, e.to_string()),
        SpoolError::Idle(_) => SwiftError::new(408, "Request Timeout"),
        SpoolError::Client(m) => SwiftError::bad_request(format!("reading the body: {m}")),
        SpoolError::Io(io) => {
            // The spool directory's path is the operator's business, not the client's.
            tracing::error!(error = %io, "spooling an upload without a Content-Length failed");
            SwiftError::new(
                503,
                "the gateway could not hold the upload; try again later",
            )
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn put_slo(
    ctx: &RequestCtx,
    req: &Parts,
    body: axum::body::Body,
    account: &str,
    container: &str,
    object: &str,
    meta: BTreeMap<String, String>,
    content_type: String,
) -> SwiftResult<Response> {
    let objects = &ctx.state.objects;
    let client_etag = header(req, "etag").map(|e| e.trim_matches('"').to_string());
    let body = read_small(body, slo::MAX_MANIFEST_SIZE).await?;
    let specs = slo::parse_manifest_put(&body)?;
    let mut facts = Vec::with_capacity(specs.len());
    for s in &specs {
        let f = objects
            .head(account, &s.container, &s.object)
            .await
            .map_err(cluster_error)?
            .map(|i| SegmentFacts {
                etag: i.etag().to_string(),
                size_bytes: i.size(),
                content_type: Some(i.meta.content_type.clone()),
            });
        facts.push(f);
    }
    let manifest = slo::validate_segments(&specs, &facts)?;
    slo::check_client_etag(&manifest, client_etag.as_deref())?;
    let etag = manifest.etag();
    let json = manifest.to_stored_json();
    let meta = objects::manifest_meta("slo", manifest.total_size(), &etag, meta);
    let put = ObjectPut {
        account: account.into(),
        container: container.into(),
        object: object.into(),
        size_bytes: json.len() as u64,
        content_type,
        user_meta: meta,
        digest: None,
    };
    let written = objects
        .put(put, cairn_net::Body::Full(json.into()))
        .await
        .map_err(cluster_error)?;
    Ok(respond(
        StatusCode::CREATED,
        vec![
            ("ETag".into(), format!("\"{etag}\"")),
            (
                "Last-Modified".into(),
                timestamp::last_modified_header(written.timestamp.wall_micros),
            ),
        ],
        axum::body::Body::empty(),
    ))
}

/// Queues an object written with a delete time for the expirer.
async fn schedule_expiry(
    ctx: &RequestCtx,
    delete_at: &Option<String>,
    account: &str,
    container: &str,
    object: &str,
) -> SwiftResult<()> {
    if let Some(at) = delete_at.as_ref().and_then(|s| s.parse::<u64>().ok()) {
        crate::expirer::schedule(ctx.state.objects.client(), at, account, container, object)
            .await
            .map_err(cluster_error)?;
    }
    Ok(())
}

/// Rewrites an object with new metadata (Swift's POST replaces all user metadata). The
/// engine has no metadata-only update, so the object is copied onto itself.
async fn post_object(
    ctx: &RequestCtx,
    req: &Parts,
    account: &str,
    container: &str,
    object: &str,
) -> SwiftResult<Response> {
    let source = format!("/{container}/{object}");
    let mut r = copy_inner(ctx, req, account, &source, container, object, true).await?;
    *r.status_mut() = StatusCode::ACCEPTED;
    Ok(r)
}

async fn copy_object(
    ctx: &RequestCtx,
    req: &Parts,
    account: &str,
    source: &str,
    container: &str,
    object: &str,
) -> SwiftResult<Response> {
    copy_inner(ctx, req, account, source, container, object, false).await
}

async fn copy_inner(
    ctx: &RequestCtx,
    req: &Parts,
    account: &str,
    source: &str,
    container: &str,
    object: &str,
    replace_meta: bool,
) -> SwiftResult<Response> {
    let objects = &ctx.state.objects;
    let src = cairn_swift_proto::query::decode_component(source)?;
    let (sc, so) = src
        .trim_start_matches('/')
        .split_once('/')
        .ok_or_else(|| SwiftError::precondition_failed("Bad X-Copy-From"))?;
    let open = objects
        .open(account, sc, so, true)
        .await
        .map_err(cluster_error)?
        .ok_or_else(|| SwiftError::not_found("Not Found"))?;
    let OpenObject { info, opened } = open;
    let mut meta: BTreeMap<String, String> = if replace_meta {
        info.meta
            .user_meta
            .iter()
            .filter(|(k, _)| k.starts_with("sys-content") || k.as_str() == objects::SYS_DELETE_AT)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    } else {
        info.meta
            .user_meta
            .iter()
            .filter(|(k, _)| k.starts_with(USER_META) || k.starts_with("sys-content"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    meta.extend(object_meta_from(req)?);
    let content_type = header(req, "content-type")
        .map(str::to_string)
        .unwrap_or_else(|| info.meta.content_type.clone());
    let size = opened.size();
    let body = objects
        .read_opened(account, opened, None)
        .await
        .map_err(cluster_error)?;
    let put = ObjectPut {
        account: account.into(),
        container: container.into(),
        object: object.into(),
        size_bytes: size,
        content_type,
        user_meta: meta,
        digest: None,
    };
    let delete_at = put.user_meta.get(objects::SYS_DELETE_AT).cloned();
    let written = objects.put(put, body).await.map_err(cluster_error)?;
    schedule_expiry(ctx, &delete_at, account, container, object).await?;
    let etag = objects
        .head(account, container, object)
        .await
        .map_err(cluster_error)?
        .map(|i| i.etag().to_string())
        .unwrap_or_default();
    Ok(respond(
        StatusCode::CREATED,
        vec![
            ("ETag".into(), format!("\"{etag}\"")),
            ("X-Copied-From".into(), format!("{sc}/{so}")),
            (
                "Last-Modified".into(),
                timestamp::last_modified_header(written.timestamp.wall_micros),
            ),
            ("Content-Length".into(), "0".into()),
        ],
        axum::body::Body::empty(),
    ))
}
