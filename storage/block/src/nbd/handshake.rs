//! Fixed-newstyle handshake: greeting, client flags and option haggling.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::export::{Export, Exports};
use super::proto::{self, ClientOption, FrameError, InfoRequest, MetaRequest};

/// Options one handshake may send; a client looping on options is cut off.
const MAX_OPTIONS: usize = 1024;

#[derive(thiserror::Error, Debug)]
pub(crate) enum HandshakeError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("more than {MAX_OPTIONS} options")]
    TooManyOptions,
    #[error("export {name:?} unavailable for NBD_OPT_EXPORT_NAME: {reason}")]
    ExportName { name: String, reason: String },
    #[error("NBD_OPT_EXPORT_NAME before TLS on a TLS-only server")]
    ExportNameBeforeTls,
}

/// What the option haggling ended with.
pub(crate) enum Outcome<E> {
    Transmit(Negotiated<E>),
    /// STARTTLS was acknowledged; the caller upgrades the stream and haggles again.
    StartTls,
    Abort,
}

/// Everything transmission needs from the handshake.
pub(crate) struct Negotiated<E> {
    pub export: Arc<E>,
    pub name: String,
    pub structured: bool,
    pub base_allocation: bool,
    pub flags: u16,
}

/// Per-connection negotiation state. STARTTLS resets everything but the client flags, as the
/// spec requires (a MitM could have injected plain-text options).
pub(crate) struct State {
    pub no_zeroes: bool,
    pub tls_active: bool,
    pub tls_offered: bool,
    pub tls_required: bool,
    structured: bool,
    /// Export name the base:allocation context was selected for.
    meta: Option<String>,
}

impl State {
    pub fn new(no_zeroes: bool, tls_offered: bool, tls_required: bool) -> Self {
        Self {
            no_zeroes,
            tls_active: false,
            tls_offered,
            tls_required,
            structured: false,
            meta: None,
        }
    }

    pub fn tls_started(&mut self) {
        self.tls_active = true;
        self.structured = false;
        self.meta = None;
    }
}

/// Sends the greeting and reads the client flags.
pub(crate) async fn greet<S>(s: &mut S) -> Result<proto::ClientFlags, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    s.write_all(&proto::greeting()).await?;
    s.flush().await?;
    let mut b = [0u8; 4];
    s.read_exact(&mut b).await?;
    Ok(proto::parse_client_flags(&b)?)
}

async fn reply<S>(s: &mut S, option: u32, kind: u32, data: &[u8]) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    s.write_all(&proto::option_reply(option, kind, data)).await
}

async fn reply_err<S>(s: &mut S, option: u32, kind: u32, msg: &str) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    tracing::debug!(option, kind, msg, "option refused");
    reply(s, option, kind, proto::clamp_string(msg).as_bytes()).await
}

/// Runs option haggling until the client picks an export, starts TLS or aborts.
pub(crate) async fn haggle<S, X>(
    s: &mut S,
    st: &mut State,
    exports: &X,
) -> Result<Outcome<X::Export>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    X: Exports,
{
    for _ in 0..MAX_OPTIONS {
        let mut hdr = [0u8; 16];
        s.read_exact(&mut hdr).await?;
        let hdr = proto::parse_option_header(&hdr)?;
        let mut data = vec![0u8; usize::try_from(hdr.len).unwrap_or(0)];
        s.read_exact(&mut data).await?;
        let opt = hdr.option;
        let parsed = match proto::parse_option(opt, &data) {
            Ok(o) => o,
            Err(Ok(invalid)) => {
                reply_err(s, opt, proto::REP_ERR_INVALID, &invalid.0).await?;
                s.flush().await?;
                continue;
            }
            Err(Err(fatal)) => return Err(fatal.into()),
        };
        tracing::debug!(?parsed, "option");
        if let Some(outcome) = option(s, st, exports, opt, parsed).await? {
            return Ok(outcome);
        }
        s.flush().await?;
    }
    Err(HandshakeError::TooManyOptions)
}

