//! MCP resources (live topics) and completion of prompt arguments and
//! resource template variables.
//!
//! Resources: `mqtt://{session}/info`, `mqtt://{session}/topics` (topics this
//! session has seen), `mqtt://{session}/topic/{+topic}` (last message and
//! recent history), `mqtt://{session}/retained/{+filter}`. Reading never
//! waits for live traffic except for retained messages. Subscribing to a
//! topic resource subscribes on the broker; updates are coalesced per
//! resource to one notification per interval.

use super::message::Sink;
use super::method::Method;
use super::params::{self, Field};
use crate::app::App;
use crate::jsonrpc::{code, RpcError};
use crate::mqtt::topic;
use crate::payload::{self, Format};
use crate::session::{rfc3339, Session};
use base64::Engine as _;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// `resources/read` of an unknown resource (handshake-era code).
pub const RESOURCE_NOT_FOUND: i64 = -32002;

/// Resources per `resources/list` page.
const PAGE: usize = 100;

/// A parsed resource URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    /// Session and broker facts.
    Info(String),
    /// The topics seen.
    Topics(String),
    /// One topic.
    Topic(String, String),
    /// Retained messages under a filter.
    Retained(String, String),
}

/// Encodes what a URI path cannot carry literally (`#`, `%`, `?`, space, controls).
pub fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '#' | '%' | '?' | ' ' => out.push_str(&format!("%{:02X}", c as u32)),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

impl Uri {
    /// Parses `mqtt://{session}/...`.
    pub fn parse(uri: &str) -> Option<Uri> {
        let rest = uri.strip_prefix("mqtt://")?;
        let (session, path) = rest.split_once('/')?;
        if session.is_empty() {
            return None;
        }
        let session = session.to_string();
        if path == "info" {
            return Some(Uri::Info(session));
        }
        if path == "topics" {
            return Some(Uri::Topics(session));
        }
        if let Some(t) = path.strip_prefix("topic/") {
            let t = crate::mqtt::url::percent_decode(t).ok()?;
            topic::validate_topic(&t).ok()?;
            return Some(Uri::Topic(session, t));
        }
        if let Some(f) = path.strip_prefix("retained/") {
            let f = crate::mqtt::url::percent_decode(f).ok()?;
            topic::validate_filter(&f).ok()?;
            return Some(Uri::Retained(session, f));
        }
        None
    }

    /// The URI text.
    pub fn render(&self) -> String {
        match self {
            Uri::Info(s) => format!("mqtt://{s}/info"),
            Uri::Topics(s) => format!("mqtt://{s}/topics"),
            Uri::Topic(s, t) => format!("mqtt://{s}/topic/{}", encode_path(t)),
            Uri::Retained(s, f) => format!("mqtt://{s}/retained/{}", encode_path(f)),
        }
    }

    fn session(&self) -> &str {
        match self {
            Uri::Info(s) | Uri::Topics(s) | Uri::Topic(s, _) | Uri::Retained(s, _) => s,
        }
    }
}

fn not_found(uri: &str, why: &str) -> RpcError {
    RpcError {
        code: RESOURCE_NOT_FOUND,
        message: format!("Resource not found: {uri} ({why})"),
        data: Some(json!({ "uri": uri })),
    }
}

async fn session_of(app: &App, uri: &str, u: &Uri) -> Result<Arc<Session>, RpcError> {
    if u.session() == crate::session::DEFAULT_SESSION {
        app.wait_default().await;
    }
    app.sessions.get(Some(u.session())).map_err(|_| {
        not_found(
            uri,
            "no such session; list_active_connections shows the open ones",
        )
    })
}

/// `resources/templates/list`.
pub fn templates() -> Value {
    json!({ "resourceTemplates": [
        {"uriTemplate": "mqtt://{session}/info", "name": "session-info", "title": "Session and broker facts", "description": "State, protocol, reconnects, profile and policy of a broker session.", "mimeType": "application/json"},
        {"uriTemplate": "mqtt://{session}/topics", "name": "topics", "title": "Topics seen", "description": "Every topic this session has seen (through subscriptions, collects and discovery) with counts, last time and a preview. Subscribe to hear about new topics.", "mimeType": "application/json"},
        {"uriTemplate": "mqtt://{session}/topic/{+topic}", "name": "topic", "title": "One topic", "description": "The last message and recent history of one topic. Subscribe to get notifications/resources/updated when messages arrive.", "mimeType": "application/json"},
        {"uriTemplate": "mqtt://{session}/retained/{+filter}", "name": "retained", "title": "Retained messages", "description": "The retained messages under a topic filter (# is written %23).", "mimeType": "application/json"}
    ]})
}

