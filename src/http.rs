//! The MCP Streamable HTTP transport (`serve --http ADDR`), on the same core
//! as stdio.
//!
//! Every HTTP MCP session is one [`crate::mcp::run`] over an in-memory pipe
//! (`tokio::io::duplex`) with an [`App`] of its own, so clients are isolated:
//! their broker sessions, subscriptions and log levels are their own. A POST
//! writes its JSON-RPC message into the pipe as one line; a router task reads
//! the pipe's output and hands each answer to the POST waiting for that id,
//! and everything else (notifications) to the session's SSE stream (GET),
//! bounded, dropping and counting what nobody can take.
//!
//! Endpoint `/mcp`:
//! - `POST`: one JSON-RPC message. A request gets its answer as
//!   `application/json`; notifications and responses get `202 Accepted`.
//!   `initialize` without `Mcp-Session-Id` creates a session and returns the
//!   header; every other handshake-era message needs it (missing → 400,
//!   unknown → 404). A 2026-07-28 request (`MCP-Protocol-Version: 2026-07-28`
//!   or `_meta` naming it) needs no session: one shared stateless core serves
//!   them, with ids made unique on the way in, and its errors get 400 (bad
//!   request) or 404 (unknown method); header and `_meta` must agree (-32020).
//! - `GET`: an SSE stream of the session's server messages (one at a time; a
//!   new GET replaces the previous stream).
//! - `DELETE`: ends the session (its broker sessions are closed).
//!
//! Checked on every request, in this order: `Origin` (DNS rebinding: only
//! loopback origins, 403), the bearer token when one is configured (401),
//! `MCP-Protocol-Version` when present (400), the body size (413).
//! Idle sessions expire after the broker-session TTL. The session cap (the
//! idlest session without an open stream makes room; 503 when all are
//! busy) and the header and body deadlines are in `limits.rs`.

// The error of the request checks is the early HTTP answer itself (a cold
// path); boxing it would buy nothing.
#![allow(clippy::result_large_err)]

mod limits;

use crate::app::App;
use crate::jsonrpc::{self, code, Id, Incoming, RpcError};
use crate::secret::SecretString;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
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
    /// sessions; request ids are made unique on the way in.
    stateless: Mutex<Option<Arc<McpSession>>>,
    /// Numbers the ids of stateless requests.
    stateless_ids: AtomicU64,
    /// Cancelled at shutdown: ends every SSE stream.
    stop: CancellationToken,
}

