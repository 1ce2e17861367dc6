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
//! `resultType`), everything else by the handshake rules (see
//! [`lifecycle::era`]).

mod lifecycle;
pub mod logging;
pub mod resources;

use crate::app::App;
use crate::jsonrpc::{self, code, Id, Incoming, Line, LineReader, RpcError};
use crate::tools::{self, ToolContext};
use lifecycle::Era;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

pub use lifecycle::{
    LATEST_PROTOCOL_VERSION, META_PROTOCOL_VERSION, META_SUBSCRIPTION_ID,
    STATELESS_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS, UNSUPPORTED_PROTOCOL_VERSION,
};

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
                let era = match lifecycle::era(&method, params.as_ref()) {
                    Ok(era) => era,
                    Err(e) => {
                        conn.send(jsonrpc::error_response(Some(&id), &e)).await;
                        continue;
                    }
                };
                let answer = match era {
                    Era::Handshake => conn.inline(&id, &method, params.as_ref()),
                    Era::Stateless => conn.inline_stateless(&id, &method, params.as_ref()),
                };
                if let Some(answer) = answer {
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
                        a = c.request(&id, &method, params, token.clone(), era) => Some(a),
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

    /// Notifications are never answered.
    fn notification(&self, method: &str, params: Option<Value>) {
        match method {
            "notifications/initialized" => {}
            "notifications/cancelled" => {
                let Some(id) =
                    params
                        .as_ref()
                        .and_then(|p| p.get("requestId"))
                        .and_then(|v| match v {
                            Value::String(s) => Some(Id::String(s.clone())),
                            Value::Number(n) => Some(Id::Number(n.to_string())),
                            _ => None,
                        })
                else {
                    return;
                };
                if self.cancel_inflight(&id) {
                    tracing::debug!("request {id:?} cancelled by the client");
                }
            }
            _ => tracing::debug!("ignoring notification {method}"),
        }
    }

    /// Requests answered on the reader task, in order: lifecycle and errors
    /// that need no work. None means "run it as a task".
    fn inline(&self, id: &Id, method: &str, params: Option<&Value>) -> Option<String> {
        let initialized = self.initialized.load(Ordering::SeqCst);
        match method {
            "initialize" => Some(match lifecycle::initialize(params) {
                _ if initialized => self.err(Some(id), code::INVALID_REQUEST, "Invalid Request: initialize was already received; send it once per connection"),
                Ok((version, result)) => {
                    *self.version.lock().unwrap_or_else(|p| p.into_inner()) = Some(version);
                    self.initialized.store(true, Ordering::SeqCst);
                    self.ok(id, result)
                }
                Err(e) => jsonrpc::error_response(Some(id), &e),
            }),
            "ping" => Some(self.ok(id, json!({}))),
            "server/discover" => Some(self.err(
                Some(id),
                code::METHOD_NOT_FOUND,
                "Method not found: server/discover; this server speaks MCP 2024-11-05 to 2025-11-25, send initialize",
            )),
            _ if !initialized => Some(self.err(
                Some(id),
                code::INVALID_REQUEST,
                format!("Invalid Request: {method} before initialize; send initialize first (only ping is allowed before it)"),
            )),
            "tools/list" => Some(match lifecycle::tools_list(params, self.app.config.list_page_size, |name| self.app.tool_listed(name)) {
                Ok(r) => self.ok(id, r),
                Err(e) => jsonrpc::error_response(Some(id), &e),
            }),
            "logging/setLevel" => Some(match params.and_then(|p| p.get("level")).and_then(Value::as_str).and_then(logging::level_index) {
                Some(l) => {
                    self.log_level.store(l, Ordering::Relaxed);
                    self.ok(id, json!({}))
                }
                None => self.err(Some(id), code::INVALID_PARAMS, format!("Invalid params: level must be one of {}", logging::LEVELS.join(", "))),
            }),
            "tools/call" | "resources/list" | "resources/read" | "resources/subscribe" | "resources/unsubscribe" | "completion/complete" => None,
            "resources/templates/list" => Some(self.ok(id, resources::templates())),
            "prompts/list" => Some(self.ok(id, resources::prompts())),
            "prompts/get" => Some(match resources::get_prompt(params) {
                Ok(r) => self.ok(id, r),
                Err(e) => jsonrpc::error_response(Some(id), &e),
            }),
            _ => Some(self.err(Some(id), code::METHOD_NOT_FOUND, format!("Method not found: {method}"))),
        }
    }

    /// 2026-07-28 requests answered on the reader task. There is no
    /// handshake and no connection state: `ping`, `logging/setLevel` and
    /// `resources/(un)subscribe` are gone from this revision.
    fn inline_stateless(&self, id: &Id, method: &str, params: Option<&Value>) -> Option<String> {
        use lifecycle::{stateless_result, CACHE_STATIC};
        let answer = |r: Result<Value, RpcError>| match r {
            Ok(v) => self.ok(id, v),
            Err(e) => jsonrpc::error_response(Some(id), &e),
        };
        Some(match method {
            "server/discover" => self.ok(id, lifecycle::discover()),
            "tools/list" => answer(
                lifecycle::tools_list(params, self.app.config.list_page_size, |name| self.app.tool_listed(name))
                    .map(|r| stateless_result(r, Some(CACHE_STATIC))),
            ),
            "resources/templates/list" => self.ok(id, stateless_result(resources::templates(), Some(CACHE_STATIC))),
            "prompts/list" => self.ok(id, stateless_result(resources::prompts(), Some(CACHE_STATIC))),
            "prompts/get" => answer(resources::get_prompt(params).map(|r| stateless_result(r, None))),
            "tools/call" | "resources/list" | "resources/read" | "completion/complete"
            | "subscriptions/listen" => return None,
            "ping" | "logging/setLevel" | "resources/subscribe" | "resources/unsubscribe" => self.err(
                Some(id),
                code::METHOD_NOT_FOUND,
                format!("Method not found: {method} is not part of MCP {STATELESS_PROTOCOL_VERSION} (the log level goes in _meta, resource updates come through subscriptions/listen)"),
            ),
            _ => self.err(Some(id), code::METHOD_NOT_FOUND, format!("Method not found: {method}")),
        })
    }

    /// Requests that may take time: tools, resources, completion.
    async fn request(
        &self,
        id: &Id,
        method: &str,
        params: Option<Value>,
        cancel: CancellationToken,
        era: Era,
    ) -> String {
        if era == Era::Stateless {
            return self.request_stateless(id, method, params, cancel).await;
        }
        let answer = |r: Result<Value, RpcError>| match r {
            Ok(v) => self.ok(id, v),
            Err(e) => jsonrpc::error_response(Some(id), &e),
        };
        match method {
            "tools/call" => self.tools_call(id, params, cancel, era).await,
            "resources/list" => answer(resources::list(&self.app, params.as_ref()).await),
            "resources/read" => answer(resources::read(&self.app, params.as_ref()).await),
            "completion/complete" => answer(resources::complete(&self.app, params.as_ref()).await),
            "resources/subscribe" | "resources/unsubscribe" => {
                let Some(uri) = params
                    .as_ref()
                    .and_then(|p| p.get("uri"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                else {
                    return self.err(
                        Some(id),
                        code::INVALID_PARAMS,
                        "Invalid params: params.uri is required",
                    );
                };
                if method == "resources/unsubscribe" {
                    self.watches
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&uri);
                    return self.ok(id, json!({}));
                }
                answer(
                    resources::subscribe(
                        &self.app,
                        &uri,
                        self.out.clone(),
                        self.app.config.resource_update_interval,
                        resources::Emit::handshake(),
                    )
                    .await
                    .map(|w| {
                        self.watches
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(uri, w);
                        json!({})
                    }),
                )
            }
            other => self.err(
                Some(id),
                code::METHOD_NOT_FOUND,
                format!("Method not found: {other}"),
            ),
        }
    }

    /// The 2026-07-28 side of [`Conn::request`]: the same work, results
    /// completed with `resultType` and cache hints, and an unknown resource
    /// is -32602 (Invalid params) instead of the handshake era's -32002.
    async fn request_stateless(
        &self,
        id: &Id,
        method: &str,
        params: Option<Value>,
        cancel: CancellationToken,
    ) -> String {
        use lifecycle::{stateless_result, CACHE_LIVE};
        let answer = |r: Result<Value, RpcError>, cache| match r {
            Ok(v) => self.ok(id, stateless_result(v, cache)),
            Err(mut e) => {
                if e.code == resources::RESOURCE_NOT_FOUND {
                    e.code = code::INVALID_PARAMS;
                }
                jsonrpc::error_response(Some(id), &e)
            }
        };
        match method {
            "tools/call" => self.tools_call(id, params, cancel, Era::Stateless).await,
            "resources/list" => answer(
                resources::list(&self.app, params.as_ref()).await,
                Some(CACHE_LIVE),
            ),
            "resources/read" => answer(
                resources::read(&self.app, params.as_ref()).await,
                Some(CACHE_LIVE),
            ),
            "completion/complete" => {
                answer(resources::complete(&self.app, params.as_ref()).await, None)
            }
            "subscriptions/listen" => self.listen(id, params.as_ref(), cancel).await,
            other => self.err(
                Some(id),
                code::METHOD_NOT_FOUND,
                format!("Method not found: {other}"),
            ),
        }
    }

    /// `subscriptions/listen` (2026-07-28): opens the watches the filter asks
    /// for, acknowledges what it honours, then stays open, sending tagged
    /// notifications, until the client cancels it (no answer then) or the
    /// server shuts down (see [`Conn::end_listens`]).
    ///
    /// Honoured: `resourceSubscriptions` (every URI must be a resource that
    /// has live updates, else the listen fails with -32602 and opens
    /// nothing) and `resourcesListChanged` (new topics on the default
    /// session). Tools and prompts never change, so `toolsListChanged` and
    /// `promptsListChanged` are left out of the acknowledgement.
    async fn listen(&self, id: &Id, params: Option<&Value>, cancel: CancellationToken) -> String {
        let Some(filter) = params
            .and_then(|p| p.get("notifications"))
            .and_then(Value::as_object)
        else {
            return self.err(Some(id), code::INVALID_PARAMS, "Invalid params: subscriptions/listen needs params.notifications, e.g. {\"resourceSubscriptions\": [\"mqtt://default/topic/a/b\"], \"resourcesListChanged\": true}");
        };
        let uris: Vec<String> = match filter.get("resourceSubscriptions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
                let mut u: Vec<String> = a.iter().filter_map(Value::as_str).map(str::to_string).collect();
                u.dedup();
                u
            }
            Some(_) => return self.err(Some(id), code::INVALID_PARAMS, "Invalid params: notifications.resourceSubscriptions must be an array of resource URIs"),
        };
        let list_changed = filter.get("resourcesListChanged") == Some(&Value::Bool(true));
        let start = CancellationToken::new();
        let emit = |updated, list_changed| resources::Emit {
            updated,
            list_changed,
            subscription_id: Some(id.to_value()),
            start: Some(start.clone()),
        };
        let interval = self.app.config.resource_update_interval;
        let mut watches = Vec::new();
        for uri in &uris {
            match resources::subscribe(
                &self.app,
                uri,
                self.out.clone(),
                interval,
                emit(true, false),
            )
            .await
            {
                Ok(w) => watches.push(w),
                Err(mut e) => {
                    if e.code == resources::RESOURCE_NOT_FOUND {
                        e.code = code::INVALID_PARAMS;
                    }
                    e.message = format!(
                        "{} (in notifications.resourceSubscriptions; nothing was subscribed)",
                        e.message
                    );
                    return jsonrpc::error_response(Some(id), &e);
                }
            }
        }
        let topics = resources::Uri::Topics(crate::session::DEFAULT_SESSION.to_string()).render();
        let list_changed = list_changed
            && match resources::subscribe(
                &self.app,
                &topics,
                self.out.clone(),
                interval,
                emit(false, true),
            )
            .await
            {
                Ok(w) => {
                    watches.push(w);
                    true
                }
                Err(_) => false,
            };
        let mut honoured = serde_json::Map::new();
        if list_changed {
            honoured.insert("resourcesListChanged".into(), Value::Bool(true));
        }
        if !uris.is_empty() {
            honoured.insert("resourceSubscriptions".into(), json!(uris));
        }
        self.listens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), watches);
        // Removes the watches however this future ends (cancelled = dropped).
        struct Registered<'a>(&'a Conn, &'a Id);
        impl Drop for Registered<'_> {
            fn drop(&mut self) {
                self.0
                    .listens
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(self.1);
            }
        }
        let _registered = Registered(self, id);
        self.send(jsonrpc::notification(
            "notifications/subscriptions/acknowledged",
            json!({
                "_meta": { lifecycle::META_SUBSCRIPTION_ID: id.to_value() },
                "notifications": honoured
            }),
        ))
        .await;
        start.cancel();
        cancel.cancelled().await;
        // Not reached in practice: the task around us stops polling when
        // `cancel` fires and sends nothing for a cancelled request.
        String::new()
    }

    /// Ends every open listen stream: tells the client, then cancels the
    /// request (which sends no answer) and drops its watches.
    async fn end_listens(&self) {
        let ids: Vec<Id> = self
            .listens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(id, _)| id)
            .collect();
        for id in ids {
            self.send(jsonrpc::notification(
                "notifications/cancelled",
                json!({ "requestId": id.to_value(), "reason": "the server is shutting down" }),
            ))
            .await;
            self.cancel_inflight(&id);
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

    async fn tools_call(
        &self,
        id: &Id,
        params: Option<Value>,
        cancel: CancellationToken,
        era: Era,
    ) -> String {
        let mut params =
            match params {
                Some(Value::Object(m)) => m,
                _ => return self.err(
                    Some(id),
                    code::INVALID_PARAMS,
                    "Invalid params: tools/call needs params {\"name\": ..., \"arguments\": {...}}",
                ),
            };
        let name = match params.get("name") {
            Some(Value::String(s)) => s.clone(),
            _ => {
                return self.err(
                    Some(id),
                    code::INVALID_PARAMS,
                    "Invalid params: \"name\" must be a tool name string; see tools/list",
                )
            }
        };
        let Some(tool) = tools::find(&name).filter(|t| self.app.tool_listed(t.name)) else {
            return self.err(Some(id), code::INVALID_PARAMS, format!("Invalid params: unknown tool {name:?}; call tools/list for the available tools"));
        };
        let args = match params.remove("arguments") {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => {
                return self.err(
                    Some(id),
                    code::INVALID_PARAMS,
                    "Invalid params: \"arguments\" must be an object",
                )
            }
        };
        let progress = params
            .get("_meta")
            .and_then(|m| m.get("progressToken"))
            .filter(|t| t.is_string() || t.is_number())
            .map(|t| tools::Progress {
                token: t.clone(),
                out: self.out.clone(),
            });
        let ctx = ToolContext {
            app: self.app.clone(),
            cancel,
            progress,
            tool: tool.name,
        };
        let limit = self.app.config.max_call_timeout + std::time::Duration::from_secs(1);
        let result = match tokio::time::timeout(limit, tools::call(&ctx, tool, args)).await {
            Ok(r) => r,
            Err(_) => tools::error_result(&tools::ToolError::Failed(format!("the call did not finish within the hard limit of {} s; ask for less (shorter duration, fewer messages)", limit.as_secs()))).to_string(),
        };
        match era {
            Era::Handshake => jsonrpc::response_raw(id, &result),
            Era::Stateless => jsonrpc::response_raw(id, &lifecycle::stateless_result_raw(&result)),
        }
    }
}
