//! Helpers shared by the tool handlers: session lookup, argument checks,
//! messages in their result shape (the types of `schema/defs/message.json`),
//! and the collection loop.

use super::{defs, ToolContext, ToolError};
use crate::mqtt::client::{
    Connection, Message, RequestError, SubscribeError, Subscription, V5Props,
};
use crate::mqtt::topic;
use crate::payload::{self, Format};
use crate::session::{rfc3339, Session};
use base64::Engine as _;
use serde_json::Value;
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

/// What showing a message may draw on besides its bytes: the Sparkplug
/// births the session learned, and its connection's history (where a birth
/// the session has not shown yet may be).
#[derive(Clone, Copy)]
pub struct Seen<'a> {
    /// The session's births; None decodes with what the message itself says.
    births: Option<&'a crate::sparkplug::births::Births>,
    /// The connection whose history holds earlier births.
    link: Option<&'a Connection>,
    /// The codecs configured for the session's topics.
    decoders: Option<&'a crate::decoders::Decoders>,
}

impl<'a> Seen<'a> {
    /// What a session has seen.
    pub fn of(s: &'a Session) -> Self {
        Seen {
            births: Some(&s.births),
            link: Some(&s.link),
            decoders: Some(&s.decoders),
        }
    }

    /// Nothing: Sparkplug aliases stay unnamed.
    pub fn nothing() -> Self {
        Seen {
            births: None,
            link: None,
            decoders: None,
        }
    }
}

/// A payload as results show it (`$defs/payload`): by the codec the
/// configuration maps its topic to; else Sparkplug B on `spBv1.0/` topics;
/// else the parsed JSON if it is UTF-8 JSON, the text if other UTF-8,
/// base64 otherwise, cut to `limit` bytes, which `truncated` states. JSON
/// longer than `limit` is shown as truncated text, since a cut JSON document
/// no longer parses. A payload that does not decode as its codec (or as
/// Sparkplug) is shown the plain way with `decode_error`.
pub fn decoded_payload(topic: &str, bytes: &[u8], limit: usize, seen: Seen<'_>) -> defs::Payload {
    if let Some((codec, decoded)) = seen.decoders.and_then(|d| d.decode(topic, bytes)) {
        return configured_payload(codec, decoded, bytes, limit);
    }
    let Some(sp) = crate::sparkplug::Topic::parse(topic) else {
        return plain_payload(bytes, limit);
    };
    let scratch;
    let births = match seen.births {
        Some(b) => b,
        None => {
            scratch = crate::sparkplug::births::Births::default();
            &scratch
        }
    };
    let last_birth = |t: &str| {
        seen.link
            .and_then(|l| l.history(t, 1).pop())
            .map(|m| m.payload.clone())
    };
    match crate::sparkplug::show(&sp, bytes, limit, births, &last_birth) {
        Ok(shown) => defs::Payload {
            format: "sparkplug".to_string(),
            size: bytes.len() as u64,
            json: None,
            text: None,
            base64: None,
            sparkplug: Some(shown.sparkplug),
            decode_error: None,
            truncated: shown.truncated,
        },
        Err(e) => defs::Payload {
            decode_error: Some(e.to_string()),
            ..plain_payload(bytes, limit)
        },
    }
}

/// A payload as its configured codec decoded it.
fn configured_payload(
    codec: crate::decoders::Codec,
    decoded: Result<crate::decoders::Decoded, String>,
    bytes: &[u8],
    limit: usize,
) -> defs::Payload {
    use crate::decoders::Decoded;
    let plain = plain_payload(bytes, limit);
    match decoded {
        Err(e) => defs::Payload {
            decode_error: Some(e),
            ..plain
        },
        Ok(Decoded::Raw) => defs::Payload {
            format: Format::Binary.as_str().to_string(),
            json: None,
            text: None,
            base64: Some(
                base64::engine::general_purpose::STANDARD.encode(&bytes[..bytes.len().min(limit)]),
            ),
            ..plain
        },
        Ok(Decoded::Text(_)) => defs::Payload {
            format: Format::Text.as_str().to_string(),
            json: None,
            text: Some(
                payload::truncate_str(std::str::from_utf8(bytes).unwrap_or_default(), limit)
                    .to_string(),
            ),
            ..plain
        },
        Ok(Decoded::Value(v)) => {
            // Shown whole when its JSON fits the limit, else as cut JSON text.
            let text = v.to_string();
            let fits = text.len() <= limit;
            defs::Payload {
                format: codec.as_str().to_string(),
                json: fits.then_some(v),
                text: (!fits).then(|| payload::truncate_str(&text, limit).to_string()),
                base64: None,
                truncated: !fits,
                ..plain
            }
        }
    }
}

