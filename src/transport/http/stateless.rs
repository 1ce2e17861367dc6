//! 2026-07-28 requests without `Mcp-Session-Id`: which requests they are
//! ([`route`]), the routing headers they must carry (SEP-2243), and how
//! the shared stateless core serves them ([`request`]). Each request gets
//! its answer through a slot of its own, so the ids of different clients
//! never meet and are never rewritten.

use super::checks::json_body;
use super::session::McpSession;
use super::{sse, Shared, VERSION_HEADER};
use crate::jsonrpc::{code, Id, RpcError};
use crate::mcp::method::RequestMethod;
use crate::mcp::{
    Field, Method, Outgoing, Response as Answer, META_PROTOCOL_VERSION, STATELESS_PROTOCOL_VERSION,
    UNSUPPORTED_PROTOCOL_VERSION,
};
use crate::sync::lock;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// JSON-RPC code of a request whose `MCP-Protocol-Version` header and
/// `_meta` version differ (2026-07-28).
const HEADER_MISMATCH: i64 = -32020;

/// Whether a request without `Mcp-Session-Id` is a 2026-07-28 one, served
/// statelessly: `Some(Ok)` when its header or `_meta` names 2026-07-28 and
/// its routing headers agree with the body, `Some(Err)` (the whole answer)
/// when they disagree, the `_meta` version is missing, or it asks for a
/// method 2026-07-28 removed before a session could exist (`initialize`);
/// `None` for the handshake era (which needs a session). What the `_meta`
/// version means is left to the core (`mcp::era`).
pub(super) fn route(
    headers: &HeaderMap,
    id: &Id,
    method: &str,
    params: Option<&Value>,
) -> Option<Result<(), Response>> {
    let refuse = |status: StatusCode, e: RpcError| {
        Some(Err(json_body(
            status,
            crate::jsonrpc::error_response(Some(id), &e),
        )))
    };
    let method = RequestMethod::parse(method);
    let header = headers
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let meta = crate::mcp::requested_version(params);
    let header_2026 = header == Some(STATELESS_PROTOCOL_VERSION);
    if !header_2026 && meta == Field::Absent {
        return None;
    }
    let initialize = method.known() == Some(Method::Initialize);
    if header_2026 && initialize {
        return refuse(
            StatusCode::NOT_FOUND,
            RpcError::new(
                code::METHOD_NOT_FOUND,
                format!("Method not found: initialize does not exist in MCP {STATELESS_PROTOCOL_VERSION}; send server/discover, or initialize without MCP-Protocol-Version for the handshake era"),
            ),
        );
    }
    if initialize {
        return None;
    }
    match (header, &meta) {
        (Some(h), Field::Valid(m)) if h != m => refuse(
            StatusCode::BAD_REQUEST,
            RpcError::new(
                HEADER_MISMATCH,
                format!("Header mismatch: MCP-Protocol-Version is {h:?} but params._meta.{META_PROTOCOL_VERSION} is {m:?}"),
            ),
        ),
        (_, Field::Absent) => refuse(
            StatusCode::BAD_REQUEST,
            RpcError::new(
                code::INVALID_PARAMS,
                format!("Invalid params: {} needs params._meta.\"{META_PROTOCOL_VERSION}\": \"{STATELESS_PROTOCOL_VERSION}\" (MCP-Protocol-Version {STATELESS_PROTOCOL_VERSION} requests are stateless)", method.name()),
            ),
        ),
        _ => match routing_headers(headers, method, params) {
            Ok(()) => Some(Ok(())),
            Err(e) => refuse(StatusCode::BAD_REQUEST, e),
        },
    }
}

/// SEP-2243 (2026-07-28 over HTTP): `Mcp-Method` must name the body's method,
/// and `Mcp-Name` the tool or prompt name (or resource URI) it acts on, so
/// that proxies can route on headers; values are compared exactly after
/// trimming whitespace.
fn routing_headers(
    headers: &HeaderMap,
    method: RequestMethod<'_>,
    params: Option<&Value>,
) -> Result<(), RpcError> {
    let name = method.name();
    expect_header(headers, "Mcp-Method", name, "the body's method is")?;
    let field = match method.known() {
        Some(Method::ToolsCall | Method::PromptsGet) => Some("name"),
        Some(Method::ResourcesRead) => Some("uri"),
        _ => None,
    };
    let target = field
        .and_then(|f| params.and_then(|p| p.get(f)))
        .and_then(Value::as_str);
    match target {
        Some(t) => expect_header(headers, "Mcp-Name", t, "the body names"),
        None => Ok(()),
    }
}

/// Checks that the routing header `header` is present and, trimmed, says
/// `want`; `body_says` introduces `want` in the mismatch message.
fn expect_header(
    headers: &HeaderMap,
    header: &str,
    want: &str,
    body_says: &str,
) -> Result<(), RpcError> {
    let given = headers
        .get(header.to_ascii_lowercase().as_str())
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string());
    let message = match given {
        Some(g) if g == want => return Ok(()),
        Some(g) => format!("{header} is {g:?} but {body_says} {want:?}"),
        None => format!("the {header} header is required and must be {want:?}"),
    };
    Err(RpcError::new(
        HEADER_MISMATCH,
        format!("Header mismatch: {message}"),
    ))
}

/// Serves one 2026-07-28 request on the shared stateless core, and gives an
/// error answer the HTTP status 2026-07-28 gives it (400 for a bad request,
/// 404 for an unknown method). The request is not registered by id (its
/// own token, never cancelled: it runs to its end like any other).
pub(super) async fn request(
    shared: &Shared,
    id: Id,
    method: String,
    params: Option<Value>,
) -> Response {
    let session = {
        let mut slot = lock(&shared.stateless);
        slot.get_or_insert_with(|| McpSession::start((shared.new_app)(), "stateless".into()))
            .clone()
    };
    if RequestMethod::parse(&method).known() == Some(Method::SubscriptionsListen) {
        return sse::listen_stream(shared, session, id, method, params).await;
    }
    let own = Some(CancellationToken::new());
    let answer = match session.ask(shared, id, method, params, own).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let status = match &answer {
        Outgoing::Response(Answer {
            outcome: Err(e), ..
        }) => match e.code {
            code::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
            code::INVALID_REQUEST
            | code::INVALID_PARAMS
            | HEADER_MISMATCH
            | UNSUPPORTED_PROTOCOL_VERSION => StatusCode::BAD_REQUEST,
            _ => StatusCode::OK,
        },
        _ => StatusCode::OK,
    };
    json_body(status, answer.to_json())
}
