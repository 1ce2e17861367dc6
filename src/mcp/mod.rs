//! The MCP core of one client connection: typed requests and notifications
//! in, typed messages out through [`Sink`]s. It does no I/O; a transport
//! (`crate::transport`) parses each message once and hands it over, and
//! writes what comes back.
//!
//! Requests run concurrently (answers are matched by id, not by order),
//! every one in a task of its own, bounded by a semaphore, so a slow tool
//! call never blocks `ping`. Lifecycle messages (`initialize`) are handled
//! inline, in the caller's order, so that a request sent right after
//! `initialize` already sees the initialized state.
//!
//! Two protocol eras share one connection: a request whose `_meta` names
//! 2026-07-28 is served statelessly (no `initialize` needed, results carry
//! `resultType`), everything else by the handshake rules (see [`era`]).
//!
//! # Layout
//! - [`method`]: the one table of MCP methods and their facts; a method
//!   string becomes a [`Method`] there and nowhere else.
//! - `params.rs`: typed params, parsed once by each handler.
//! - [`message`]: the typed messages the core sends, and the [`Sink`].
//! - `lifecycle.rs`: [`era`] detection, `initialize`, `server/discover`,
//!   `tools/list`, the stateless result shape.
//! - this file: [`Server`]: admission (era and lifecycle checked against
//!   the table), tasks, cancellation, shutdown.
//! - `dispatch.rs`: the one `match` that runs an admitted request.
//! - `listen.rs`: `subscriptions/listen` streams.
//! - [`resources`]: resources and completion; `prompts.rs`: prompts.
//! - [`logging`]: log events forwarded as `notifications/message`.

mod dispatch;
mod lifecycle;
mod listen;
pub mod logging;
pub mod message;
pub mod method;
mod params;
mod prompts;
pub mod resources;

use crate::app::App;
use crate::jsonrpc::{code, Id, RpcError};
use crate::sync::lock;
use method::{Kind, RequestMethod};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

pub use lifecycle::{era, requested_version, Cache, Era};
pub use lifecycle::{
    LATEST_PROTOCOL_VERSION, META_PROTOCOL_VERSION, META_SUBSCRIPTION_ID,
    STATELESS_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS, UNSUPPORTED_PROTOCOL_VERSION,
};
pub use message::{Notification, Outgoing, Reply, Response, Sink};
pub use method::Method;
pub use params::Field;

/// State of one client connection (one process for stdio, one session for HTTP).
struct Conn {
    /// The shared runtime.
    app: Arc<App>,
    /// Notifications that belong to no request's answer: progress, log
    /// events, `resources/subscribe` updates.
    notes: Sink,
    /// `initialize` was answered.
    initialized: AtomicBool,
    /// Negotiated protocol version.
    version: Mutex<Option<&'static str>>,
    /// Minimum level of `notifications/message` (index into logging::LEVELS).
    log_level: AtomicU8,
    /// Cancellation tokens of requests in flight, by id (requests whose
    /// transport lets `notifications/cancelled` name them).
    inflight: Mutex<HashMap<Id, CancellationToken>>,
    /// Live resource subscriptions by URI (dropped on unsubscribe or shutdown).
    watches: Mutex<HashMap<String, resources::Watch>>,
    /// Open 2026-07-28 `subscriptions/listen` streams, by a number of their
    /// own (ids from different HTTP clients may be equal).
    listens: Mutex<HashMap<u64, listen::Open>>,
    /// Numbers the open listen streams.
    listen_keys: AtomicU64,
    /// Cancelled at shutdown: stops every request.
    stop: CancellationToken,
}

/// One request, parsed by the transport, with where its answer goes.
#[derive(Debug)]
pub struct Request {
    /// Echoed in the answer.
    pub id: Id,
    /// The method as sent; the table decides what it is.
    pub method: String,
    /// `params`, if present.
    pub params: Option<Value>,
    /// Where the answer goes, and a `subscriptions/listen`'s notifications.
    pub reply: Sink,
    /// `None`: the id is registered for `notifications/cancelled` (ids are
    /// then unique per connection, a duplicate in flight is refused).
    /// `Some`: the transport cancels the request with this token itself
    /// (a closed HTTP stream) and ids are its own to keep apart.
    pub cancel: Option<CancellationToken>,
}

/// The MCP server of one connection.
pub struct Server {
    /// The connection's state, shared with its request tasks.
    conn: Arc<Conn>,
    /// Requests running as tasks (taken at shutdown).
    tasks: Mutex<JoinSet<()>>,
    /// Bounds the requests running at once.
    permits: Arc<Semaphore>,
    /// The log forwarder, when the configuration asks for one.
    log_task: Mutex<Option<JoinHandle<()>>>,
}

