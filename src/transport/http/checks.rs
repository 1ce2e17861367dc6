//! The checks every method makes before a message reaches a session
//! (Origin, bearer token, protocol version header, Accept), the lookup of
//! the session a request names, and the shapes of early error answers.

use super::{session::McpSession, Shared, SESSION_HEADER, VERSION_HEADER};
use crate::jsonrpc::{self, code, Id, RpcError};
use crate::sync::lock;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Origins a local browser page may have: loopback hosts, any port.
fn origin_allowed(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let (host, port) = if let Some(tail) = rest.strip_prefix("[::1]") {
        ("[::1]", tail)
    } else {
        match rest.find(':') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        }
    };
    let host_ok = host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1" || host == "[::1]";
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// Whether the given token is the expected one, compared in constant time
/// (the time tells nothing of how much matched; only the length may show).
fn tokens_match(given: &[u8], expected: &[u8]) -> bool {
    given.ct_eq(expected).into()
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    let scheme = v.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(v[7..].trim_ascii())
}

pub(super) fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    let mut r = (status, text.into()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub(super) fn json_body(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A JSON-RPC error without id, as the body of an HTTP error.
pub(super) fn rpc_error(status: StatusCode, code: i64, msg: impl Into<String>) -> Response {
    json_body(
        status,
        jsonrpc::error_response(None, &RpcError::new(code, msg)),
    )
}

/// The answer to a message for a session that has ended.
pub(super) fn gone() -> Response {
    rpc_error(
        StatusCode::NOT_FOUND,
        code::INVALID_REQUEST,
        "Not Found: the session ended; send initialize without Mcp-Session-Id to start a new one",
    )
}

/// Origin, token, protocol version: the checks of every method.
pub(super) fn check_request(shared: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let ok = origin.to_str().is_ok_and(origin_allowed);
        if !ok {
            return Err(rpc_error(
                StatusCode::FORBIDDEN,
                code::INVALID_REQUEST,
                "Forbidden: this Origin may not use the server (only http(s)://localhost, 127.0.0.1 and [::1] may; DNS-rebinding protection)",
            ));
        }
    }
    if let Some(token) = &shared.cfg.token {
        let given = bearer(headers);
        if !given.is_some_and(|g| tokens_match(g, token.expose().as_bytes())) {
            let mut r = rpc_error(
                StatusCode::UNAUTHORIZED,
                code::INVALID_REQUEST,
                "Unauthorized: send Authorization: Bearer <token> with the server's --http-token",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mqtt-mcp\""),
            );
            return Err(r);
        }
    }
    Ok(())
}

/// Rejects an unknown `MCP-Protocol-Version` header with 400 and the
/// 2026-07-28 error (-32022, data: supported and requested), carrying the
/// request's id when the body had one.
pub(super) fn check_version(headers: &HeaderMap, id: Option<&Id>) -> Result<(), Response> {
    let Some(v) = headers.get(VERSION_HEADER) else {
        return Ok(());
    };
    let requested = String::from_utf8_lossy(v.as_bytes()).trim().to_string();
    let known = crate::mcp::SUPPORTED_PROTOCOL_VERSIONS.contains(&requested.as_str())
        || requested == crate::mcp::STATELESS_PROTOCOL_VERSION;
    if known {
        return Ok(());
    }
    let mut supported = vec![crate::mcp::STATELESS_PROTOCOL_VERSION.to_string()];
    supported.extend(
        crate::mcp::SUPPORTED_PROTOCOL_VERSIONS
            .iter()
            .map(|s| s.to_string()),
    );
    let error = RpcError {
        code: crate::mcp::UNSUPPORTED_PROTOCOL_VERSION,
        message: format!("Unsupported protocol version {requested:?} (MCP-Protocol-Version); this server speaks {}", supported.join(", ")),
        data: Some(serde_json::json!({ "supported": supported, "requested": requested })),
    };
    Err(json_body(
        StatusCode::BAD_REQUEST,
        jsonrpc::error_response(id, &error),
    ))
}

/// Whether an `Accept` header (absent = anything) allows `mime`.
pub(super) fn accepts(headers: &HeaderMap, mime: &str) -> bool {
    let Some(v) = headers.get(header::ACCEPT) else {
        return true;
    };
    let Ok(v) = v.to_str() else { return false };
    let (kind, _) = mime.split_once('/').unwrap_or((mime, ""));
    v.split(',').any(|part| {
        let m = part.split(';').next().unwrap_or("").trim();
        m == "*/*" || m.eq_ignore_ascii_case(mime) || m.eq_ignore_ascii_case(&format!("{kind}/*"))
    })
}

/// The session named by the request's header.
pub(super) fn find_session(
    shared: &Shared,
    headers: &HeaderMap,
) -> Result<Arc<McpSession>, Response> {
    let Some(id) = headers.get(SESSION_HEADER) else {
        return Err(rpc_error(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header missing; send initialize first and repeat the header it returns on every request",
        ));
    };
    let id = id.to_str().unwrap_or("");
    let found = lock(&shared.sessions).get(id).cloned();
    found.ok_or_else(|| {
        rpc_error(
            StatusCode::NOT_FOUND,
            code::INVALID_REQUEST,
            "Not Found: no such session (it ended or expired); send initialize without Mcp-Session-Id to start a new one",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        for ok in [
            "http://localhost",
            "http://localhost:3000",
            "https://LOCALHOST:443",
            "http://127.0.0.1:8080",
            "http://[::1]:5173",
            "https://[::1]",
        ] {
            assert!(origin_allowed(ok), "{ok}");
        }
        for bad in [
            "null",
            "http://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io",
            "http://127.0.0.1:80:80",
            "http://127.0.0.1:abc",
            "file://localhost",
            "http://localhost/",
            "http://[::2]:80",
            "",
        ] {
            assert!(!origin_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn tokens() {
        assert!(tokens_match(b"secret", b"secret"));
        assert!(!tokens_match(b"secret", b"secreT"));
        assert!(!tokens_match(b"secret", b"secret2"));
        assert!(!tokens_match(b"", b"x"));
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc "),
        );
        assert_eq!(bearer(&h), Some(&b"abc"[..]));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn accept_header() {
        let mut h = HeaderMap::new();
        assert!(accepts(&h, "text/event-stream"));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        assert!(accepts(&h, "text/event-stream") && accepts(&h, "application/json"));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/*;q=0.5"));
        assert!(accepts(&h, "text/event-stream") && !accepts(&h, "application/json"));
    }
}
