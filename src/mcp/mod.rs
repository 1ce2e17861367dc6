//! The MCP server over one byte stream: reads lines, answers requests
//! concurrently (responses are matched by id, not by order), and shuts down
//! cleanly when the input ends.
//!
//! One task reads, one task writes; every request runs in a task of its own,
//! bounded by a semaphore, so a slow tool call never blocks `ping`. Lifecycle
//! messages (`initialize`) are handled inline so that a request sent right
//! after `initialize` already sees the initialized state.
//!
//! Two protocol eras share one connection: a request whose `_meta` names
//! 2026-07-28 is served statelessly (no `initialize` needed, results carry
//! `resultType`), everything else by the handshake rules (see [`era`]).
//!
//! # Layout
//! - [`method`]: the one table of MCP methods and their facts; a method
//!   string becomes a [`Method`] there and nowhere else.
//! - `params.rs`: typed params, parsed once by each handler.
//! - `lifecycle.rs`: [`era`] detection, `initialize`, `server/discover`,
//!   `tools/list`, the stateless result shape.
//! - this file: the read loop, admission (era and lifecycle checked against
//!   the table), cancellation, the writer.
//! - `dispatch.rs`: the one `match` that runs an admitted request.
//! - `listen.rs`: `subscriptions/listen` streams.
//! - [`resources`]: resources and completion; `prompts.rs`: prompts.
//! - [`logging`]: log events forwarded as `notifications/message`.

mod dispatch;
mod lifecycle;
mod listen;
pub mod logging;
pub mod method;
mod params;
mod prompts;
pub mod resources;

use crate::app::App;
use crate::jsonrpc::{self, code, Id, Incoming, Line, LineReader, RpcError};
use method::{Kind, RequestMethod};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

pub use lifecycle::{era, Cache, Era};
pub use lifecycle::{
    LATEST_PROTOCOL_VERSION, META_PROTOCOL_VERSION, META_SUBSCRIPTION_ID,
    STATELESS_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS, UNSUPPORTED_PROTOCOL_VERSION,
};
pub use method::Method;

/// State of one client connection (one process for stdio).
struct Conn {
    /// The shared runtime.
    app: Arc<App>,
    /// Answers and notifications, serialized, to the writer task.
    out: mpsc::Sender<String>,
    /// `initialize` was answered.
    initialized: AtomicBool,
    /// Negotiated protocol version.
    version: Mutex<Option<&'static str>>,
    /// Minimum level of `notifications/message` (index into logging::LEVELS).
    log_level: AtomicU8,
    /// Cancellation tokens of requests in flight, by id.
    inflight: Mutex<HashMap<Id, CancellationToken>>,
    /// Live resource subscriptions by URI (dropped on unsubscribe or shutdown).
    watches: Mutex<HashMap<String, resources::Watch>>,
    /// Open 2026-07-28 `subscriptions/listen` streams by request id, with
    /// their watches (dropped when the listen is cancelled or at shutdown).
    listens: Mutex<HashMap<Id, Vec<resources::Watch>>>,
    /// Cancelled at shutdown: stops every request.
    stop: CancellationToken,
}

impl Conn {
    async fn send(&self, line: String) {
        let _ = self.out.send(line).await;
    }

    fn ok(&self, id: &Id, result: Value) -> String {
        jsonrpc::response(id, result)
    }

    fn err(&self, id: Option<&Id>, code: i64, msg: impl Into<String>) -> String {
        jsonrpc::error_response(id, &RpcError::new(code, msg))
    }
}