/// Handles one option; `Some` ends haggling.
async fn option<S, X>(
    s: &mut S,
    st: &mut State,
    exports: &X,
    opt: u32,
    parsed: ClientOption,
) -> Result<Option<Outcome<X::Export>>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    X: Exports,
{
    let tls_missing = st.tls_required && !st.tls_active;
    match parsed {
        ClientOption::Abort => {
            // Best effort: the client may already have hung up.
            let _ = reply(s, opt, proto::REP_ACK, &[]).await;
            let _ = s.flush().await;
            return Ok(Some(Outcome::Abort));
        }
        ClientOption::StartTls if !st.tls_offered => {
            reply_err(s, opt, proto::REP_ERR_UNSUP, "TLS is not configured").await?;
        }
        ClientOption::StartTls if st.tls_active => {
            reply_err(s, opt, proto::REP_ERR_INVALID, "TLS already active").await?;
        }
        ClientOption::StartTls => {
            reply(s, opt, proto::REP_ACK, &[]).await?;
            s.flush().await?;
            return Ok(Some(Outcome::StartTls));
        }
        ClientOption::ExportName(_) if tls_missing => {
            // No way to send an error here; the spec says to drop the connection.
            return Err(HandshakeError::ExportNameBeforeTls);
        }
        _ if tls_missing => {
            reply_err(s, opt, proto::REP_ERR_TLS_REQD, "TLS required").await?;
        }
        ClientOption::ExportName(name) => {
            let n = export_name(s, st, exports, name).await?;
            return Ok(Some(Outcome::Transmit(n)));
        }
        ClientOption::List => {
            for (name, description) in exports.list().await {
                reply(
                    s,
                    opt,
                    proto::REP_SERVER,
                    &proto::rep_server(&name, &description),
                )
                .await?;
            }
            reply(s, opt, proto::REP_ACK, &[]).await?;
        }
        ClientOption::Info(req) => {
            info(s, st, exports, opt, req).await?;
        }
        ClientOption::Go(req) => {
            return Ok(info(s, st, exports, opt, req).await?.map(Outcome::Transmit));
        }
        ClientOption::StructuredReply => {
            st.structured = true;
            reply(s, opt, proto::REP_ACK, &[]).await?;
        }
        ClientOption::ListMetaContext(_) | ClientOption::SetMetaContext(_) if !st.structured => {
            let msg = "negotiate structured replies first";
            reply_err(s, opt, proto::REP_ERR_INVALID, msg).await?;
        }
        ClientOption::ListMetaContext(req) => meta(s, st, opt, req, true).await?,
        ClientOption::SetMetaContext(req) => meta(s, st, opt, req, false).await?,
        ClientOption::Unsupported(_) => {
            reply_err(s, opt, proto::REP_ERR_UNSUP, "option not supported").await?;
        }
    }
    Ok(None)
}

fn resolve<X: Exports>(exports: &X, name: &str) -> Option<String> {
    if name.is_empty() {
        exports.default_name()
    } else {
        Some(name.to_owned())
    }
}

fn negotiated<E: Export>(
    st: &State,
    export: Arc<E>,
    requested: &str,
    name: String,
) -> Negotiated<E> {
    let flags = proto::transmission_flags(
        export.read_only(),
        export.multi_conn(),
        export.fast_zero(),
        st.structured,
    );
    // The spec ties the context to the name used in SET_META_CONTEXT; accept either spelling
    // of the default export.
    let base_allocation = st.structured
        && st
            .meta
            .as_deref()
            .is_some_and(|m| m == requested || m == name);
    Negotiated {
        export,
        name,
        structured: st.structured,
        base_allocation,
        flags,
    }
}

