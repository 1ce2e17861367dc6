//! `test_connection`, `topic_history`, `debug_device`.

use super::common::{self, ms};
use super::discovery::observe;
use super::{params, results, Deadline, ToolContext, ToolError};
use crate::mqtt::client::{LinkState, PublishOutcome};
use crate::payload;
use crate::session::rfc3339;
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// Sends one QoS 1 message to a private topic and times PUBACK and echo.
async fn round_trip(
    ctx: &ToolContext,
    conn: &crate::mqtt::client::Connection,
    topic: &str,
    nonce: &str,
    timeout: Duration,
) -> Result<(Option<f64>, Option<f64>), ToolError> {
    let mut sub = common::open_unchecked(conn, &[topic.to_string()], &[], 1, 16, timeout).await?;
    let start = Instant::now();
    let rx = conn
        .publish(
            topic,
            Bytes::from(nonce.as_bytes().to_vec()),
            1,
            false,
            None,
        )
        .map_err(common::request_error)?;
    let mut echo = None;
    let mut puback: Option<Option<f64>> = None;
    let mut rx = Box::pin(rx);
    let deadline = start + timeout;
    while echo.is_none() || puback.is_none() {
        tokio::select! {
            _ = ctx.cancel.cancelled() => return Err(ToolError::Failed("cancelled".into())),
            _ = tokio::time::sleep_until(deadline) => break,
            r = &mut rx, if puback.is_none() => {
                puback = Some(match r { Ok(PublishOutcome::Acknowledged { .. }) => Some(ms(start.elapsed())), _ => None });
            }
            m = sub.route.rx.recv(), if echo.is_none() => match m {
                Some(m) if m.payload.as_ref() == nonce.as_bytes() => echo = Some(ms(start.elapsed())),
                Some(_) => {}
                None => break,
            },
        }
    }
    Ok((echo, puback.flatten()))
}

/// Round trip through the broker, and its `$SYS` figures where offered.
pub async fn test_connection(
    ctx: &ToolContext,
    p: params::TestConnection,
    deadline: Deadline,
) -> Result<results::TestConnection, ToolError> {
    let s = common::session(ctx, p.session_id.as_deref()).await?;
    let conn = &s.link;
    let include_sys = p.include_sys.unwrap_or(true);
    let sys_wait = Duration::from_millis(p.sys_wait_ms.unwrap_or(1000));
    // The round trip leaves the $SYS gathering its time within the budget.
    let timeout = deadline.reserving(if include_sys {
        sys_wait
    } else {
        Duration::ZERO
    });
    let (state, reconnects, last_error) = conn.status();
    if state != LinkState::Connected {
        return Err(ToolError::Failed(format!(
            "the session is {} (last error: {}); the broker is not reachable right now",
            state.as_str(),
            last_error.unwrap_or_else(|| "none".into())
        )));
    }
    let nonce = crate::secret::random_hex(8).map_err(ToolError::internal)?;
    let test_topic = format!(
        "mqtt-mcp/test/{}/{nonce}",
        s.client_id.replace(['+', '#', '/', '\0'], "_")
    );
    let mut notes: Vec<String> = Vec::new();
    let (round_trip_ms, puback_ms) = match s.policy.check_publish(&test_topic, nonce.len()) {
        Ok(()) => round_trip(ctx, conn, &test_topic, &nonce, timeout).await?,
        Err(e) => {
            notes.push(format!("round trip skipped: {e}"));
            (None, None)
        }
    };
    if round_trip_ms.is_none() && notes.is_empty() {
        notes.push(format!("no echo of the test message within {} ms: the broker may not let this client subscribe or publish to {test_topic}", timeout.as_millis()));
    }
    let mut sys = None;
    if include_sys {
        let filter = "$SYS/#".to_string();
        if conn.dollar_refused() {
            notes.push("$SYS skipped: this broker does not allow $ subscriptions (the embedded broker has no $SYS topics)".into());
        } else if let Err(e) = s.policy.check_subscribe(&filter) {
            notes.push(format!("$SYS skipped: {e}"));
        } else {
            let wait = deadline.cut(sys_wait);
            match common::open(
                ctx,
                &s,
                std::slice::from_ref(&filter),
                0,
                4096,
                deadline.remaining(),
            )
            .await
            {
                Ok(mut sub) => {
                    let mut figures: BTreeMap<String, String> = BTreeMap::new();
                    common::drain(ctx, &mut sub, wait, None, |m| {
                        if figures.len() < 300 {
                            figures.insert(m.topic.clone(), payload::preview(&m.payload, 200));
                        }
                        true
                    })
                    .await;
                    if figures.is_empty() {
                        notes.push(format!("no $SYS messages within {} ms; the broker may not publish them or may not allow this user to read them", wait.as_millis()));
                    } else {
                        sys = Some(figures);
                    }
                }
                Err(e) => notes.push(format!("$SYS unavailable: {e}")),
            }
        }
    }
    Ok(results::TestConnection {
        reachable: round_trip_ms.is_some() || puback_ms.is_some() || sys.is_some(),
        state: state.as_str().into(),
        broker_url: s.broker_url.clone(),
        protocol_version: conn.protocol().as_str().into(),
        round_trip_ms,
        puback_ms,
        test_topic,
        sys,
        sys_note: (!notes.is_empty()).then(|| notes.join("; ")),
        reconnects,
    })
}

