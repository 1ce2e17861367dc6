//! `publish_message` and `request_response`.

use super::common::{self, ms};
use super::{params, results, Deadline, ToolContext, ToolError};
use crate::mqtt::client::{Protocol, PublishOutcome, UnknownReason, V5Props};
use crate::payload;
use bytes::Bytes;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

fn encode_payload(ctx: &ToolContext, v: Option<&Value>, what: &str) -> Result<Bytes, ToolError> {
    let b = payload::encode(v)
        .map_err(|e| ToolError::InvalidArguments(vec![format!("/{what}: {e}")]))?;
    within_limit(ctx, b, what)
}

/// Refuses payloads over the server's publish limit.
fn within_limit(ctx: &ToolContext, b: Bytes, what: &str) -> Result<Bytes, ToolError> {
    let limit = ctx.app.config.max_publish_bytes;
    if b.len() > limit {
        return Err(ToolError::InvalidArguments(vec![format!(
            "/{what}: {}",
            payload::PayloadError::TooLarge {
                size: b.len(),
                limit
            }
        )]));
    }
    Ok(b)
}

/// A Sparkplug command (`{"sparkplug": {"metrics": [...]}}` on an NCMD or
/// DCMD topic), encoded against the birth this session saw; None for any
/// other payload.
fn sparkplug_command(
    s: &crate::session::Session,
    topic: &str,
    v: Option<&Value>,
) -> Option<Result<Bytes, ToolError>> {
    use crate::sparkplug::{command, names_for, Topic};
    let spec = match v {
        Some(Value::Object(m)) if m.len() == 1 => m.get("sparkplug")?,
        _ => return None,
    };
    let bad = |e: String| ToolError::InvalidArguments(vec![format!("/payload/sparkplug: {e}")]);
    let Some(t) = Topic::parse(topic) else {
        return Some(Err(bad(format!("{topic:?} is not a Sparkplug topic; commands go to spBv1.0/<group>/NCMD/<node> or spBv1.0/<group>/DCMD/<node>/<device>"))));
    };
    let last_birth = |b: &str| s.link.history(b, 1).pop().map(|m| m.payload.clone());
    let names = names_for(&t, &s.births, &last_birth);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Some(
        command::encode(&t, spec, names.as_deref(), now)
            .map(Bytes::from)
            .map_err(bad),
    )
}

fn user_props(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The status word of an outcome.
fn status(o: &PublishOutcome) -> &'static str {
    match o {
        PublishOutcome::Sent => "sent",
        PublishOutcome::Acknowledged { .. } => "acknowledged",
        PublishOutcome::Rejected { .. } => "rejected",
        PublishOutcome::Unknown { .. } => "unknown",
    }
}

/// Waits for what the protocol can tell about a publish, at most `wait`.
pub(super) async fn await_outcome(
    ctx: &ToolContext,
    topic: &str,
    rx: tokio::sync::oneshot::Receiver<PublishOutcome>,
    wait: Duration,
) -> Result<PublishOutcome, ToolError> {
    let unknown = |reason| PublishOutcome::Unknown { reason };
    tokio::select! {
        _ = ctx.cancel.cancelled() => Ok(unknown(UnknownReason::Cancelled)),
        r = tokio::time::timeout(wait, rx) => match r {
            Ok(Ok(PublishOutcome::Rejected { reason_code })) => Err(ToolError::Failed(format!(
                "the broker rejected the publish to {topic:?} with reason code 0x{reason_code:02X}{}",
                match reason_code { 0x87 => " (not authorized: the user may not publish there)", 0x90 => " (topic name invalid)", 0x97 => " (quota exceeded)", 0x99 => " (payload format invalid)", _ => "" }
            ))),
            Ok(Ok(o)) => Ok(o),
            // The connection task ended without resolving it.
            Ok(Err(_)) => Ok(unknown(UnknownReason::Closed)),
            Err(_) => Ok(unknown(UnknownReason::Timeout)),
        }
    }
}

/// Refuses what would crash the embedded broker's 3.1.1 listener.
fn embedded_guard(
    ctx: &ToolContext,
    s: &crate::session::Session,
    topic: &str,
) -> Result<(), ToolError> {
    if !s.link.is_embedded() {
        return Ok(());
    }
    match ctx.app.v5_properties_hazard(topic) {
        Some(v311) => Err(ToolError::Failed(format!(
            "the embedded broker (rumqttd) cannot deliver a message with MQTT 5 properties to MQTT 3.1.1 subscribers, and session {v311:?} (3.1.1) subscribes to {topic:?}; publish without the MQTT 5 fields, or close that session or its subscription first"
        ))),
        None => Ok(()),
    }
}