/// One HTTP MCP session: a core server over a pipe.
struct McpSession {
    /// The `Mcp-Session-Id`.
    id: String,
    /// The pipe's input side; one writer at a time keeps lines whole.
    input: tokio::sync::Mutex<WriteHalf<DuplexStream>>,
    /// POSTs waiting for the answer with this id.
    pending: Mutex<HashMap<Id, oneshot::Sender<String>>>,
    /// The current SSE stream, if a client listens.
    listener: Mutex<Option<mpsc::Sender<String>>>,
    /// Open `subscriptions/listen` streams (2026-07-28) by the core-side
    /// request id: their answer and tagged notifications go to that POST.
    listens: Mutex<HashMap<String, mpsc::Sender<String>>>,
    /// Server messages nobody could take (no stream, or its buffer full).
    dropped: AtomicU64,
    /// Last request or stream activity, for the idle reaper.
    last_used: Mutex<Instant>,
    /// POSTs in progress (a session with one is never idle).
    active: AtomicUsize,
    /// Ends the core server loop.
    stop: CancellationToken,
    /// The core task (it also shuts the `App` down); taken by whoever ends the session.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
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
        stateless_ids: AtomicU64::new(0),
        stop: CancellationToken::new(),
    });
    let reaper = tokio::spawn(reap_idle(shared.clone()));
    let router = Router::new()
        .route(
            ENDPOINT,
            post(handle_post).get(handle_get).delete(handle_delete),
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
    let mut all: Vec<Arc<McpSession>> = shared
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .map(|(_, s)| s)
        .collect();
    all.extend(
        shared
            .stateless
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(),
    );
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
            let mut map = shared.sessions.lock().unwrap_or_else(|p| p.into_inner());
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

/// Stops the core loop, ends the SSE stream and the waiting POSTs, and waits
/// for the `App` to shut down.
async fn end_session(s: Arc<McpSession>) {
    s.stop.cancel();
    s.listener.lock().unwrap_or_else(|p| p.into_inner()).take();
    s.pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let task = s.task.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(t) = task {
        let _ = t.await;
    }
}

fn short_id(id: &str) -> &str {
    &id[..id.len().min(8)]
}

impl McpSession {
    /// Starts the core server for a new session.
    fn start(app: Arc<App>, id: String) -> Arc<Self> {
        let (client_end, server_end) = tokio::io::duplex(64 * 1024);
        let (server_read, server_write) = tokio::io::split(server_end);
        let (client_read, client_write) = tokio::io::split(client_end);
        let stop = CancellationToken::new();
        let session = Arc::new(McpSession {
            id,
            input: tokio::sync::Mutex::new(client_write),
            pending: Mutex::new(HashMap::new()),
            listener: Mutex::new(None),
            listens: Mutex::new(HashMap::new()),
            dropped: AtomicU64::new(0),
            last_used: Mutex::new(Instant::now()),
            active: AtomicUsize::new(0),
            stop: stop.clone(),
            task: Mutex::new(None),
        });
        let router = tokio::spawn(route_output(Arc::downgrade(&session), client_read));
        let grace = app.config.shutdown_grace;
        let task = tokio::spawn(async move {
            let ended = stop.clone();
            let served =
                crate::transport::stdio::run(server_read, server_write, app.clone(), async move {
                    ended.cancelled().await
                })
                .await;
            if let Err(e) = served {
                tracing::warn!("HTTP session ended with an error: {e}");
            }
            let _ = tokio::time::timeout(grace + Duration::from_millis(800), app.shutdown()).await;
            let _ = router.await;
        });
        *session.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        session
    }

    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Time since the last request or stream, or `None` while busy: a POST
    /// in progress, the SSE stream (GET) or a `subscriptions/listen` stream
    /// open. A busy session is never reaped nor ended at the cap.
    fn idle_time(&self) -> Option<Duration> {
        let listening = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|l| !l.is_closed());
        let streaming = !self
            .listens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        if listening || streaming || self.active.load(Ordering::SeqCst) > 0 {
            self.touch();
            return None;
        }
        Some(
            self.last_used
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed(),
        )
    }

    /// Writes one message into the core as one line.
    async fn send_line(&self, line: &str) -> std::io::Result<()> {
        let mut input = self.input.lock().await;
        input.write_all(line.as_bytes()).await?;
        input.write_all(b"\n").await?;
        input.flush().await
    }

    /// Hands a server message to the SSE stream, or drops and counts it.
    fn notify(&self, line: String) {
        let mut listener = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        let delivered = match listener.as_ref().map(|l| l.try_send(line)) {
            Some(Ok(())) => true,
            Some(Err(mpsc::error::TrySendError::Closed(_))) => {
                *listener = None;
                false
            }
            Some(Err(mpsc::error::TrySendError::Full(_))) | None => false,
        };
        if !delivered {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::debug!(
                    "HTTP session {}: {n} server messages dropped so far (no SSE stream open, or it is not read)",
                    short_id(&self.id)
                );
            }
        }
    }
}

/// Reads the core's output: answers go to the POST waiting for their id,
/// everything else to the SSE stream. Ends when the core closes its output.
async fn route_output(session: std::sync::Weak<McpSession>, output: ReadHalf<DuplexStream>) {
    /// Just enough of a message to route it.
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(default)]
        id: Option<Value>,
        #[serde(default)]
        method: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        params: Option<Value>,
    }
    let mut reader = BufReader::with_capacity(64 * 1024, output);
    let mut buf = Vec::with_capacity(8192);
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            buf.pop();
        }
        let Some(s) = session.upgrade() else { return };
        let Ok(line) = String::from_utf8(std::mem::take(&mut buf)) else {
            continue;
        };
        let peek: Option<Peek> = serde_json::from_str(&line).ok();
        // A listen stream's answer, tagged notifications, and its cancellation go to its POST.
        let listen_key = peek.as_ref().and_then(|p| {
            let params = p.params.as_ref();
            let tagged = params
                .and_then(|q| q.get("_meta"))
                .and_then(|m| m.get(crate::mcp::META_SUBSCRIPTION_ID))
                .or_else(|| params.and_then(|q| q.get("requestId")))
                .or(if p.method.is_none() {
                    p.id.as_ref()
                } else {
                    None
                });
            tagged.and_then(Value::as_str).map(str::to_string)
        });
        if let Some(key) = listen_key {
            let tx = s
                .listens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned();
            if let Some(tx) = tx {
                let _ = tx.try_send(line);
                continue;
            }
        }
        let answer_id = match &peek {
            Some(p) if p.method.is_none() => p.id.as_ref().and_then(id_of),
            _ => None,
        };
        match answer_id {
            Some(id) => {
                let waiter = s
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                match waiter {
                    Some(w) => {
                        let _ = w.send(line);
                    }
                    None => tracing::debug!(
                        "HTTP session {}: answer to {id:?} after its POST went away; dropped",
                        short_id(&s.id)
                    ),
                }
            }
            None => s.notify(line),
        }
    }
}