/// A payload decoded without regard to its topic (JSON, text or base64).
fn plain_payload(bytes: &[u8], limit: usize) -> defs::Payload {
    let size = bytes.len();
    let format = payload::format_of(bytes);
    let truncated = size > limit;
    let mut shown = defs::Payload {
        format: format.as_str().to_string(),
        size: size as u64,
        json: None,
        text: None,
        base64: None,
        sparkplug: None,
        decode_error: None,
        truncated,
    };
    match format {
        Format::Empty => shown.text = Some(String::new()),
        Format::Json if !truncated => {
            shown.json = Some(serde_json::from_slice(bytes).unwrap_or(Value::Null));
        }
        Format::Json | Format::Text => {
            let s = std::str::from_utf8(bytes).unwrap_or_default();
            shown.text = Some(payload::truncate_str(s, limit).to_string());
        }
        Format::Binary => {
            let cut = &bytes[..size.min(limit)];
            shown.base64 = Some(base64::engine::general_purpose::STANDARD.encode(cut));
        }
    }
    shown
}

/// MQTT 5 properties as results show them (`$defs/properties`): only those set.
pub fn message_properties(p: &V5Props) -> defs::Properties {
    defs::Properties {
        content_type: p.content_type.clone(),
        payload_format_indicator: p.payload_format_indicator.map(i64::from),
        message_expiry_interval: p.message_expiry_interval.map(i64::from),
        response_topic: p.response_topic.clone(),
        correlation_data_hex: p.correlation_data.as_deref().map(hex::encode),
        user_properties: (!p.user_properties.is_empty()).then(|| {
            p.user_properties
                .iter()
                .map(|(k, v)| vec![k.clone(), v.clone()])
                .collect()
        }),
    }
}