/// `resources/list`: per session its info and topics, then every topic seen.
pub async fn list(app: &App, params: Option<&Value>) -> Result<Value, RpcError> {
    app.wait_default().await;
    let mut all: Vec<Value> = Vec::new();
    for s in app.sessions.list() {
        all.push(json!({"uri": Uri::Info(s.id.clone()).render(), "name": format!("{} info", s.id), "title": format!("Session {} ({})", s.id, s.broker_url), "mimeType": "application/json"}));
        all.push(json!({"uri": Uri::Topics(s.id.clone()).render(), "name": format!("{} topics", s.id), "title": format!("Topics seen on {}", s.broker_url), "mimeType": "application/json"}));
        for (t, _, _) in s.link.topics_seen() {
            all.push(json!({"uri": Uri::Topic(s.id.clone(), t.clone()).render(), "name": t, "mimeType": "application/json"}));
        }
    }
    let list: params::List = params::parse(params).unwrap_or_default();
    let start = match list.cursor {
        Field::Absent | Field::Valid(None) => 0,
        Field::Valid(Some(c)) => c.strip_prefix('r').and_then(|n| n.parse::<usize>().ok()).filter(|n| *n > 0 && *n < all.len()).ok_or_else(|| RpcError::new(code::INVALID_PARAMS, "Invalid params: unknown cursor; pass the nextCursor of the previous resources/list answer"))?,
        Field::Invalid => return Err(RpcError::new(code::INVALID_PARAMS, "Invalid params: cursor must be a string")),
    };
    let end = (start + PAGE).min(all.len());
    let mut out = json!({ "resources": all[start..end].to_vec() });
    if end < all.len() {
        out["nextCursor"] = json!(format!("r{end}"));
    }
    Ok(out)
}

fn text_contents(uri: &str, v: Value) -> Value {
    json!({ "contents": [{ "uri": uri, "mimeType": "application/json", "text": v.to_string() }] })
}

/// `resources/read`.
pub async fn read(app: &Arc<App>, params: Option<&Value>) -> Result<Value, RpcError> {
    let params::Resource { uri } = params::parse(params).ok_or_else(|| {
        RpcError::new(
            code::INVALID_PARAMS,
            "Invalid params: resources/read needs params.uri",
        )
    })?;
    let uri = uri.as_str();
    let u = Uri::parse(uri).ok_or_else(|| {
        not_found(
            uri,
            "expected mqtt://{session}/info, /topics, /topic/{topic} or /retained/{filter}",
        )
    })?;
    let s = session_of(app, uri, &u).await?;
    match &u {
        Uri::Info(_) => {
            let (state, reconnects, last_error) = s.link.status();
            Ok(text_contents(
                uri,
                json!({
                    "session_id": s.id, "broker_url": s.broker_url, "client_id": s.client_id,
                    "protocol_version": s.link.protocol().as_str(), "state": state.as_str(),
                    "reconnects": reconnects, "last_error": last_error, "profile": s.profile,
                    "read_only": s.policy.read_only(), "embedded_broker": s.link.is_embedded(),
                    "created_at": rfc3339(s.created_at), "background_subscriptions": s.subscriptions.len(),
                    "topics_seen": s.link.topic_count(),
                }),
            ))
        }
        Uri::Topics(_) => {
            let topics: Vec<Value> = s
                .link
                .topics_seen()
                .into_iter()
                .filter(|(t, _, _)| s.policy.check_subscribe(t).is_ok())
                .map(|(t, n, m)| json!({"topic": t, "messages_seen": n, "last_seen": rfc3339(m.received_at), "retained": m.retain, "format": payload::format_of(&m.payload).as_str(), "preview": payload::preview(&m.payload, 80)}))
                .collect();
            Ok(text_contents(
                uri,
                json!({ "count": topics.len(), "topics": topics }),
            ))
        }
        Uri::Topic(_, t) => {
            if let Err(e) = s.policy.check_subscribe(t) {
                return Err(RpcError::new(
                    code::INVALID_PARAMS,
                    format!("Invalid params: {e}"),
                ));
            }
            let msgs = s.link.history(t, 20);
            if let Some(last) = msgs.last() {
                if payload::format_of(&last.payload) == Format::Binary {
                    return Ok(
                        json!({ "contents": [{ "uri": uri, "mimeType": "application/octet-stream", "blob": base64::engine::general_purpose::STANDARD.encode(&last.payload) }] }),
                    );
                }
            }
            let history: Vec<crate::tools::defs::Message> = msgs
                .iter()
                .map(|m| crate::tools::message_json(m, 4096, crate::tools::Seen::of(&s)))
                .collect();
            let note = msgs.is_empty().then_some("nothing seen on this topic yet; resources/subscribe to it, or use subscribe_and_collect");
            Ok(text_contents(
                uri,
                json!({ "topic": t, "last": history.last(), "history": history, "note": note }),
            ))
        }
        Uri::Retained(_, f) => {
            // The get_retained handler itself, typed: no lookup by name, no
            // JSON text to parse back; under the one deadline a call of it
            // would have (its schema's default, the server's ceiling).
            let ctx = crate::tools::ToolContext {
                app: app.clone(),
                cancel: Default::default(),
                progress: None,
                tool: Method::ResourcesRead.name(),
            };
            let args = crate::tools::params::GetRetained {
                session_id: Some(s.id.clone()),
                filter: Some(f.clone()),
                limit: Some(1000),
                settle_ms: None,
                preview_bytes: None,
                timeout_ms: None,
            };
            let found =
                crate::tools::deadline::run(&ctx, args, crate::tools::handlers::get_retained)
                    .await
                    .map_err(|e| match e {
                        crate::tools::ToolError::DeadlineExceeded { .. } => {
                            RpcError::new(code::INTERNAL_ERROR, e.to_string())
                        }
                        e => RpcError::new(code::INVALID_PARAMS, format!("Invalid params: {e}")),
                    })?;
            let shown = serde_json::to_value(found)
                .map_err(|e| RpcError::new(code::INTERNAL_ERROR, e.to_string()))?;
            Ok(text_contents(uri, shown))
        }
    }
}