impl Server {
    /// A server for one connection; `notes` takes the notifications that
    /// belong to no request's answer. Broker sessions are left to the
    /// caller (`App::shutdown`).
    pub fn new(app: Arc<App>, notes: Sink) -> Self {
        let conn = Arc::new(Conn {
            app: app.clone(),
            notes,
            initialized: AtomicBool::new(false),
            version: Mutex::new(None),
            log_level: AtomicU8::new(logging::DEFAULT_LEVEL),
            inflight: Mutex::new(HashMap::new()),
            watches: Mutex::new(HashMap::new()),
            listens: Mutex::new(HashMap::new()),
            listen_keys: AtomicU64::new(0),
            stop: CancellationToken::new(),
        });
        let log_task = if app.config.forward_logs {
            logging::forward(
                conn.notes.clone(),
                conn.clone_level_handle(),
                conn.stop.clone(),
            )
        } else {
            None
        };
        Server {
            conn,
            tasks: Mutex::new(JoinSet::new()),
            permits: Arc::new(Semaphore::new(app.config.max_concurrent_requests.max(1))),
            log_task: Mutex::new(log_task),
        }
    }

    /// Takes one request: admits it (era, lifecycle), then answers it inline
    /// or starts its task; returns once it is answered or started, so the
    /// caller's order is the order of admission. After [`Server::shutdown`]
    /// nothing is answered (the reply sink is dropped).
    pub async fn request(&self, request: Request) {
        let Request {
            id,
            method,
            params,
            reply,
            cancel,
        } = request;
        if self.conn.stop.is_cancelled() {
            return;
        }
        let method = RequestMethod::parse(&method);
        let admitted =
            era(method, params.as_ref()).and_then(|era| Ok((self.conn.admit(method, era)?, era)));
        let (method, era) = match admitted {
            Ok(admitted) => admitted,
            Err(e) => return reply.send(Outgoing::error(Some(id), e)).await,
        };
        if method.facts().inline {
            // Inline methods never wait, so there is nothing to cancel.
            let answer = self
                .conn
                .handle(&id, method, params, era, CancellationToken::new(), &reply)
                .await;
            return reply.send(answer).await;
        }
        let token = self.conn.stop.child_token();
        let registered = cancel.is_none();
        if registered {
            let duplicate = {
                let mut inflight = lock(&self.conn.inflight);
                let dup = inflight.contains_key(&id);
                if !dup {
                    inflight.insert(id.clone(), token.clone());
                }
                dup
            };
            if duplicate {
                let e = RpcError::new(
                    code::INVALID_REQUEST,
                    "Invalid Request: a request with this id is still in flight; use unique ids",
                );
                return reply.send(Outgoing::error(Some(id), e)).await;
            }
        }
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let external = cancel.unwrap_or_default();
        let c = self.conn.clone();
        let mut tasks = lock(&self.tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let answer = tokio::select! {
                _ = token.cancelled() => None,
                _ = external.cancelled() => None,
                a = c.handle(&id, method, params, era, token.clone(), &reply) => Some(a),
            };
            if registered {
                lock(&c.inflight).remove(&id);
            }
            if let Some(a) = answer {
                if !token.is_cancelled() && !external.is_cancelled() {
                    reply.send(a).await;
                }
            }
            drop(permit);
        });
    }

    /// Takes one notification. Notifications are never answered; unknown
    /// ones (and the server's own, sent back) are ignored.
    pub fn notification(&self, name: &str, params: Option<Value>) {
        match Method::parse(name, Kind::Notification) {
            Some(Method::Cancelled) => {
                let Some(params::Cancelled { request_id }) = params::parse(params.as_ref()) else {
                    return;
                };
                if self.conn.cancel_inflight(&request_id) {
                    tracing::debug!("request {request_id:?} cancelled by the client");
                }
            }
            Some(Method::Initialized) => {}
            _ => tracing::debug!("ignoring notification {name}"),
        }
    }

    /// Ends the connection: tears the listen streams down (telling their
    /// clients), gives requests in flight a short grace, then cancels them
    /// and drops every watch. Requests that come later are not answered.
    pub async fn shutdown(&self) {
        // Listen streams never end by themselves, so they must not hold the
        // grace period below.
        self.conn.end_listens().await;
        let mut tasks = std::mem::take(&mut *lock(&self.tasks));
        let grace = self.conn.app.config.shutdown_grace;
        let _ =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        self.conn.stop.cancel();
        lock(&self.conn.watches).clear();
        while tasks.join_next().await.is_some() {}
        // Requests that raced the stop above are cancelled by it.
        let mut late = std::mem::take(&mut *lock(&self.tasks));
        while late.join_next().await.is_some() {}
        if let Some(t) = lock(&self.log_task).take() {
            t.abort();
        }
    }
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
        let token = lock(&self.inflight).get(id).cloned();
        match token {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }
}