/// Checks the session's policy and rate limit for a publish (and audits a refusal).
pub(super) fn authorize_publish(
    ctx: &ToolContext,
    s: &crate::session::Session,
    topic: &str,
    size: usize,
) -> Result<(), ToolError> {
    s.policy
        .check_publish(topic, size)
        .map_err(|e| common::refused(ctx, s, topic, e))?;
    s.rate
        .take(&s.policy, std::time::Instant::now())
        .map_err(|e| common::refused(ctx, s, topic, e))
}

/// Writes the audit line of a publish.
pub(super) fn audit_publish(
    ctx: &ToolContext,
    s: &crate::session::Session,
    topic: &str,
    size: usize,
    outcome: &Result<PublishOutcome, ToolError>,
) {
    match outcome {
        Ok(PublishOutcome::Unknown { reason }) => {
            audit_word(ctx, s, topic, size, "unknown", Some(reason.explain()))
        }
        Ok(o) => audit_word(ctx, s, topic, size, status(o), None),
        Err(e) => audit_word(ctx, s, topic, size, "failed", Some(&e.to_string())),
    }
}

/// Writes one audit line.
pub(super) fn audit_word(
    ctx: &ToolContext,
    s: &crate::session::Session,
    topic: &str,
    size: usize,
    word: &str,
    detail: Option<&str>,
) {
    ctx.app.audit.record(crate::audit::Entry {
        session: &s.id,
        profile: s.profile.as_deref(),
        tool: ctx.tool,
        topic,
        size,
        outcome: word,
        detail,
    });
}

/// Publishes one message and reports what the broker confirmed.
pub async fn publish_message(
    ctx: &ToolContext,
    p: params::PublishMessage,
    deadline: Deadline,
) -> Result<results::PublishMessage, ToolError> {
    common::topic_name(&p.topic, "topic")?;
    let s = common::session(ctx, p.session_id.as_deref()).await?;
    let body = match sparkplug_command(&s, &p.topic, p.payload.as_ref()) {
        Some(command) => within_limit(ctx, command?, "payload")?,
        None => encode_payload(ctx, p.payload.as_ref(), "payload")?,
    };
    let conn = &s.link;
    let qos = common::qos(p.qos, 1);
    let retain = p.retain.unwrap_or(false);
    let v5_fields = p.content_type.is_some()
        || p.payload_format_indicator.is_some()
        || p.message_expiry_interval.is_some()
        || p.response_topic.is_some()
        || p.correlation_data.is_some()
        || p.user_properties.is_some();
    let props = if v5_fields {
        if conn.protocol() != Protocol::V5 {
            return Err(ToolError::InvalidArguments(vec![
                "content_type, payload_format_indicator, message_expiry_interval, response_topic, correlation_data and user_properties need MQTT 5; this session speaks 3.1.1 (leave them out, or open an MQTT 5 session)".into(),
            ]));
        }
        if let Some(rt) = &p.response_topic {
            common::topic_name(rt, "response_topic")?;
        }
        Some(V5Props {
            content_type: p.content_type.clone(),
            payload_format_indicator: p.payload_format_indicator.map(|v| v as u8),
            message_expiry_interval: p
                .message_expiry_interval
                .map(|v| v.min(u32::MAX as u64) as u32),
            response_topic: p.response_topic.clone(),
            correlation_data: match &p.correlation_data {
                Some(v) => Some(encode_payload(ctx, Some(v), "correlation_data")?),
                None => None,
            },
            user_properties: user_props(p.user_properties.as_ref()),
        })
    } else {
        None
    };
    let size = body.len();
    authorize_publish(ctx, &s, &p.topic, size)?;
    if props.is_some() {
        embedded_guard(ctx, &s, &p.topic)?;
    }
    let start = Instant::now();
    let rx = conn
        .publish(&p.topic, body, qos, retain, props)
        .map_err(common::request_error)?;
    let outcome = await_outcome(ctx, &p.topic, rx, deadline.remaining()).await;
    audit_publish(ctx, &s, &p.topic, size, &outcome);
    let outcome = outcome?;
    let reason_code = match &outcome {
        PublishOutcome::Acknowledged { reason_code } if conn.protocol() == Protocol::V5 => {
            Some(*reason_code as u64)
        }
        _ => None,
    };
    Ok(results::PublishMessage {
        status: status(&outcome).into(),
        unknown_reason: match &outcome {
            PublishOutcome::Unknown { reason } => Some(reason.explain().into()),
            _ => None,
        },
        topic: p.topic,
        qos: qos as u64,
        retain,
        payload_bytes: size as u64,
        reason_code,
        protocol_version: conn.protocol().as_str().into(),
        session_id: s.id.clone(),
        elapsed_ms: ms(start.elapsed()),
    })
}

