//! The SSE streams: `GET /mcp` carries a session's notifications, and a
//! 2026-07-28 `subscriptions/listen` is answered with a stream of its own
//! (its acknowledgement, its tagged notifications, and its end). Messages
//! arrive typed and are serialized once, here, into events.

use super::checks::{accepts, check_request, check_version, find_session, gone, json_body, plain};
use super::session::McpSession;
use super::Shared;
use crate::jsonrpc::Id;
use crate::mcp::{Method, Notification, Outgoing, Request, Sink};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde_json::Value;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

/// How often an idle stream sends a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One server message as an SSE event.
fn event(message: &Outgoing) -> Result<Event, Infallible> {
    Ok(Event::default().data(message.to_json()))
}

/// The next message of a stream, or `None` once the session or the server stops.
async fn next(
    rx: &mut mpsc::Receiver<Outgoing>,
    stops: &(CancellationToken, CancellationToken),
) -> Option<Outgoing> {
    tokio::select! {
        _ = stops.0.cancelled() => None,
        _ = stops.1.cancelled() => None,
        m = rx.recv() => m,
    }
}

pub(super) async fn handle_get(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
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
    let (tx, rx) = mpsc::channel::<Outgoing>(shared.cfg.sse_buffer.max(1));
    // A new stream replaces the previous one, which ends: a message goes to one stream only.
    s.listen(tx);
    s.touch();
    let stops = (s.stop.clone(), shared.stop.clone());
    let open = futures_util::stream::once(std::future::ready(Ok::<_, Infallible>(
        Event::default().comment("mqtt-mcp: server messages of this session follow"),
    )));
    let messages = futures_util::stream::unfold((rx, stops), |(mut rx, stops)| async move {
        let message = next(&mut rx, &stops).await?;
        Some((event(&message), (rx, stops)))
    });
    Sse::new(open.chain(messages))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// While a listen stream is open: counts it (a session with one is busy)
/// and, when the client goes away (the stream is dropped), cancels the
/// listen in the core.
struct Open {
    /// The session the listen runs in.
    session: Arc<McpSession>,
    /// Cancels the listen request when dropped.
    _cancel: DropGuard,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.session.listens.fetch_sub(1, Ordering::SeqCst);
        self.session.touch();
    }
}

/// Whether a listen stream ends with this message: its answer (an error or
/// a result) or the server's `notifications/cancelled`.
fn ends_stream(message: &Outgoing) -> bool {
    match message {
        Outgoing::Response(_) => true,
        Outgoing::Notification(Notification { method, .. }) => *method == Method::Cancelled,
    }
}

/// A 2026-07-28 `subscriptions/listen` over HTTP: the POST's answer is an SSE
/// stream carrying what the core sends to this request's own slot: the
/// acknowledgement, the tagged notifications and, if the listen fails, its
/// error. When the client goes away the listen is cancelled.
pub(super) async fn listen_stream(
    shared: &Shared,
    session: Arc<McpSession>,
    id: Id,
    method: String,
    params: Option<Value>,
) -> Response {
    let (reply, mut rx) = Sink::channel(shared.cfg.sse_buffer);
    let cancel = CancellationToken::new();
    session.listens.fetch_add(1, Ordering::SeqCst);
    let open = Open {
        session: session.clone(),
        _cancel: cancel.clone().drop_guard(),
    };
    session
        .submit(Request {
            id,
            method,
            params,
            reply,
            cancel: Some(cancel),
        })
        .await;
    // The first message decides the shape: a failed listen is a plain JSON
    // error (400); an acknowledgement opens the stream.
    let first = match tokio::time::timeout(shared.cfg.request_timeout, rx.recv()).await {
        Ok(Some(m)) => m,
        _ => return gone(),
    };
    if let Outgoing::Response(_) = first {
        drop(open);
        return json_body(StatusCode::BAD_REQUEST, first.to_json());
    }
    let stops = (session.stop.clone(), shared.stop.clone());
    let events = futures_util::stream::unfold(
        (rx, stops, open, Some(first), false),
        |(mut rx, stops, open, first, done)| async move {
            if done {
                return None;
            }
            let message = match first {
                Some(m) => m,
                None => next(&mut rx, &stops).await?,
            };
            let last = ends_stream(&message);
            Some((event(&message), (rx, stops, open, None, last)))
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}