/// A message as results show it (`$defs/message`), its payload cut to
/// `preview` bytes; `seq` is left for `read_messages` to fill in.
pub fn message_json(m: &Message, preview: usize, seen: Seen<'_>) -> defs::Message {
    defs::Message {
        topic: m.topic.clone(),
        payload: decoded_payload(&m.topic, &m.payload, preview, seen),
        qos: u64::from(m.qos),
        retain: m.retain,
        received_at: rfc3339(m.received_at),
        properties: m.props.as_deref().map(message_properties),
        seq: None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shown(bytes: &[u8], limit: usize) -> Value {
        serde_json::to_value(decoded_payload("a/b", bytes, limit, Seen::nothing())).unwrap()
    }

    #[test]
    fn decodes_payloads_safely() {
        assert_eq!(
            shown(b"", 10),
            json!({"format": "empty", "size": 0, "text": "", "truncated": false})
        );
        assert_eq!(
            shown(br#"{"t":21.5}"#, 100),
            json!({"format": "json", "size": 10, "json": {"t": 21.5}, "truncated": false})
        );
        assert_eq!(
            shown(b"null", 100),
            json!({"format": "json", "size": 4, "json": null, "truncated": false})
        );
        assert_eq!(shown(b"on", 100)["format"], json!("text"));
        assert_eq!(
            shown(&[0xff, 0xfe, 0], 100),
            json!({"format": "binary", "size": 3, "base64": "//4A", "truncated": false})
        );
        let big = vec![0xffu8; 10 * 1024 * 1024];
        let d = shown(&big, 64);
        assert_eq!(
            (d["size"].as_u64(), d["truncated"].as_bool()),
            (Some(10 * 1024 * 1024), Some(true))
        );
        assert!(d["base64"].as_str().unwrap().len() < 100);
        assert_eq!(shown("ééé".as_bytes(), 3)["text"], json!("é"));
    }

    #[test]
    fn messages_keep_the_result_shape() {
        let mut m = Message {
            topic: "a/b".into(),
            payload: bytes::Bytes::from_static(b"21.5"),
            qos: 1,
            retain: true,
            received_at: std::time::SystemTime::UNIX_EPOCH,
            props: None,
        };
        assert_eq!(
            serde_json::to_string(&message_json(&m, 100, Seen::nothing())).unwrap(),
            r#"{"topic":"a/b","payload":{"format":"json","size":4,"json":21.5,"truncated":false},"qos":1,"retain":true,"received_at":"1970-01-01T00:00:00.000Z"}"#
        );
        m.props = Some(Box::new(V5Props {
            content_type: Some("text/plain".into()),
            correlation_data: Some(bytes::Bytes::from_static(&[0, 255])),
            user_properties: vec![("k".into(), "v".into())],
            ..V5Props::default()
        }));
        assert_eq!(
            serde_json::to_value(message_json(&m, 100, Seen::nothing())).unwrap()["properties"],
            json!({"content_type": "text/plain", "correlation_data_hex": "00ff", "user_properties": [["k", "v"]]})
        );
    }

    /// The generated types and the served schema are one contract: what the
    /// types serialize to is what `$defs/message` (as `tools/list` serves it,
    /// bundled) accepts.
    #[test]
    fn typed_messages_satisfy_the_served_schema() {
        let tool = super::super::find("read_messages").unwrap();
        let defs = tool.definition()["outputSchema"]["$defs"].clone();
        let schema = json!({"$defs": defs, "$ref": "#/$defs/message"});
        let validator = jsonschema::draft202012::new(&schema).unwrap();
        let props = V5Props {
            content_type: Some("application/json".into()),
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            response_topic: Some("r/1".into()),
            correlation_data: Some(bytes::Bytes::from_static(b"id")),
            user_properties: vec![("a".into(), "b".into())],
        };
        for (payload, props) in [
            (&b""[..], None),
            (&br#"{"t":1}"#[..], Some(Box::new(props))),
            (&b"plain"[..], None),
            (&[0xffu8, 0][..], None),
        ] {
            let m = Message {
                topic: "x".into(),
                payload: bytes::Bytes::copy_from_slice(payload),
                qos: 2,
                retain: false,
                received_at: std::time::SystemTime::UNIX_EPOCH,
                props,
            };
            let mut shown = message_json(&m, 3, Seen::nothing());
            shown.seq = Some(7);
            let v = serde_json::to_value(&shown).unwrap();
            let errs: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
            assert!(errs.is_empty(), "{v}: {errs:?}");
        }
        // Sparkplug: decoded, cut by the preview limit, and undecodable.
        use prost::Message as _;
        let metric = crate::sparkplug::proto::Metric {
            name: Some("t".into()),
            datatype: Some(13),
            value: Some(crate::sparkplug::proto::MetricValue::Long(1)),
            ..Default::default()
        }
        .encode_to_vec();
        let mut sparkplug = vec![0x18, 5, 0x12, metric.len() as u8];
        sparkplug.extend(&metric);
        for (payload, preview, format) in [
            (&sparkplug[..], 4096, "sparkplug"),
            (&sparkplug[..], 3, "sparkplug"),
            (&[0xffu8, 0][..], 4096, "binary"),
        ] {
            let m = Message {
                topic: "spBv1.0/g/DDATA/n/d".into(),
                payload: bytes::Bytes::copy_from_slice(payload),
                qos: 0,
                retain: false,
                received_at: std::time::SystemTime::UNIX_EPOCH,
                props: None,
            };
            let v = serde_json::to_value(message_json(&m, preview, Seen::nothing())).unwrap();
            assert_eq!(v["payload"]["format"], format, "{v}");
            let errs: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
            assert!(errs.is_empty(), "{v}: {errs:?}");
        }
    }
}