/// Publishes a request and waits for the matching reply.
pub async fn request_response(
    ctx: &ToolContext,
    p: params::RequestResponse,
    deadline: Deadline,
) -> Result<results::RequestResponse, ToolError> {
    common::topic_name(&p.topic, "topic")?;
    let body = encode_payload(ctx, p.payload.as_ref(), "payload")?;
    let s = common::session(ctx, p.session_id.as_deref()).await?;
    let conn = &s.link;
    let v5 = conn.protocol() == Protocol::V5;
    let response_topic = match (&p.response_topic, v5) {
        (Some(t), _) => {
            common::topic_name(t, "response_topic")?;
            t.clone()
        }
        (None, true) => format!(
            "mqtt-mcp/reply/{}",
            crate::secret::random_hex(8).map_err(ToolError::internal)?
        ),
        (None, false) => {
            return Err(ToolError::InvalidArguments(vec![
                "/response_topic: required on MQTT 3.1.1 sessions (where should the reply arrive?)"
                    .into(),
            ]))
        }
    };
    if !v5
        && (p.correlation_data.is_some() || p.content_type.is_some() || p.user_properties.is_some())
    {
        return Err(ToolError::InvalidArguments(vec!["correlation_data, content_type and user_properties need MQTT 5; this session speaks 3.1.1".into()]));
    }
    let correlation = if v5 {
        Some(match &p.correlation_data {
            Some(v) => encode_payload(ctx, Some(v), "correlation_data")?,
            None => Bytes::from(
                crate::secret::random_hex(8)
                    .map_err(ToolError::internal)?
                    .into_bytes(),
            ),
        })
    } else {
        None
    };
    authorize_publish(ctx, &s, &p.topic, body.len())?;
    if v5 {
        embedded_guard(ctx, &s, &p.topic)?;
    }
    let size = body.len();
    let start = Instant::now();
    let mut sub = common::open(
        ctx,
        &s,
        std::slice::from_ref(&response_topic),
        1,
        256,
        deadline.remaining(),
    )
    .await?;
    let props = if v5 {
        Some(V5Props {
            content_type: p.content_type.clone(),
            response_topic: Some(response_topic.clone()),
            correlation_data: correlation.clone(),
            user_properties: user_props(p.user_properties.as_ref()),
            ..Default::default()
        })
    } else {
        None
    };
    let qos = common::qos(p.qos, 1);
    let rx = conn
        .publish(&p.topic, body, qos, false, props)
        .map_err(common::request_error)?;
    let preview = p.preview_bytes.unwrap_or(8192) as usize;
    let mut reply = None;
    let stop = common::drain(ctx, &mut sub, deadline.remaining(), None, |m| {
        let matches = match (&correlation, &m.props) {
            (Some(c), Some(props)) => props.correlation_data.as_ref() == Some(c),
            (Some(_), None) => false,
            (None, _) => !m.retain,
        };
        if matches {
            reply = Some(m);
            false
        } else {
            true
        }
    })
    .await;
    // Within the grace the deadline leaves for the answer: how the request
    // publish fared, if its ack is about to arrive.
    let publish_status = match tokio::time::timeout(Duration::from_millis(200), rx).await {
        Ok(Ok(o)) => status(&o),
        _ => "unknown",
    };
    audit_word(ctx, &s, &p.topic, size, publish_status, None);
    let Some(reply) = reply else {
        if stop == common::Stop::Cancelled {
            return Err(ToolError::Failed("cancelled".into()));
        }
        return Err(ToolError::Failed(format!(
            "no reply on {response_topic:?} within {} ms (request publish: {publish_status}). Is a responder listening on {:?}{}? Raise timeout_ms if it is slow.",
            deadline.budget().as_millis(),
            p.topic,
            if v5 { " that copies correlation data into its reply" } else { "" }
        )));
    };
    Ok(results::RequestResponse {
        response: common::message_json(&reply, preview, common::Seen::of(&s)),
        response_topic,
        correlation_data_hex: correlation.as_ref().map(hex::encode),
        matched_by: if v5 {
            "correlation_data"
        } else {
            "response_topic"
        }
        .into(),
        elapsed_ms: ms(start.elapsed()),
        publish_status: publish_status.into(),
    })
}