async fn export_name<S, X>(
    s: &mut S,
    st: &State,
    exports: &X,
    requested: String,
) -> Result<Negotiated<X::Export>, HandshakeError>
where
    S: AsyncWrite + Unpin,
    X: Exports,
{
    let fail = |reason: String| HandshakeError::ExportName {
        name: requested.clone(),
        reason,
    };
    let name = resolve(exports, &requested).ok_or_else(|| fail("no default export".into()))?;
    let export = exports.open(&name).await.map_err(fail)?;
    let n = negotiated(st, export, &requested, name);
    s.write_all(&proto::export_name_reply(
        n.export.size(),
        n.flags,
        st.no_zeroes,
    ))
    .await?;
    s.flush().await?;
    Ok(n)
}

/// NBD_OPT_INFO and NBD_OPT_GO; returns the export for GO.
async fn info<S, X>(
    s: &mut S,
    st: &State,
    exports: &X,
    opt: u32,
    req: InfoRequest,
) -> Result<Option<Negotiated<X::Export>>, HandshakeError>
where
    S: AsyncWrite + Unpin,
    X: Exports,
{
    let Some(name) = resolve(exports, &req.name) else {
        reply_err(s, opt, proto::REP_ERR_UNKNOWN, "no default export").await?;
        return Ok(None);
    };
    let export = match exports.open(&name).await {
        Ok(e) => e,
        Err(reason) => {
            reply_err(s, opt, proto::REP_ERR_UNKNOWN, &reason).await?;
            return Ok(None);
        }
    };
    let n = negotiated(st, export, &req.name, name);
    let e = &n.export;
    reply(
        s,
        opt,
        proto::REP_INFO,
        &proto::info_export(e.size(), n.flags),
    )
    .await?;
    if req.requests.contains(&proto::INFO_NAME) {
        reply(
            s,
            opt,
            proto::REP_INFO,
            &proto::info_string(proto::INFO_NAME, &n.name),
        )
        .await?;
    }
    if req.requests.contains(&proto::INFO_DESCRIPTION) {
        let list = exports.list().await;
        if let Some((_, d)) = list.iter().find(|(l, d)| *l == n.name && !d.is_empty()) {
            let d = proto::info_string(proto::INFO_DESCRIPTION, d);
            reply(s, opt, proto::REP_INFO, &d).await?;
        }
    }
    // Sent whether or not the client asked: the spec lets servers volunteer it, and a client
    // that did not ask is only bound by it if it asked, so this never refuses anyone.
    let (min, pref, max) = e.block_sizes();
    let max = max.min(proto::MAX_PAYLOAD);
    reply(
        s,
        opt,
        proto::REP_INFO,
        &proto::info_block_size(min, pref, max),
    )
    .await?;
    reply(s, opt, proto::REP_ACK, &[]).await?;
    s.flush().await?;
    Ok((opt == proto::OPT_GO).then_some(n))
}

/// NBD_OPT_LIST_META_CONTEXT (`list`) and NBD_OPT_SET_META_CONTEXT.
async fn meta<S>(
    s: &mut S,
    st: &mut State,
    opt: u32,
    req: MetaRequest,
    list: bool,
) -> Result<(), HandshakeError>
where
    S: AsyncWrite + Unpin,
{
    let selected = if list && req.queries.is_empty() {
        true
    } else {
        req.queries
            .iter()
            .any(|q| proto::query_selects_base_allocation(q, list))
    };
    if !list {
        // SET replaces the previous selection, even with an empty one.
        st.meta = selected.then(|| req.name.clone());
    }
    if selected {
        // LIST replies carry id 0 (reserved); SET replies carry the id BLOCK_STATUS will use.
        let id = if list { 0 } else { proto::BASE_ALLOCATION_ID };
        let data = proto::meta_context(id, proto::BASE_ALLOCATION);
        reply(s, opt, proto::REP_META_CONTEXT, &data).await?;
    }
    reply(s, opt, proto::REP_ACK, &[]).await?;
    Ok(())
}
