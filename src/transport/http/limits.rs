//! What keeps the HTTP transport available to well-behaved clients while
//! others abandon sessions or send slowly (issue 11):
//!
//! - **The session cap** ([`admit`]): at `--http-max-sessions`, the session
//!   idle the longest with no open stream (no POST in progress, no GET or
//!   `subscriptions/listen` stream) is ended, its broker sessions closed as a
//!   `DELETE` would, so that a new client can start. Only when every session
//!   is busy is the answer 503, with `Retry-After`. Without this, abandoned
//!   sessions locked everyone out for the whole idle TTL (an hour by default).
//! - **The header deadline** ([`serve_connections`]): hyper's
//!   `header_read_timeout` closes a connection whose request head has not
//!   fully arrived in time, counted from when the server starts waiting for
//!   it (so an idle keep-alive connection is closed too). axum's own `serve`
//!   cannot set it, hence this accept loop.
//! - **The body deadline** ([`read_body`]): the whole body must arrive in
//!   time; a slow one gets 408 with `Connection: close`.

use super::checks::rpc_error;
use super::session::McpSession;
use super::{end_session, short_id, HttpConfig, Shared};
use crate::jsonrpc::code;
use crate::sync::lock;
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// `Retry-After` of a 503 at the session cap, in seconds: long enough not to
/// hammer a full server, short enough that a stream closing elsewhere is
/// noticed soon (busy sessions have no predictable end).
pub(super) const RETRY_AFTER_SECS: u64 = 5;

/// Serves HTTP/1.1 on `listener` with `router` until `stop` is cancelled,
/// then lets open connections finish (graceful shutdown) and returns when
/// they have. A request head that does not arrive within
/// `cfg.header_timeout` ends its connection. Accept errors that concern one
/// connection are skipped; others (out of file descriptors) are logged and
/// retried after a second, as hyper 0.14 and axum do.
pub(super) async fn serve_connections(
    listener: TcpListener,
    router: Router,
    cfg: &HttpConfig,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .keep_alive(true);
    let mut conns = JoinSet::new();
    loop {
        // Every branch is cancel-safe (`cancelled`, `join_next`, `accept`):
        // losing the race loses nothing.
        let (stream, _peer) = tokio::select! {
            _ = stop.cancelled() => break,
            // Finished connection tasks are reaped as they end, so the set
            // holds only open connections (it would grow without bound).
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::error!("HTTP accept failed: {e}; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let stop = stop.clone();
        conns.spawn(async move {
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => return log_conn_end(r),
                _ = stop.cancelled() => conn.as_mut().graceful_shutdown(),
            }
            log_conn_end(conn.await);
        });
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// A connection ended by a deadline or a client error is routine: debug log.
fn log_conn_end(r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        tracing::debug!("HTTP connection ended: {e}");
    }
}

/// Accept errors that concern only the connection being accepted.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Why a POST body could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(super) enum BodyError {
    /// Longer than the limit (413).
    #[error("the body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// Not complete within the deadline (408).
    #[error("the body did not arrive within {} s", .0.as_secs_f64())]
    TooSlow(Duration),
}

/// Reads a whole body of at most `limit` bytes within `deadline`. A client
/// that stops sending (or dribbles) cannot hold the handler past it.
pub(super) async fn read_body(
    body: Body,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, BodyError> {
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(b)) => Ok(b),
        // `to_bytes` also fails when the connection breaks mid-body; nobody
        // reads that answer, and "too large" is what the limit check says.
        Ok(Err(_)) => Err(BodyError::TooLarge(limit)),
        Err(_) => Err(BodyError::TooSlow(deadline)),
    }
}

