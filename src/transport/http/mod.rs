//! The MCP Streamable HTTP transport (`serve --http ADDR`), on the same core
//! as stdio.
//!
//! Every HTTP MCP session is one [`crate::mcp::Server`] with an [`App`] of
//! its own, so clients are isolated: their broker sessions, subscriptions
//! and log levels are their own. A POST body is parsed once and handed to
//! the core as a typed request with a reply slot of its own, so the POST
//! awaits exactly its answer; the session's other server messages
//! (notifications) go to its SSE stream (GET), bounded, dropping and
//! counting what nobody can take.
//!
//! Endpoint `/mcp`:
//! - `POST`: one JSON-RPC message. A request gets its answer as
//!   `application/json`; notifications and responses get `202 Accepted`.
//!   `initialize` without `Mcp-Session-Id` creates a session and returns the
//!   header; every other handshake-era message needs it (missing → 400,
//!   unknown → 404). A 2026-07-28 request (`MCP-Protocol-Version: 2026-07-28`
//!   or `_meta` naming it) needs no session: one shared stateless core serves
//!   them, each answered through its own slot (ids of different clients
//!   never meet), and its errors get 400 (bad request) or 404 (unknown
//!   method); header and `_meta` must agree (-32020).
//! - `GET`: an SSE stream of the session's server messages (one at a time; a
//!   new GET replaces the previous stream).
//! - `DELETE`: ends the session (its broker sessions are closed).
//!
//! Checked on every request, in this order: `Origin` (DNS rebinding: only
//! loopback origins, 403), the bearer token when one is configured (401),
//! `MCP-Protocol-Version` when present (400), the body size (413).
//! Idle sessions expire after the broker-session TTL.
//!
//! # Layout
//! - this file: settings, the listener, the session table, the idle reaper.
//! - `checks.rs`: the checks every method makes, and error answers.
//! - `session.rs`: one HTTP session: its core, its SSE sink, a POST's round trip.
//! - `post.rs`: `POST` (and `DELETE`).
//! - `stateless.rs`: 2026-07-28 requests without a session.
//! - `sse.rs`: the SSE streams (`GET`, and a `subscriptions/listen` answer).
//! - `limits.rs`: the session cap that makes room, the header and body deadlines.

// The error of the request checks is the early HTTP answer itself (a cold
// path); boxing it would buy nothing.
#![allow(clippy::result_large_err)]

mod checks;
mod limits;
mod post;
mod session;
mod sse;
mod stateless;

use crate::app::App;
use crate::secret::SecretString;
use crate::sync::lock;
use axum::routing::post;
use axum::Router;
use session::McpSession;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The MCP endpoint's path.
pub const ENDPOINT: &str = "/mcp";
/// The session header (HTTP header names are case-insensitive).
pub const SESSION_HEADER: &str = "mcp-session-id";
/// The protocol version header.
pub const VERSION_HEADER: &str = "mcp-protocol-version";

/// Builds the runtime of a new HTTP session: its own broker sessions, with
/// the `default` session already being opened.
pub type AppFactory = Arc<dyn Fn() -> Arc<App> + Send + Sync>;

/// Settings of the HTTP transport.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// When set, every request needs `Authorization: Bearer <token>`.
    pub token: Option<SecretString>,
    /// Largest accepted POST body (the stdio line limit).
    pub max_body_bytes: usize,
    /// An HTTP session without requests or an open stream for this long is ended.
    pub idle_ttl: Duration,
    /// Open HTTP sessions at most (`--http-max-sessions`). At the cap, the
    /// session idle the longest with no open stream is ended for a new one;
    /// 503 only when every session is busy.
    pub max_sessions: usize,
    /// Server messages buffered for the SSE stream; more are dropped and counted.
    pub sse_buffer: usize,
    /// Longest wait for the answer to one POSTed request (504 after it).
    pub request_timeout: Duration,
    /// Longest time for a request's headers to arrive, counted from when the
    /// server starts waiting for them; the connection is closed after it, so
    /// slow or silent clients cannot hold connections (slowloris).
    pub header_timeout: Duration,
    /// Longest time for a whole POST body to arrive (408 and close after it).
    pub body_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            token: None,
            max_body_bytes: 4 * 1024 * 1024,
            idle_ttl: Duration::from_secs(3600),
            max_sessions: 64,
            sse_buffer: 256,
            request_timeout: Duration::from_secs(340),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the HTTP transport cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Anyone on the network could drive the brokers.
    #[error("--http {0} is not a loopback address: set a bearer token with --http-token or MQTT_MCP_HTTP_TOKEN, or bind to 127.0.0.1")]
    TokenRequired(SocketAddr),
    /// An empty token would accept `Bearer ` alone.
    #[error("the HTTP bearer token is empty; give a long random one")]
    EmptyToken,
    /// The listener failed.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
}