fn id_of(v: &Value) -> Option<Id> {
    match v {
        Value::String(s) => Some(Id::String(s.clone())),
        Value::Number(n) => Some(Id::Number(n.to_string())),
        _ => None,
    }
}

/// Removes the waiter of a POST that ends without its answer (client gone,
/// timeout), and counts the POST as activity while it lasts.
struct PendingGuard<'a> {
    session: &'a McpSession,
    id: Id,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.session
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        self.session.active.fetch_sub(1, Ordering::SeqCst);
        self.session.touch();
    }
}

// ---------------------------------------------------------------------------
// Checks shared by every method.

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

/// Compares without an early exit, so the time does not tell how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    diff == 0
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

fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    let mut r = (status, text.into()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json_body(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A JSON-RPC error without id, as the body of an HTTP error.
fn rpc_error(status: StatusCode, code: i64, msg: impl Into<String>) -> Response {
    json_body(
        status,
        jsonrpc::error_response(None, &RpcError::new(code, msg)),
    )
}

/// Origin, token, protocol version: the checks of every method.
fn check_request(shared: &Shared, headers: &HeaderMap) -> Result<(), Response> {
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
        if !given.is_some_and(|g| constant_time_eq(g, token.expose().as_bytes())) {
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
fn check_version(headers: &HeaderMap, id: Option<&Id>) -> Result<(), Response> {
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
fn accepts(headers: &HeaderMap, mime: &str) -> bool {
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
fn find_session(shared: &Shared, headers: &HeaderMap) -> Result<Arc<McpSession>, Response> {
    let Some(id) = headers.get(SESSION_HEADER) else {
        return Err(rpc_error(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header missing; send initialize first and repeat the header it returns on every request",
        ));
    };
    let id = id.to_str().unwrap_or("");
    let found = shared
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(id)
        .cloned();
    found.ok_or_else(|| {
        rpc_error(
            StatusCode::NOT_FOUND,
            code::INVALID_REQUEST,
            "Not Found: no such session (it ended or expired); send initialize without Mcp-Session-Id to start a new one",
        )
    })
}

// ---------------------------------------------------------------------------
// Handlers.

async fn handle_post(
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
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                code::PARSE_ERROR,
                format!("Parse error: {e}"),
            )
        }
    };
    // Compact JSON has no raw newline: the line framing of the core holds.
    let line = value.to_string();
    if let Err(r) = check_version(&headers, value.get("id").and_then(id_of).as_ref()) {
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
            if method == "notifications/cancelled" {
                // The core sends no answer to a cancelled request: end its POST.
                if let Some(id) = params
                    .as_ref()
                    .and_then(|p| p.get("requestId"))
                    .and_then(id_of)
                {
                    s.pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                }
            }
            match s.send_line(&line).await {
                Ok(()) => StatusCode::ACCEPTED.into_response(),
                Err(_) => gone(),
            }
        }
        Incoming::Request { id, method, params } => {
            if headers.get(SESSION_HEADER).is_none() {
                match stateless_route(&headers, &method, params.as_ref()) {
                    Some(Ok(())) => {
                        if let Err(e) = routing_headers(&headers, &method, params.as_ref()) {
                            return json_body(
                                StatusCode::BAD_REQUEST,
                                jsonrpc::error_response(Some(&id), &e),
                            );
                        }
                        return stateless_request(&shared, id, &line).await;
                    }
                    Some(Err((status, e))) => {
                        return json_body(status, jsonrpc::error_response(Some(&id), &e))
                    }
                    None => {}
                }
            }
            let new_session = method == "initialize" && headers.get(SESSION_HEADER).is_none();
            // Held until the answer: a session being opened is busy.
            let mut opening = None;
            let session = if new_session {
                match limits::admit(&shared) {
                    Ok(o) => opening.insert(o).0.clone(),
                    Err(r) => return r,
                }
            } else {
                match find_session(&shared, &headers) {
                    Ok(s) => s,
                    Err(r) => return r,
                }
            };
            let answer = match request(&shared, &session, id, &line).await {
                Ok(line) => line,
                Err(r) if new_session => {
                    forget(&shared, session);
                    return r;
                }
                Err(r) => return r,
            };
            let mut r = json_body(StatusCode::OK, answer.clone());
            if new_session {
                let opened =
                    serde_json::from_str::<Value>(&answer).is_ok_and(|v| v.get("result").is_some());
                match HeaderValue::from_str(&session.id) {
                    Ok(v) if opened => {
                        r.headers_mut().insert(SESSION_HEADER, v);
                        tracing::info!("HTTP session {} opened", short_id(&session.id));
                    }
                    // A failed initialize leaves no session behind.
                    _ => forget(&shared, session),
                }
            }
            r
        }
    }
}

/// Whether a request without `Mcp-Session-Id` is a 2026-07-28 one, served
/// statelessly: `Some(Ok)` when its header or `_meta` names 2026-07-28,
/// `Some(Err)` when they disagree, lack the `_meta` version, or ask for a
/// method 2026-07-28 removed before a session could exist (`initialize`);
/// `None` for the handshake era (which needs a session).
fn stateless_route(
    headers: &HeaderMap,
    method: &str,
    params: Option<&Value>,
) -> Option<Result<(), (StatusCode, RpcError)>> {
    use crate::mcp::{META_PROTOCOL_VERSION, STATELESS_PROTOCOL_VERSION};
    let header = headers
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let meta = params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_PROTOCOL_VERSION));
    let header_2026 = header == Some(STATELESS_PROTOCOL_VERSION);
    if !header_2026 && meta.is_none() {
        return None;
    }
    if header_2026 && method == "initialize" {
        return Some(Err((
            StatusCode::NOT_FOUND,
            RpcError::new(
                code::METHOD_NOT_FOUND,
                format!("Method not found: initialize does not exist in MCP {STATELESS_PROTOCOL_VERSION}; send server/discover, or initialize without MCP-Protocol-Version for the handshake era"),
            ),
        )));
    }
    if method == "initialize" {
        return None;
    }
    match (header, meta) {
        (Some(h), Some(Value::String(m))) if h != m => Some(Err((
            StatusCode::BAD_REQUEST,
            RpcError::new(
                HEADER_MISMATCH,
                format!("Header mismatch: MCP-Protocol-Version is {h:?} but params._meta.{META_PROTOCOL_VERSION} is {m:?}"),
            ),
        ))),
        (_, None) => Some(Err((
            StatusCode::BAD_REQUEST,
            RpcError::new(
                code::INVALID_PARAMS,
                format!("Invalid params: {method} needs params._meta.\"{META_PROTOCOL_VERSION}\": \"{STATELESS_PROTOCOL_VERSION}\" (MCP-Protocol-Version {STATELESS_PROTOCOL_VERSION} requests are stateless)"),
            ),
        ))),
        _ => Some(Ok(())),
    }
}