/// The answer to a body that cannot be read: 413 when too large; 408 when
/// it missed its deadline, closing the connection (the rest of the body may
/// still be on its way, so the connection cannot be reused).
pub(super) fn body_refused(e: &BodyError) -> Response {
    match e {
        BodyError::TooLarge(_) => rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::INVALID_REQUEST,
            format!("Payload Too Large: {e} (--max-line-bytes)"),
        ),
        BodyError::TooSlow(_) => {
            let mut r = rpc_error(
                StatusCode::REQUEST_TIMEOUT,
                code::INVALID_REQUEST,
                format!("Request Timeout: {e}; send the whole body promptly"),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    }
}

/// A new session is open and counted busy until its `initialize` has been
/// answered, so that a concurrent admission cannot pick it as the idlest.
pub(super) struct Opening(pub(super) Arc<McpSession>);

impl Drop for Opening {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
}

/// Opens a session for an `initialize`. At the cap, ends the session idle
/// the longest with no open stream to make room (in the background: its
/// broker sessions close as with `DELETE`); 503 with `Retry-After` when
/// every session is busy.
pub(super) fn admit(shared: &Shared) -> Result<Opening, Response> {
    let mut map = lock(&shared.sessions);
    let cap = shared.cfg.max_sessions.max(1);
    while map.len() >= cap {
        let victim =
            idlest(map.values().map(|s| (s.id.as_str(), s.idle_time()))).map(str::to_string);
        let Some(victim) = victim.and_then(|id| map.remove(&id)) else {
            return Err(at_capacity(map.len()));
        };
        tracing::info!(
            "HTTP session {} ended to admit a new one ({cap} sessions open, the cap; it was idle the longest)",
            short_id(&victim.id)
        );
        tokio::spawn(end_session(victim));
    }
    let id = crate::secret::random_hex(16).map_err(|e| {
        rpc_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::INTERNAL_ERROR,
            format!("Internal error: no session id: {e}"),
        )
    })?;
    let session = McpSession::start((shared.new_app)(), id.clone());
    session.active.fetch_add(1, Ordering::SeqCst);
    map.insert(id, session.clone());
    Ok(Opening(session))
}

/// The session to end at the cap: the one idle the longest among those not
/// busy (`None` = busy: a POST in progress or a stream open).
fn idlest<'a>(sessions: impl Iterator<Item = (&'a str, Option<Duration>)>) -> Option<&'a str> {
    sessions
        .filter_map(|(id, idle)| idle.map(|d| (id, d)))
        .max_by_key(|(_, d)| *d)
        .map(|(id, _)| id)
}

/// 503 at the cap with every session busy: a JSON-RPC error body and
/// `Retry-After`.
fn at_capacity(open: usize) -> Response {
    let mut r = rpc_error(
        StatusCode::SERVICE_UNAVAILABLE,
        code::INVALID_REQUEST,
        format!(
            "Service Unavailable: {open} HTTP sessions are open (--http-max-sessions) and every one has a request in progress or a stream open; retry in {RETRY_AFTER_SECS} s, or DELETE unused sessions"
        ),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_idle_session_without_a_stream_is_chosen() {
        let s = |n| Some(Duration::from_secs(n));
        let all = [("a", s(5)), ("b", None), ("c", s(9)), ("d", s(1))];
        assert_eq!(idlest(all.iter().copied()), Some("c"));
        // A busy session is never chosen, however long ago it last sent a request.
        let busy = [("a", None), ("b", None)];
        assert_eq!(idlest(busy.iter().copied()), None);
        assert_eq!(idlest(std::iter::empty()), None);
    }

    #[test]
    fn at_capacity_says_when_to_retry() {
        let r = at_capacity(3);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from(RETRY_AFTER_SECS))
        );
    }

    #[tokio::test]
    async fn a_stalled_body_misses_its_deadline() {
        // The first bytes of a body, then nothing more (the sender stays open).
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let chunks =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|c| (c, rx)) },
            );
        let body = Body::from_stream(chunks);
        assert!(tx.try_send(Ok(Bytes::from_static(b"{\"js"))).is_ok());
        let r = read_body(body, 1024, Duration::from_millis(50)).await;
        assert!(matches!(r, Err(BodyError::TooSlow(_))), "{r:?}");
        drop(tx);
        let r = read_body(Body::from("x".repeat(10)), 4, Duration::from_secs(5)).await;
        assert!(matches!(r, Err(BodyError::TooLarge(4))), "{r:?}");
        let r = read_body(Body::from("{}"), 4, Duration::from_secs(5)).await;
        assert_eq!(r.ok(), Some(Bytes::from_static(b"{}")));
    }
}
