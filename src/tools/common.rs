//! Helpers shared by the tool handlers: session lookup, argument checks,
//! the JSON shape of a message, and the collection loop.

use super::{ToolContext, ToolError};
use crate::mqtt::client::{
    Connection, Message, RequestError, SubscribeError, Subscription, V5Props,
};
use crate::mqtt::topic;
use crate::payload;
use crate::session::{rfc3339, Session};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The session a call names (or the default one).
pub async fn session(ctx: &ToolContext, id: Option<&str>) -> Result<Arc<Session>, ToolError> {
    Ok(ctx.app.session(id).await?)
}

/// `filter` / `filters` arguments, validated.
pub fn filters(
    filter: Option<String>,
    filters: Option<Vec<String>>,
) -> Result<Vec<String>, ToolError> {
    let mut all: Vec<String> = filters.unwrap_or_default();
    if let Some(f) = filter {
        all.insert(0, f);
    }
    if all.is_empty() {
        return Err(ToolError::InvalidArguments(vec![
            "give filter (e.g. \"home/#\") or filters".into(),
        ]));
    }
    all.dedup();
    let errs: Vec<String> = all
        .iter()
        .filter_map(|f| {
            topic::validate_filter(f)
                .err()
                .map(|e| format!("filter {f:?} {e}"))
        })
        .collect();
    if errs.is_empty() {
        Ok(all)
    } else {
        Err(ToolError::InvalidArguments(errs))
    }
}

/// A concrete topic name, validated.
pub fn topic_name(t: &str, what: &str) -> Result<(), ToolError> {
    topic::validate_topic(t)
        .map_err(|e| ToolError::InvalidArguments(vec![format!("/{what}: the topic {e}")]))
}

/// QoS argument with a default.
pub fn qos(q: Option<u64>, default: u8) -> u8 {
    q.map(|q| q.min(2) as u8).unwrap_or(default)
}

/// Milliseconds as a float with microsecond resolution.
pub fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// Hex without separators.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// MQTT 5 properties as JSON (only those set).
pub fn props_json(p: &V5Props) -> Value {
    let mut m = Map::new();
    if let Some(v) = &p.content_type {
        m.insert("content_type".into(), json!(v));
    }
    if let Some(v) = p.payload_format_indicator {
        m.insert("payload_format_indicator".into(), json!(v));
    }
    if let Some(v) = p.message_expiry_interval {
        m.insert("message_expiry_interval".into(), json!(v));
    }
    if let Some(v) = &p.response_topic {
        m.insert("response_topic".into(), json!(v));
    }
    if let Some(v) = &p.correlation_data {
        m.insert("correlation_data_hex".into(), json!(hex(v)));
    }
    if !p.user_properties.is_empty() {
        m.insert(
            "user_properties".into(),
            json!(p
                .user_properties
                .iter()
                .map(|(k, v)| [k, v])
                .collect::<Vec<_>>()),
        );
    }
    Value::Object(m)
}

/// A message as in `$defs/message`.
pub fn message_json(m: &Message, preview: usize) -> Value {
    let mut v = json!({
        "topic": m.topic,
        "payload": payload::decode(&m.payload, preview),
        "qos": m.qos,
        "retain": m.retain,
        "received_at": rfc3339(m.received_at),
    });
    if let Some(p) = &m.props {
        v["properties"] = props_json(p);
    }
    v
}

/// Turns subscription failures into messages for the model.
pub fn subscribe_error(e: SubscribeError) -> ToolError {
    ToolError::Failed(e.to_string())
}

/// Turns request failures into messages for the model.
pub fn request_error(e: RequestError) -> ToolError {
    ToolError::Failed(e.to_string())
}

/// Refuses `$` filters on connections known not to allow them, before the
/// broker gets a chance to drop the connection.
pub fn guard_dollar(conn: &Connection, filters: &[String]) -> Result<(), ToolError> {
    if conn.dollar_refused() {
        if let Some(f) = filters.iter().find(|f| topic::is_dollar_filter(f)) {
            return Err(ToolError::Failed(format!(
                "this broker does not allow subscriptions to $ topics such as {f:?} (the embedded broker and some others drop the client); use ordinary topic filters"
            )));
        }
    }
    Ok(())
}

/// Audits a refusal and turns it into the model-facing error.
pub fn refused(
    ctx: &ToolContext,
    s: &Session,
    topic: &str,
    e: crate::policy::PolicyError,
) -> ToolError {
    let msg = e.to_string();
    ctx.app.audit.record(crate::audit::Entry {
        session: &s.id,
        profile: s.profile.as_deref(),
        tool: ctx.tool,
        topic,
        size: 0,
        outcome: "refused",
        detail: Some(&msg),
    });
    ToolError::Failed(msg)
}

/// Opens a subscription for a call on a session, after its policy allowed
/// every filter; topics a deny list covers are filtered out on delivery.
pub async fn open(
    ctx: &ToolContext,
    s: &Session,
    filters: &[String],
    qos: u8,
    depth: usize,
    timeout: Duration,
) -> Result<Subscription, ToolError> {
    let mut exclude = Vec::new();
    for f in filters {
        match s.policy.check_subscribe(f) {
            Ok(ex) => exclude.extend(ex),
            Err(e) => return Err(refused(ctx, s, f, e)),
        }
    }
    open_unchecked(&s.link, filters, &exclude, qos, depth, timeout).await
}

/// Opens a subscription without policy checks: only for the server's own
/// private topics (connection tests).
pub async fn open_unchecked(
    conn: &Connection,
    filters: &[String],
    exclude: &[String],
    qos: u8,
    depth: usize,
    timeout: Duration,
) -> Result<Subscription, ToolError> {
    guard_dollar(conn, filters)?;
    let fs: Vec<(String, u8)> = filters.iter().map(|f| (f.clone(), qos)).collect();
    conn.open_subscription(&fs, exclude, depth, timeout)
        .await
        .map_err(subscribe_error)
}

/// Why a collection loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The window ended.
    Duration,
    /// Enough messages.
    Enough,
    /// The call was cancelled.
    Cancelled,
    /// The connection closed.
    Closed,
    /// No message for the settle period (retained replay done).
    Quiet,
}

/// Receives from `sub` until `until`, calling `on` for each message; `on`
/// returns false to stop. With `quiet`, stops after that long without a message.
/// Sends progress notifications about once a second.
pub async fn drain(
    ctx: &ToolContext,
    sub: &mut Subscription,
    window: Duration,
    quiet: Option<Duration>,
    mut on: impl FnMut(Arc<Message>) -> bool,
) -> Stop {
    let start = Instant::now();
    let until = start + window;
    let mut next_report = start + Duration::from_secs(1);
    let mut last_message = start;
    loop {
        let now = Instant::now();
        if now >= until {
            return Stop::Duration;
        }
        let quiet_at = quiet.map(|q| last_message + q);
        if quiet_at.is_some_and(|q| now >= q) {
            return Stop::Quiet;
        }
        let mut wake = until.min(next_report);
        if let Some(q) = quiet_at {
            wake = wake.min(q);
        }
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return Stop::Cancelled,
            m = sub.route.rx.recv() => match m {
                Some(m) => {
                    last_message = Instant::now();
                    if !on(m) {
                        return Stop::Enough;
                    }
                }
                None => return Stop::Closed,
            },
            _ = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if now >= next_report {
                    next_report = now + Duration::from_secs(1);
                    ctx.report(ms(now - start), Some(ms(window)), "listening");
                }
            }
        }
    }
}