/// Serves MCP on `reader`/`writer` until the input ends or `shutdown` fires.
/// Broker sessions are left to the caller (`App::shutdown`).
pub async fn run<R, W>(
    reader: R,
    writer: W,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out_tx, out_rx) = mpsc::channel::<String>(1024);
    let writer_task = tokio::spawn(write_lines(writer, out_rx));
    let conn = Arc::new(Conn {
        app: app.clone(),
        out: out_tx,
        initialized: AtomicBool::new(false),
        version: Mutex::new(None),
        log_level: AtomicU8::new(logging::DEFAULT_LEVEL),
        inflight: Mutex::new(HashMap::new()),
        watches: Mutex::new(HashMap::new()),
        listens: Mutex::new(HashMap::new()),
        stop: CancellationToken::new(),
    });
    let log_task = if app.config.forward_logs {
        logging::forward(
            conn.out.clone(),
            conn.clone_level_handle(),
            conn.stop.clone(),
        )
    } else {
        None
    };
    let permits = Arc::new(Semaphore::new(app.config.max_concurrent_requests.max(1)));
    let mut lines = LineReader::new(
        BufReader::with_capacity(64 * 1024, reader),
        app.config.max_line_bytes,
    );
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Cancellation safety: `next_line` is not cancel safe, but when the
        // shutdown branch wins we stop reading for good, so nothing is lost
        // that would have been processed.
        let line = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            l = lines.next_line() => l,
        };
        while tasks.try_join_next().is_some() {}
        let line = match line {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("reading input failed: {e}");
                break;
            }
        };
        let bytes = match line {
            Line::TooLong { discarded } => {
                conn.send(conn.err(None, code::INVALID_REQUEST, format!("Invalid Request: the line of {discarded} bytes exceeds the limit of {} bytes (--max-line-bytes); it was discarded", app.config.max_line_bytes))).await;
                continue;
            }
            Line::Complete(b) => b,
        };
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        match jsonrpc::classify(&bytes) {
            Incoming::Invalid { id, error } => {
                conn.send(jsonrpc::error_response(id.as_ref(), &error))
                    .await
            }
            Incoming::Response => {}
            Incoming::Notification { method, params } => conn.notification(&method, params),
            Incoming::Request { id, method, params } => {
                let method = RequestMethod::parse(&method);
                let admitted = era(method, params.as_ref())
                    .and_then(|era| Ok((conn.admit(method, era)?, era)));
                let (method, era) = match admitted {
                    Ok(admitted) => admitted,
                    Err(e) => {
                        conn.send(jsonrpc::error_response(Some(&id), &e)).await;
                        continue;
                    }
                };
                if method.facts().inline {
                    // Inline methods never wait, so there is nothing to cancel.
                    let answer = conn
                        .handle(&id, method, params, era, CancellationToken::new())
                        .await;
                    conn.send(answer).await;
                    continue;
                }
                let token = conn.stop.child_token();
                let duplicate = {
                    let mut inflight = conn.inflight.lock().unwrap_or_else(|p| p.into_inner());
                    let dup = inflight.contains_key(&id);
                    if !dup {
                        inflight.insert(id.clone(), token.clone());
                    }
                    dup
                };
                if duplicate {
                    conn.send(conn.err(Some(&id), code::INVALID_REQUEST, "Invalid Request: a request with this id is still in flight; use unique ids")).await;
                    continue;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let c = conn.clone();
                tasks.spawn(async move {
                    let answer = tokio::select! {
                        _ = token.cancelled() => None,
                        a = c.handle(&id, method, params, era, token.clone()) => Some(a),
                    };
                    c.inflight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    if let Some(a) = answer {
                        if !token.is_cancelled() {
                            c.send(a).await;
                        }
                    }
                    drop(permit);
                });
            }
        }
    }
    // Input ended: the server tears its listen streams down (on stdio with
    // `notifications/cancelled` naming the listen request), so they do not
    // hold the grace period below.
    conn.end_listens().await;
    // Then give in-flight calls a short grace, and cancel them.
    let grace = app.config.shutdown_grace;
    let _ = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    conn.stop.cancel();
    conn.watches
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    while tasks.join_next().await.is_some() {}
    if let Some(t) = log_task {
        t.abort();
    }
    drop(conn);
    writer_task.await.map_err(std::io::Error::other)?
}

async fn write_lines<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<String>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(8192);
    while let Some(line) = rx.recv().await {
        buf.clear();
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        // Coalesce whatever is already queued into one write; after a large
        // answer give the memory back instead of keeping it for good.
        if buf.capacity() > 1 << 20 && buf.len() < 1 << 16 {
            buf.shrink_to(1 << 16);
        }
        while buf.len() < 1 << 20 {
            match rx.try_recv() {
                Ok(l) => {
                    buf.extend_from_slice(l.as_bytes());
                    buf.push(b'\n');
                }
                Err(_) => break,
            }
        }
        if let Err(e) = async {
            w.write_all(&buf).await?;
            w.flush().await
        }
        .await
        {
            // The client went away; keep draining so senders never block.
            tracing::debug!("output closed: {e}");
            while rx.recv().await.is_some() {}
            return Ok(());
        }
    }
    let _ = w.shutdown().await;
    Ok(())
}

impl Conn {
    /// The level log events must reach to be forwarded: nothing passes
    /// before `initialize`, so a 2026-07-28 client (which never sends it)
    /// gets no `notifications/message` it did not ask for.
    fn clone_level_handle(self: &Arc<Self>) -> Arc<dyn Fn() -> u8 + Send + Sync> {
        let weak = Arc::downgrade(self);
        Arc::new(move || {
            weak.upgrade()
                .filter(|c| c.initialized.load(Ordering::SeqCst))
                .map(|c| c.log_level.load(Ordering::Relaxed))
                .unwrap_or(u8::MAX)
        })
    }

    /// Notifications are never answered; unknown ones (and the server's
    /// own, sent back) are ignored.
    fn notification(&self, name: &str, params: Option<Value>) {
        match Method::parse(name, Kind::Notification) {
            Some(Method::Cancelled) => {
                let Some(params::Cancelled { request_id }) = params::parse(params.as_ref()) else {
                    return;
                };
                if self.cancel_inflight(&request_id) {
                    tracing::debug!("request {request_id:?} cancelled by the client");
                }
            }
            Some(Method::Initialized) => {}
            _ => tracing::debug!("ignoring notification {name}"),
        }
    }

    /// Whether a request may run now: the method exists in `era` and, in
    /// the handshake era, `initialize` came first unless the table lets the
    /// method come earlier. The refusal is answered on the reader task.
    fn admit(&self, method: RequestMethod<'_>, era: Era) -> Result<Method, RpcError> {
        let known = method.known();
        if era == Era::Handshake
            && !self.initialized.load(Ordering::SeqCst)
            && !known.is_some_and(|m| m.facts().before_initialize)
        {
            return Err(RpcError::new(
                code::INVALID_REQUEST,
                format!("Invalid Request: {} before initialize; send initialize first (only ping is allowed before it)", method.name()),
            ));
        }
        match known {
            Some(m) if m.in_era(era) => Ok(m),
            _ => Err(method::not_found(method, era)),
        }
    }

    /// Cancels the running request `id`; false when it is not running (it
    /// finished, or never existed). The token is cloned out so the lock is
    /// not held while cancellation wakes the task.
    fn cancel_inflight(&self, id: &Id) -> bool {
        let token = self
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        match token {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }
}
