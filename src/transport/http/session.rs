//! One HTTP MCP session: a core ([`Server`]) with its own `App`, the SSE
//! stream its notifications go to, and the round trip of one POSTed request
//! ([`McpSession::ask`]): the request goes to the core with a reply slot of
//! its own, and the POST awaits that slot. Nothing is parsed or routed by
//! id on the way back.

use super::checks::{gone, rpc_error};
use super::{short_id, Shared};
use crate::app::App;
use crate::jsonrpc::{code, Id};
use crate::mcp::{Outgoing, Request, Server, Sink};
use crate::sync::lock;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The core's notifications queued for the SSE stream's forwarder.
const NOTES: usize = 1024;

/// One HTTP MCP session.
pub(super) struct McpSession {
    /// The `Mcp-Session-Id`.
    pub(super) id: String,
    /// The MCP core.
    server: Server,
    /// The session's runtime, shut down when the session ends.
    app: Arc<App>,
    /// The current SSE stream, if a client listens.
    listener: Mutex<Option<mpsc::Sender<Outgoing>>>,
    /// Open `subscriptions/listen` streams (2026-07-28).
    pub(super) listens: AtomicUsize,
    /// Server messages nobody could take (no stream, or its buffer full).
    dropped: AtomicU64,
    /// Last request or stream activity, for the idle reaper.
    last_used: Mutex<Instant>,
    /// POSTs in progress (a session with one is never idle).
    pub(super) active: AtomicUsize,
    /// Cancelled when the session ends: its streams and waiting POSTs end.
    pub(super) stop: CancellationToken,
    /// Set by whoever ends the session first.
    ended: AtomicBool,
}

impl McpSession {
    /// Starts the core for a new session, and the task that hands its
    /// notifications to the SSE stream.
    pub(super) fn start(app: Arc<App>, id: String) -> Arc<Self> {
        let (notes, mut rx) = Sink::channel(NOTES);
        let session = Arc::new(McpSession {
            id,
            server: Server::new(app.clone(), notes),
            app,
            listener: Mutex::new(None),
            listens: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            last_used: Mutex::new(Instant::now()),
            active: AtomicUsize::new(0),
            stop: CancellationToken::new(),
            ended: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&session);
        // Ends when the core (every sender) is gone.
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                let Some(s) = weak.upgrade() else { return };
                s.notify(message);
            }
        });
        session
    }

    /// Ends the session once: ends its streams and waiting POSTs, shuts
    /// the core down (listen streams, requests in flight), then its `App`.
    /// The work runs in a task of its own, so a caller that stops waiting
    /// (DELETE's deadline) never leaves it half done; a second caller
    /// returns at once.
    pub(super) async fn end(self: Arc<Self>) {
        self.stop.cancel();
        lock(&self.listener).take();
        if self.ended.swap(true, Ordering::SeqCst) {
            return;
        }
        let work = tokio::spawn(async move {
            self.server.shutdown().await;
            let grace = self.app.config.shutdown_grace;
            let _ =
                tokio::time::timeout(grace + Duration::from_millis(800), self.app.shutdown()).await;
        });
        let _ = work.await;
    }

    /// Counts a request or stream as activity.
    pub(super) fn touch(&self) {
        *lock(&self.last_used) = Instant::now();
    }

    /// Time since the last request or stream, or `None` while busy: a POST
    /// in progress, the SSE stream (GET) or a `subscriptions/listen` stream
    /// open. A busy session is never reaped nor ended at the cap.
    pub(super) fn idle_time(&self) -> Option<Duration> {
        let listening = lock(&self.listener)
            .as_ref()
            .is_some_and(|l| !l.is_closed());
        let streaming = self.listens.load(Ordering::SeqCst) > 0;
        if listening || streaming || self.active.load(Ordering::SeqCst) > 0 {
            self.touch();
            return None;
        }
        Some(lock(&self.last_used).elapsed())
    }

    /// Makes `stream` the session's SSE stream; the previous one ends.
    pub(super) fn listen(&self, stream: mpsc::Sender<Outgoing>) {
        *lock(&self.listener) = Some(stream);
    }

    /// Hands a server message to the SSE stream, or drops and counts it.
    fn notify(&self, message: Outgoing) {
        let mut listener = lock(&self.listener);
        let delivered = match listener.as_ref().map(|l| l.try_send(message)) {
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

    /// Hands a notification to the core; false when the session has ended.
    pub(super) fn notification(&self, method: &str, params: Option<Value>) -> bool {
        if self.stop.is_cancelled() {
            return false;
        }
        self.server.notification(method, params);
        true
    }

    /// Hands a request to the core with `reply` as its answer slot.
    pub(super) async fn submit(&self, request: Request) {
        self.server.request(request).await
    }

    /// Sends a request into the session and waits for its answer, through a
    /// slot of its own. `cancel` as in [`Request::cancel`]. An error is the
    /// whole HTTP answer.
    pub(super) async fn ask(
        &self,
        shared: &Shared,
        id: Id,
        method: String,
        params: Option<Value>,
        cancel: Option<CancellationToken>,
    ) -> Result<Outgoing, Response> {
        self.active.fetch_add(1, Ordering::SeqCst);
        self.touch();
        let _busy = Busy(self);
        let (reply, mut answer) = Sink::channel(1);
        self.submit(Request {
            id,
            method,
            params,
            reply,
            cancel,
        })
        .await;
        let waited = tokio::select! {
            _ = self.stop.cancelled() => return Err(gone()),
            a = tokio::time::timeout(shared.cfg.request_timeout, answer.recv()) => a,
        };
        match waited {
            Ok(Some(answer)) => Ok(answer),
            // Cancelled by the client (notifications/cancelled): no answer comes.
            Ok(None) if !self.stop.is_cancelled() => Err(StatusCode::NO_CONTENT.into_response()),
            Ok(None) => Err(gone()),
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
}

/// Counts a POST as activity while it lasts.
struct Busy<'a>(&'a McpSession);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
}