/// JSON-RPC code of a request whose `MCP-Protocol-Version` header and
/// `_meta` version differ (2026-07-28).
const HEADER_MISMATCH: i64 = -32020;

/// SEP-2243 (2026-07-28 over HTTP): `Mcp-Method` must name the body's method,
/// and `Mcp-Name` the tool or prompt name (or resource URI) it acts on, so
/// that proxies can route on headers; values are compared exactly after
/// trimming whitespace.
fn routing_headers(
    headers: &HeaderMap,
    method: &str,
    params: Option<&Value>,
) -> Result<(), RpcError> {
    let value = |name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
    };
    let mismatch = |msg: String| RpcError {
        code: HEADER_MISMATCH,
        message: format!("Header mismatch: {msg}"),
        data: None,
    };
    match value("mcp-method") {
        None => {
            return Err(mismatch(format!(
                "the Mcp-Method header is required and must be {method:?}"
            )))
        }
        Some(m) if m != method => {
            return Err(mismatch(format!(
                "Mcp-Method is {m:?} but the body's method is {method:?}"
            )))
        }
        Some(_) => {}
    }
    let target = match method {
        "tools/call" | "prompts/get" => params.and_then(|p| p.get("name")).and_then(Value::as_str),
        "resources/read" => params.and_then(|p| p.get("uri")).and_then(Value::as_str),
        _ => None,
    };
    if let Some(t) = target {
        match value("mcp-name") {
            None => {
                return Err(mismatch(format!(
                    "the Mcp-Name header is required and must be {t:?}"
                )))
            }
            Some(n) if n != t => {
                return Err(mismatch(format!(
                    "Mcp-Name is {n:?} but the body names {t:?}"
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Serves one 2026-07-28 request on the shared stateless core: its id is
/// replaced by a unique one on the way in and restored on the way out, and
/// an error answer gets the HTTP status 2026-07-28 gives it (400 for a bad
/// request, 404 for an unknown method).
async fn stateless_request(shared: &Shared, id: Id, line: &str) -> Response {
    let session = {
        let mut slot = shared.stateless.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert_with(|| McpSession::start((shared.new_app)(), "stateless".into()))
            .clone()
    };
    let n = shared.stateless_ids.fetch_add(1, Ordering::Relaxed);
    let inner = Id::String(format!("mqtt-mcp-stateless-{n}"));
    let Ok(mut value) = serde_json::from_str::<Value>(line) else {
        return rpc_error(StatusCode::BAD_REQUEST, code::PARSE_ERROR, "Parse error");
    };
    value["id"] = Value::String(format!("mqtt-mcp-stateless-{n}"));
    if value["method"] == "subscriptions/listen" {
        return listen_stream(
            shared,
            session,
            id,
            format!("mqtt-mcp-stateless-{n}"),
            value.to_string(),
        )
        .await;
    }
    let answer = match request(shared, &session, inner, &value.to_string()).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Ok(mut answer) = serde_json::from_str::<Value>(&answer) else {
        return json_body(StatusCode::OK, answer);
    };
    answer["id"] = id.to_value();
    let status = match answer["error"]["code"].as_i64() {
        Some(code::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(
            code::INVALID_REQUEST
            | code::INVALID_PARAMS
            | HEADER_MISMATCH
            | crate::mcp::UNSUPPORTED_PROTOCOL_VERSION,
        ) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    json_body(status, answer.to_string())
}

/// A 2026-07-28 `subscriptions/listen` over HTTP: the POST's answer is an SSE
/// stream carrying the acknowledgement, the tagged notifications (ids mapped
/// back to the client's) and, if the listen fails, its error. When the client
/// goes away the core is told to cancel the listen.
async fn listen_stream(
    shared: &Shared,
    session: Arc<McpSession>,
    client_id: Id,
    inner: String,
    line: String,
) -> Response {
    let (tx, rx) = mpsc::channel::<String>(shared.cfg.sse_buffer.max(1));
    session
        .listens
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(inner.clone(), tx);
    if session.send_line(&line).await.is_err() {
        session
            .listens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&inner);
        return gone();
    }
    /// Cancels the listen in the core when the response stream is dropped.
    struct Ending {
        session: Arc<McpSession>,
        inner: String,
    }
    impl Drop for Ending {
        fn drop(&mut self) {
            self.session
                .listens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.inner);
            let s = self.session.clone();
            let cancel = crate::mcp::Outgoing::notification(
                crate::mcp::Method::Cancelled,
                serde_json::json!({ "requestId": self.inner, "reason": "the HTTP stream closed" }),
            )
            .to_json();
            tokio::spawn(async move {
                let _ = s.send_line(&cancel).await;
            });
        }
    }
    let ending = Ending {
        session: session.clone(),
        inner: inner.clone(),
    };
    let mut rx = rx;
    // The first message decides the shape: a failed listen is a plain JSON
    // error (400); an acknowledgement opens the stream.
    let first = match tokio::time::timeout(shared.cfg.request_timeout, rx.recv()).await {
        Ok(Some(l)) => l,
        _ => return gone(),
    };
    if let Ok(mut v) = serde_json::from_str::<Value>(&first) {
        if v.get("method").is_none() {
            v["id"] = client_id.to_value();
            drop(ending);
            return json_body(StatusCode::BAD_REQUEST, v.to_string());
        }
    }
    let (requeue, rx2) = mpsc::channel::<String>(shared.cfg.sse_buffer.max(1) + 1);
    let _ = requeue.try_send(first);
    tokio::spawn(async move {
        while let Some(l) = rx.recv().await {
            if requeue.send(l).await.is_err() {
                break;
            }
        }
    });
    let rx = rx2;
    let stops = (session.stop.clone(), shared.stop.clone());
    let client = client_id.to_value();
    let events = futures_util::stream::unfold(
        (rx, stops, ending, false),
        move |(mut rx, stops, ending, done)| {
            let client = client.clone();
            let inner = ending.inner.clone();
            async move {
                if done {
                    return None;
                }
                let line = tokio::select! {
                    _ = stops.0.cancelled() => None,
                    _ = stops.1.cancelled() => None,
                    l = rx.recv() => l,
                }?;
                let mut v: Value = serde_json::from_str(&line).ok()?;
                let last = v.get("method").is_none() || v["method"] == "notifications/cancelled";
                if v.get("method").is_none() {
                    v["id"] = client.clone();
                }
                if let Some(m) = v
                    .get_mut("params")
                    .and_then(|p| p.get_mut("_meta"))
                    .and_then(|m| m.get_mut(crate::mcp::META_SUBSCRIPTION_ID))
                {
                    *m = client.clone();
                }
                if v["params"]["requestId"] == Value::String(inner) {
                    v["params"]["requestId"] = client.clone();
                }
                Some((
                    Ok::<_, Infallible>(Event::default().data(v.to_string())),
                    (rx, stops, ending, last),
                ))
            }
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// Removes a session and ends it in the background.
fn forget(shared: &Shared, session: Arc<McpSession>) {
    shared
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&session.id);
    tokio::spawn(end_session(session));
}

fn gone() -> Response {
    rpc_error(
        StatusCode::NOT_FOUND,
        code::INVALID_REQUEST,
        "Not Found: the session ended; send initialize without Mcp-Session-Id to start a new one",
    )
}

/// Sends a request into the session and waits for the answer with its id.
/// An error is the whole HTTP answer.
async fn request(
    shared: &Shared,
    s: &Arc<McpSession>,
    id: Id,
    line: &str,
) -> Result<String, Response> {
    let (tx, rx) = oneshot::channel();
    {
        let mut pending = s.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.contains_key(&id) {
            return Ok(jsonrpc::error_response(
                Some(&id),
                &RpcError::new(
                    code::INVALID_REQUEST,
                    "Invalid Request: a request with this id is still in flight; use unique ids",
                ),
            ));
        }
        pending.insert(id.clone(), tx);
    }
    s.active.fetch_add(1, Ordering::SeqCst);
    s.touch();
    let _guard = PendingGuard {
        session: s,
        id: id.clone(),
    };
    if s.send_line(line).await.is_err() {
        return Err(gone());
    }
    match tokio::time::timeout(shared.cfg.request_timeout, rx).await {
        Ok(Ok(answer)) => Ok(answer),
        // Cancelled by the client (notifications/cancelled): no answer comes.
        Ok(Err(_)) if !s.stop.is_cancelled() => Err(StatusCode::NO_CONTENT.into_response()),
        Ok(Err(_)) => Err(gone()),
        Err(_) => Err(rpc_error(
            StatusCode::GATEWAY_TIMEOUT,
            code::INTERNAL_ERROR,
            format!(
                "Gateway Timeout: no answer within {} s",
                shared.cfg.request_timeout.as_secs()
            ),
        )),
    }
}

async fn handle_get(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = check_request(&shared, &headers) {
        return r;
    }
    if let Err(r) = check_version(&headers, None) {
        return r;
    }
    if !accepts(&headers, "text/event-stream") {
        return plain(
            StatusCode::NOT_ACCEPTABLE,
            "Not Acceptable: GET /mcp opens an SSE stream; send Accept: text/event-stream",
        );
    }
    let s = match find_session(&shared, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (tx, rx) = mpsc::channel::<String>(shared.cfg.sse_buffer.max(1));
    // A new stream replaces the previous one, which ends: a message goes to one stream only.
    *s.listener.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    s.touch();
    let stops = (s.stop.clone(), shared.stop.clone());
    let open = futures_util::stream::once(std::future::ready(Ok::<_, Infallible>(
        Event::default().comment("mqtt-mcp: server messages of this session follow"),
    )));
    let messages = futures_util::stream::unfold((rx, stops), |(mut rx, stops)| async move {
        let line = tokio::select! {
            _ = stops.0.cancelled() => None,
            _ = stops.1.cancelled() => None,
            l = rx.recv() => l,
        }?;
        Some((Ok(Event::default().data(line)), (rx, stops)))
    });
    use futures_util::StreamExt as _;
    Sse::new(open.chain(messages))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

async fn handle_delete(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
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
    shared
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&s.id);
    tracing::info!("HTTP session {} ended by DELETE", short_id(&s.id));
    let _ = tokio::time::timeout(Duration::from_secs(5), end_session(s)).await;
    StatusCode::NO_CONTENT.into_response()
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
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
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
