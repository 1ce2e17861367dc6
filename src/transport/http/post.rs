//! `POST /mcp`: one JSON-RPC message, parsed once and handed to the core as
//! a typed request or notification; and `DELETE /mcp`, which ends a session.

use super::checks::{accepts, check_request, check_version, find_session, gone, json_body, plain};
use super::{forget, limits, short_id, stateless, Shared, SESSION_HEADER};
use crate::jsonrpc::{self, code, Id, Incoming};
use crate::mcp::method::RequestMethod;
use crate::mcp::{Method, Outgoing, Response as Answer};
use crate::sync::lock;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn handle_post(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(r) = check_request(&shared, &headers) {
        return r;
    }
    let limit = shared.cfg.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return limits::body_refused(&limits::BodyError::TooLarge(limit));
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let json = ct.to_str().is_ok_and(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
        if !json {
            return plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported Media Type: POST one JSON-RPC message as application/json",
            );
        }
    }
    if !accepts(&headers, "application/json") && !accepts(&headers, "text/event-stream") {
        return plain(
            StatusCode::NOT_ACCEPTABLE,
            "Not Acceptable: the answer is application/json; list it in Accept",
        );
    }
    let bytes = match limits::read_body(body, limit, shared.cfg.body_timeout).await {
        Ok(b) => b,
        Err(e) => return limits::body_refused(&e),
    };
    // The one parse of the message.
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return super::checks::rpc_error(
                StatusCode::BAD_REQUEST,
                code::PARSE_ERROR,
                format!("Parse error: {e}"),
            )
        }
    };
    drop(bytes);
    let raw_id = value.get("id").and_then(Id::from_value);
    if let Err(r) = check_version(&headers, raw_id.as_ref()) {
        return r;
    }
    match jsonrpc::classify_value(value) {
        Incoming::Invalid { id: None, error } => json_body(
            StatusCode::BAD_REQUEST,
            jsonrpc::error_response(None, &error),
        ),
        Incoming::Invalid {
            id: Some(id),
            error,
        } => json_body(StatusCode::OK, jsonrpc::error_response(Some(&id), &error)),
        Incoming::Response => match find_session(&shared, &headers) {
            Ok(s) => {
                s.touch();
                StatusCode::ACCEPTED.into_response()
            }
            Err(r) => r,
        },
        Incoming::Notification { method, params } => {
            let s = match find_session(&shared, &headers) {
                Ok(s) => s,
                Err(r) => return r,
            };
            s.touch();
            // A cancelled request's POST ends by itself: the core drops its
            // reply slot without an answer (204).
            if s.notification(&method, params) {
                StatusCode::ACCEPTED.into_response()
            } else {
                gone()
            }
        }
        Incoming::Request { id, method, params } => {
            if headers.get(SESSION_HEADER).is_none() {
                match stateless::route(&headers, &id, &method, params.as_ref()) {
                    Some(Ok(())) => return stateless::request(&shared, id, method, params).await,
                    Some(Err(r)) => return r,
                    None => {}
                }
            }
            request(&shared, &headers, id, method, params).await
        }
    }
}

/// A handshake-era request: on its session, or, for `initialize` without
/// `Mcp-Session-Id`, on a new one that is kept only when it succeeds.
async fn request(
    shared: &Shared,
    headers: &HeaderMap,
    id: Id,
    method: String,
    params: Option<Value>,
) -> Response {
    let initialize = RequestMethod::parse(&method).known() == Some(Method::Initialize);
    let new_session = initialize && headers.get(SESSION_HEADER).is_none();
    // Held until the answer: a session being opened is busy.
    let mut opening = None;
    let session = if new_session {
        match limits::admit(shared) {
            Ok(o) => opening.insert(o).0.clone(),
            Err(r) => return r,
        }
    } else {
        match find_session(shared, headers) {
            Ok(s) => s,
            Err(r) => return r,
        }
    };
    let answer = match session.ask(shared, id, method, params, None).await {
        Ok(a) => a,
        Err(r) if new_session => {
            forget(shared, session);
            return r;
        }
        Err(r) => return r,
    };
    let opened = matches!(answer, Outgoing::Response(Answer { outcome: Ok(_), .. }));
    let mut r = json_body(StatusCode::OK, answer.to_json());
    if new_session {
        match HeaderValue::from_str(&session.id) {
            Ok(v) if opened => {
                r.headers_mut().insert(SESSION_HEADER, v);
                tracing::info!("HTTP session {} opened", short_id(&session.id));
            }
            // A failed initialize leaves no session behind.
            _ => forget(shared, session),
        }
    }
    r
}

pub(super) async fn handle_delete(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_request(&shared, &headers) {
        return r;
    }
    if let Err(r) = check_version(&headers, None) {
        return r;
    }
    let s = match find_session(&shared, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    lock(&shared.sessions).remove(&s.id);
    tracing::info!("HTTP session {} ended by DELETE", short_id(&s.id));
    let _ = tokio::time::timeout(Duration::from_secs(5), s.end()).await;
    StatusCode::NO_CONTENT.into_response()
}