/// Flattens JSON into leaf paths.
fn leaves(v: &Value, path: String, out: &mut BTreeMap<String, Value>, depth: usize) {
    match v {
        Value::Object(m) if depth < 16 && !m.is_empty() => {
            for (k, c) in m {
                leaves(c, format!("{path}.{k}"), out, depth + 1);
            }
        }
        Value::Array(a) if depth < 16 && !a.is_empty() => {
            for (i, c) in a.iter().enumerate().take(100) {
                leaves(c, format!("{path}[{i}]"), out, depth + 1);
            }
        }
        _ => {
            out.insert(path, v.clone());
        }
    }
}

/// Field-level differences between two payloads.
pub fn diff(index: u64, before: &[u8], after: &[u8]) -> Vec<results::TopicHistoryChangesItem> {
    let mut out = Vec::new();
    match (payload::as_json(before), payload::as_json(after)) {
        (Some(a), Some(b)) => {
            let (mut la, mut lb) = (BTreeMap::new(), BTreeMap::new());
            leaves(&a, "$".into(), &mut la, 0);
            leaves(&b, "$".into(), &mut lb, 0);
            for (k, va) in &la {
                match lb.get(k) {
                    Some(vb) if vb != va => out.push(results::TopicHistoryChangesItem {
                        index,
                        path: k.clone(),
                        change: "changed".into(),
                        from: Some(va.clone()),
                        to: Some(vb.clone()),
                    }),
                    None => out.push(results::TopicHistoryChangesItem {
                        index,
                        path: k.clone(),
                        change: "removed".into(),
                        from: Some(va.clone()),
                        to: None,
                    }),
                    _ => {}
                }
            }
            for (k, vb) in &lb {
                if !la.contains_key(k) {
                    out.push(results::TopicHistoryChangesItem {
                        index,
                        path: k.clone(),
                        change: "added".into(),
                        from: None,
                        to: Some(vb.clone()),
                    });
                }
            }
        }
        _ if before != after => out.push(results::TopicHistoryChangesItem {
            index,
            path: "$".into(),
            change: "payload".into(),
            from: Some(json!(payload::preview(before, 80))),
            to: Some(json!(payload::preview(after, 80))),
        }),
        _ => {}
    }
    out
}

/// The last messages seen on a topic in this session, with diffs.
pub async fn topic_history(
    ctx: &ToolContext,
    p: params::TopicHistory,
    _deadline: Deadline,
) -> Result<results::TopicHistory, ToolError> {
    common::topic_name(&p.topic, "topic")?;
    let s = common::session(ctx, p.session_id.as_deref()).await?;
    let limit = p.limit.unwrap_or(10) as usize;
    let preview = p.preview_bytes.unwrap_or(2048) as usize;
    s.policy
        .check_subscribe(&p.topic)
        .map_err(|e| common::refused(ctx, &s, &p.topic, e))?;
    let msgs = s.link.history(&p.topic, limit);
    let mut changes = Vec::new();
    for (i, w) in msgs.windows(2).enumerate() {
        if changes.len() >= 500 {
            break;
        }
        changes.extend(diff(i as u64 + 1, &w[0].payload, &w[1].payload));
    }
    let note = msgs.is_empty().then(|| format!("nothing seen on {:?} in this session yet; subscribe (subscribe, subscribe_and_collect or list_topics) to a filter that covers it first", p.topic));
    Ok(results::TopicHistory {
        topic: p.topic,
        messages: msgs
            .iter()
            .map(|m| common::message_json(m, preview, common::Seen::of(&s)))
            .collect(),
        changes,
        note,
    })
}