impl HttpConfig {
    /// A non-loopback bind needs a token; a token must not be empty.
    pub fn check_bind(&self, addr: SocketAddr) -> Result<(), HttpError> {
        match &self.token {
            Some(t) if t.expose().is_empty() => Err(HttpError::EmptyToken),
            None if !addr.ip().is_loopback() => Err(HttpError::TokenRequired(addr)),
            _ => Ok(()),
        }
    }
}

/// State of the whole transport.
struct Shared {
    /// Settings.
    cfg: HttpConfig,
    /// Makes the `App` of a new session.
    new_app: AppFactory,
    /// Open sessions by id.
    sessions: Mutex<HashMap<String, Arc<McpSession>>>,
    /// The core that serves 2026-07-28 requests without `Mcp-Session-Id`
    /// (started on first use; never reaped). Its clients share its broker
    /// sessions; each request is answered through its own slot.
    stateless: Mutex<Option<Arc<McpSession>>>,
    /// Cancelled at shutdown: ends every SSE stream.
    stop: CancellationToken,
}

/// Serves Streamable HTTP on `listener` until `shutdown` fires, then ends
/// every session (closing their broker sessions).
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: HttpConfig,
    new_app: AppFactory,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    if let Ok(addr) = listener.local_addr() {
        cfg.check_bind(addr)?;
    }
    let shared = Arc::new(Shared {
        cfg,
        new_app,
        sessions: Mutex::new(HashMap::new()),
        stateless: Mutex::new(None),
        stop: CancellationToken::new(),
    });
    let reaper = tokio::spawn(reap_idle(shared.clone()));
    let router = Router::new()
        .route(
            ENDPOINT,
            post(post::handle_post)
                .get(sse::handle_get)
                .delete(post::handle_delete),
        )
        .with_state(shared.clone());
    let (stop, cfg) = (shared.stop.clone(), shared.cfg.clone());
    let mut server =
        tokio::spawn(async move { limits::serve_connections(listener, router, &cfg, stop).await });
    tokio::pin!(shutdown);
    // Some only when the server stopped by itself (an I/O error).
    let early = tokio::select! {
        _ = &mut shutdown => None,
        r = &mut server => Some(r),
    };
    shared.stop.cancel();
    reaper.abort();
    let mut all: Vec<Arc<McpSession>> = lock(&shared.sessions).drain().map(|(_, s)| s).collect();
    all.extend(lock(&shared.stateless).take());
    let mut ends = tokio::task::JoinSet::new();
    for s in all {
        ends.spawn(end_session(s));
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while ends.join_next().await.is_some() {}
    })
    .await;
    match early {
        Some(Ok(r)) => r.map_err(HttpError::Io),
        Some(Err(e)) => Err(HttpError::Io(std::io::Error::other(e))),
        None => {
            // Open connections get a moment to finish their answers.
            if tokio::time::timeout(Duration::from_secs(2), &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
            Ok(())
        }
    }
}

/// Ends idle sessions; runs until aborted.
async fn reap_idle(shared: Arc<Shared>) {
    let ttl = shared.cfg.idle_ttl;
    let every = (ttl / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
    loop {
        tokio::time::sleep(every).await;
        let idle: Vec<Arc<McpSession>> = {
            let mut map = lock(&shared.sessions);
            let ids: Vec<String> = map
                .values()
                .filter(|s| s.idle_time().is_some_and(|d| d > ttl))
                .map(|s| s.id.clone())
                .collect();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        for s in idle {
            tracing::info!(
                "HTTP session {} idle for more than {} s: ended",
                short_id(&s.id),
                ttl.as_secs()
            );
            tokio::spawn(end_session(s));
        }
    }
}

/// Ends a session: its core (listen streams, requests in flight, the SSE
/// stream) and then its `App` (broker sessions).
async fn end_session(s: Arc<McpSession>) {
    s.end().await;
}

/// Removes a session and ends it in the background.
fn forget(shared: &Shared, session: Arc<McpSession>) {
    lock(&shared.sessions).remove(&session.id);
    tokio::spawn(end_session(session));
}

/// The start of a session id, for logs.
fn short_id(id: &str) -> &str {
    &id[..id.len().min(8)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_needs_token_off_loopback() {
        let mut cfg = HttpConfig::default();
        assert!(cfg.check_bind("127.0.0.1:1".parse().unwrap()).is_ok());
        assert!(cfg.check_bind("[::1]:1".parse().unwrap()).is_ok());
        assert!(matches!(
            cfg.check_bind("0.0.0.0:1".parse().unwrap()),
            Err(HttpError::TokenRequired(_))
        ));
        cfg.token = Some(SecretString::new(String::new()));
        assert!(matches!(
            cfg.check_bind("127.0.0.1:1".parse().unwrap()),
            Err(HttpError::EmptyToken)
        ));
        cfg.token = Some(SecretString::new("t".repeat(32)));
        assert!(cfg.check_bind("0.0.0.0:1".parse().unwrap()).is_ok());
    }
}