/// A live resource subscription: the task that sends coalesced updates.
pub struct Watch {
    /// Aborted on unsubscribe or shutdown.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which notifications a [`Watch`] sends, and how they are tagged.
#[derive(Debug, Clone, Default)]
pub struct Emit {
    /// Send `notifications/resources/updated` for the watched resource.
    pub updated: bool,
    /// Send `notifications/resources/list_changed` when a topic appears.
    pub list_changed: bool,
    /// 2026-07-28 `subscriptions/listen`: the listen request's id, put in
    /// every notification's `_meta` as `io.modelcontextprotocol/subscriptionId`.
    pub subscription_id: Option<Value>,
    /// Nothing is sent before this is cancelled (so the listen's
    /// acknowledgement goes first); messages arriving meanwhile still count.
    pub start: Option<tokio_util::sync::CancellationToken>,
}

impl Emit {
    /// What `resources/subscribe` of the handshake era sends.
    pub fn handshake() -> Self {
        Emit {
            updated: true,
            list_changed: true,
            ..Default::default()
        }
    }

    fn params(&self, mut params: Value) -> Value {
        if let Some(id) = &self.subscription_id {
            params["_meta"] = json!({ super::META_SUBSCRIPTION_ID: id });
        }
        params
    }
}

/// `resources/subscribe`: topic resources (and the topics list) follow the
/// broker; the notifications go to `out` (the connection's, or a listen
/// stream's own).
pub async fn subscribe(
    app: &Arc<App>,
    uri: &str,
    out: Sink,
    interval: Duration,
    emit: Emit,
) -> Result<Watch, RpcError> {
    let u = Uri::parse(uri).ok_or_else(|| not_found(uri, "unknown resource"))?;
    let s = session_of(app, uri, &u).await?;
    let filter = match &u {
        Uri::Topic(_, t) => t.clone(),
        Uri::Topics(_) => "#".to_string(),
        Uri::Retained(_, f) => f.clone(),
        Uri::Info(_) => return Err(RpcError::new(code::INVALID_PARAMS, "Invalid params: session info has no live updates; subscribe to a topic or the topics list")),
    };
    let exclude = s
        .policy
        .check_subscribe(&filter)
        .map_err(|e| RpcError::new(code::INVALID_PARAMS, format!("Invalid params: {e}")))?;
    if s.link.dollar_refused() && topic::is_dollar_filter(&filter) {
        return Err(RpcError::new(
            code::INVALID_PARAMS,
            "Invalid params: this broker does not allow $ topics",
        ));
    }
    let mut sub = s
        .link
        .open_subscription(&[(filter, 0)], &exclude, 4096, Duration::from_secs(10))
        .await
        .map_err(|e| {
            RpcError::new(
                code::INTERNAL_ERROR,
                format!("cannot subscribe on the broker: {e}"),
            )
        })?;
    let uri = uri.to_string();
    let topics_uri = Uri::Topics(s.id.clone()).render();
    let is_topics = matches!(u, Uri::Topics(_));
    let conn = s.link.clone();
    drop(s);
    let task = tokio::spawn(async move {
        if let Some(start) = &emit.start {
            start.cancelled().await;
        }
        let mut last_sent: Option<tokio::time::Instant> = None;
        let mut pending = false;
        let mut known = conn.topic_count();
        loop {
            let wake = last_sent.map(|t| t + interval);
            tokio::select! {
                m = sub.route.rx.recv() => {
                    if m.is_none() { return; }
                    pending = true;
                }
                _ = async { match wake { Some(w) if pending => tokio::time::sleep_until(w).await, _ => std::future::pending().await } } => {}
            }
            let now = tokio::time::Instant::now();
            if pending && last_sent.is_none_or(|t| now >= t + interval) {
                pending = false;
                last_sent = Some(now);
                if emit.updated {
                    out.try_notify(Method::ResourceUpdated, emit.params(json!({ "uri": uri })));
                }
                if emit.list_changed && (is_topics || uri != topics_uri) {
                    // New topics change the list (for a topic resource: its
                    // topic appearing for the first time).
                    let n = conn.topic_count();
                    if n != known {
                        known = n;
                        out.try_notify(Method::ResourceListChanged, emit.params(json!({})));
                    }
                }
            }
        }
    });
    Ok(Watch { task })
}

/// `completion/complete` for prompt arguments and resource template variables.
pub async fn complete(app: &App, params: Option<&Value>) -> Result<Value, RpcError> {
    if params.is_none() {
        return Err(RpcError::new(
            code::INVALID_PARAMS,
            "Invalid params: completion/complete needs ref and argument",
        ));
    }
    // Params that are not an object lack `argument.name`, like an empty one.
    let p: params::Complete = params::parse(params).unwrap_or_default();
    let argument = p.argument.into_valid().map(|a| a.0).unwrap_or_default();
    let reference = p.reference.into_valid().map(|r| r.0).unwrap_or_default();
    let arg_name = argument.name.valid().ok_or_else(|| {
        RpcError::new(
            code::INVALID_PARAMS,
            "Invalid params: argument.name is required",
        )
    })?;
    let value = argument.value.valid().map_or("", String::as_str);
    let known_prompt = |n: &String| super::prompts::NAMES.contains(&n.as_str());
    let kind = match reference.kind.valid().map(String::as_str) {
        Some("ref/prompt") if reference.name.valid().is_some_and(known_prompt) => arg_name.as_str(),
        Some("ref/prompt") => "",
        Some("ref/resource")
            if reference
                .uri
                .valid()
                .is_some_and(|u| u.starts_with("mqtt://")) =>
        {
            arg_name.as_str()
        }
        Some("ref/resource") => "",
        _ => {
            return Err(RpcError::new(
                code::INVALID_PARAMS,
                "Invalid params: ref.type must be ref/prompt or ref/resource",
            ))
        }
    };
    app.wait_default().await;
    let sessions = app.sessions.list();
    let mut candidates: Vec<String> = Vec::new();
    match kind {
        "session_id" | "session" => candidates.extend(sessions.iter().map(|s| s.id.clone())),
        "topic" | "filter" => {
            for s in &sessions {
                candidates.extend(s.link.topics_seen().into_iter().map(|(t, _, _)| t));
            }
        }
        "device_id" => {
            for s in &sessions {
                for (t, _, _) in s.link.topics_seen() {
                    candidates.extend(t.split('/').filter(|l| !l.is_empty()).map(str::to_string));
                }
            }
        }
        "profile" => candidates.extend(app.profiles.by_name.keys().cloned()),
        _ => {}
    }
    candidates.sort();
    candidates.dedup();
    let matching: Vec<String> = candidates
        .into_iter()
        .filter(|c| c.starts_with(value))
        .collect();
    let total = matching.len();
    let values: Vec<String> = matching.into_iter().take(100).collect();
    Ok(json!({ "completion": { "values": values, "total": total, "hasMore": total > 100 } }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip() {
        for u in [
            Uri::Info("default".into()),
            Uri::Topics("s_1".into()),
            Uri::Topic("default".into(), "home/living room/temp".into()),
            Uri::Retained("default".into(), "home/+/state/#".into()),
        ] {
            assert_eq!(Uri::parse(&u.render()), Some(u.clone()), "{}", u.render());
        }
        assert_eq!(
            Uri::parse("mqtt://default/retained/a/%23").unwrap(),
            Uri::Retained("default".into(), "a/#".into())
        );
        assert_eq!(
            Uri::parse("mqtt://default/topic/a/#"),
            None,
            "wildcards are not topics"
        );
        assert_eq!(Uri::parse("http://x/info"), None);
        assert_eq!(Uri::parse("mqtt:///info"), None);
        assert_eq!(Uri::parse("mqtt://default/nope"), None);
    }
}