/// Finds and watches the topics of one device.
pub async fn debug_device(
    ctx: &ToolContext,
    p: params::DebugDevice,
    deadline: Deadline,
) -> Result<results::DebugDevice, ToolError> {
    let id = p.device_id.clone();
    if id.contains(['/', '+', '#', '\0']) {
        return Err(ToolError::InvalidArguments(vec!["/device_id: must be one topic level (no '/', '+', '#' or NUL); for a path, use list_topics with a prefix".into()]));
    }
    let depth = p.max_depth.unwrap_or(4) as usize;
    let filters: Vec<String> = (0..depth)
        .map(|d| format!("{}{id}/#", "+/".repeat(d)))
        .collect();
    let s = common::session(ctx, p.session_id.as_deref()).await?;
    let window = deadline.window();
    let preview = p.preview_bytes.unwrap_or(1024) as usize;
    let (topics, _dropped, elapsed) = observe(ctx, &s, &filters, deadline).await?;
    let secs = elapsed.as_secs_f64().max(0.001);
    let mut list: Vec<_> = topics.iter().collect();
    list.sort_by(|a, b| a.0.cmp(b.0));
    let items: Vec<results::DebugDeviceTopicsItem> = list
        .iter()
        .map(|(t, st)| results::DebugDeviceTopicsItem {
            topic: (*t).clone(),
            messages: st.messages,
            live_messages: st.live,
            rate_per_s: ((st.live as f64 / secs) * 100.0).round() / 100.0,
            retained: st.retained,
            silent: st.live == 0,
            last_seen: rfc3339(st.last_seen),
            last_value: common::decoded_payload(t, &st.last.payload, preview, common::Seen::of(&s)),
        })
        .collect();
    let live = items.iter().filter(|t| !t.silent).count() as u64;
    let note = if items.is_empty() {
        Some(format!("no topic has {id:?} as one of its first {depth} levels (retained or live within {} ms); check the id with list_topics, or raise window_ms / max_depth", window.as_millis()))
    } else if live == 0 {
        Some("only retained state was found: the device sent nothing live during the window (it may be offline or report rarely)".into())
    } else {
        None
    };
    let sparkplug = sparkplug_health(&s, topics.keys());
    Ok(results::DebugDevice {
        device_id: id,
        filters,
        sparkplug,
        summary: results::DebugDeviceSummary {
            topics: items.len() as u64,
            live_topics: live,
            silent_topics: items.len() as u64 - live,
            messages: items.iter().map(|t| t.messages).sum(),
            window_ms: window.as_millis() as u64,
        },
        topics: items,
        note,
    })
}

/// The Sparkplug edge nodes and devices behind the given topics, replayed
/// from the session's history of every Sparkplug topic among them (in
/// order of arrival); None when none is a Sparkplug topic.
fn sparkplug_health<'a>(
    s: &crate::session::Session,
    topics: impl Iterator<Item = &'a String>,
) -> Option<results::DebugDeviceSparkplug> {
    use crate::sparkplug::{edge::Edge, Topic};
    let mut msgs: Vec<_> = topics
        .filter(|t| Topic::parse(t).is_some())
        .flat_map(|t| s.link.history(t, 100))
        .collect();
    if msgs.is_empty() {
        return None;
    }
    msgs.sort_by_key(|m| m.received_at);
    let mut edge = Edge::default();
    for m in &msgs {
        if let Some(t) = Topic::parse(&m.topic) {
            edge.observe(&t, &m.payload);
        }
    }
    let host_problems = edge.host_problems();
    fn metrics(
        m: &std::collections::BTreeMap<String, crate::sparkplug::edge::MetricState>,
    ) -> Value {
        serde_json::to_value(m).unwrap_or_default()
    }
    Some(results::DebugDeviceSparkplug {
        nodes: edge
            .nodes
            .into_iter()
            .map(
                |((group, node), n)| results::DebugDeviceSparkplugNodesItem {
                    group,
                    node,
                    online: n.online,
                    birth_seen: n.birth_seen,
                    bd_seq: n.bd_seq,
                    seq: n.seq,
                    metrics: metrics(&n.metrics),
                    problems: n.problems,
                    devices: n
                        .devices
                        .into_iter()
                        .map(
                            |(device, d)| results::DebugDeviceSparkplugNodesItemDevicesItem {
                                device,
                                online: d.online,
                                birth_seen: d.birth_seen,
                                metrics: metrics(&d.metrics),
                                problems: d.problems,
                            },
                        )
                        .collect(),
                },
            )
            .collect(),
        host_problems,
    })
}
