//! `subscribe_and_collect` (with the representative sampler) and
//! `get_topic_schema` (payload structure inference).

use super::common::{self, ms, Stop};
use super::{params, results, Deadline, ToolContext, ToolError};
use crate::mqtt::client::Message;
use crate::payload::{self, Format};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tokio::time::Instant;

/// Depth of a collector's channel: large enough for bursts while the loop
/// takes messages off it.
const COLLECT_DEPTH: usize = 16 * 1024;

type Seen = (u64, Arc<Message>);

/// Keeps a bounded, representative selection of a stream of messages: all of
/// them while they fit; beyond that the first, the last, error-like payloads,
/// one per distinct payload shape, and the rest spread evenly over time.
pub struct Sampler {
    max: usize,
    received: u64,
    overflow: bool,
    all: Vec<Seen>,
    first: Option<Seen>,
    last: Option<Seen>,
    errors: Vec<Seen>,
    shapes: HashMap<String, Seen>,
    /// Messages since a new shape was last found; shape checks thin out when stable.
    since_new_shape: u64,
    /// Every `stride`-th message, thinned by doubling the stride: an even
    /// spread over the whole stream in bounded memory.
    spread: Vec<Seen>,
    stride: u64,
}

fn looks_like_error(b: &[u8]) -> bool {
    let head = &b[..b.len().min(512)];
    const WORDS: [&[u8]; 5] = [b"error", b"fail", b"exception", b"fault", b"alarm"];
    (0..head.len()).any(|i| {
        WORDS
            .iter()
            .any(|w| head[i..].len() >= w.len() && head[i..i + w.len()].eq_ignore_ascii_case(w))
    })
}

impl Sampler {
    /// A sampler that returns at most `max` messages.
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            received: 0,
            overflow: false,
            all: Vec::new(),
            first: None,
            last: None,
            errors: Vec::new(),
            shapes: HashMap::new(),
            since_new_shape: 0,
            spread: Vec::new(),
            stride: 1,
        }
    }

    /// Messages offered so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    fn note(&mut self, item: &Seen) {
        if self.errors.len() < self.max / 10 + 1 && looks_like_error(&item.1.payload) {
            self.errors.push(item.clone());
        }
        let check_shape = self.since_new_shape < 1000 || self.received % 16 == 0;
        if check_shape && item.1.payload.len() <= 4096 && self.shapes.len() < self.max / 5 + 1 {
            let key = format!("{}\u{0}{}", item.1.topic, payload::shape(&item.1.payload));
            if let std::collections::hash_map::Entry::Vacant(e) = self.shapes.entry(key) {
                e.insert(item.clone());
                self.since_new_shape = 0;
            }
        }
        self.since_new_shape += 1;
        if item.0 % self.stride == 0 {
            self.spread.push(item.clone());
            if self.spread.len() > 2 * self.max {
                self.stride *= 2;
                let stride = self.stride;
                self.spread.retain(|s| s.0 % stride == 0);
            }
        }
    }

    /// Offers one message.
    pub fn push(&mut self, m: Arc<Message>) {
        self.received += 1;
        let item = (self.received, m);
        if self.first.is_none() {
            self.first = Some(item.clone());
        }
        self.last = Some(item.clone());
        if !self.overflow {
            if self.all.len() < self.max {
                self.all.push(item);
                return;
            }
            // First overflow: classify what we kept, then keep only the sample.
            self.overflow = true;
            for it in std::mem::take(&mut self.all) {
                self.note(&it);
            }
        }
        self.note(&item);
    }

    /// The selection, in arrival order, and whether it is a sample.
    pub fn finish(self) -> (Vec<Arc<Message>>, bool) {
        if self.received as usize <= self.max {
            return (self.all.into_iter().map(|(_, m)| m).collect(), false);
        }
        let mut chosen: BTreeMap<u64, Arc<Message>> = BTreeMap::new();
        let add = |it: &Seen, chosen: &mut BTreeMap<u64, Arc<Message>>| {
            if chosen.len() < self.max {
                chosen.entry(it.0).or_insert_with(|| it.1.clone());
            }
        };
        for it in self.first.iter().chain(self.last.iter()) {
            add(it, &mut chosen);
        }
        for it in &self.errors {
            add(it, &mut chosen);
        }
        let mut shapes: Vec<&Seen> = self.shapes.values().collect();
        shapes.sort_by_key(|s| s.0);
        for it in shapes {
            add(it, &mut chosen);
        }
        let filled: Vec<&Seen> = self
            .spread
            .iter()
            .filter(|s| !chosen.contains_key(&s.0))
            .collect();
        let room = self.max.saturating_sub(chosen.len());
        if room > 0 && !filled.is_empty() {
            let step = filled.len() as f64 / room.min(filled.len()) as f64;
            let mut x = 0.0;
            while (x as usize) < filled.len() && chosen.len() < self.max {
                add(filled[x as usize], &mut chosen);
                x += step;
            }
        }
        (chosen.into_values().collect(), true)
    }
}

/// Collects messages on filters for a window and returns them or a sample.
pub async fn subscribe_and_collect(
    ctx: &ToolContext,
    p: params::SubscribeAndCollect,
    deadline: Deadline,
) -> Result<results::SubscribeAndCollect, ToolError> {
    let filters = common::filters(p.filter, p.filters)?;
    let s = common::session(ctx, p.session_id.as_deref()).await?;
    let window = deadline.window();
    let max = p.max_messages.unwrap_or(100) as usize;
    let max = s.policy.cap_collect(max);
    let first_only = p.stop_after_first.unwrap_or(false);
    let preview = p.preview_bytes.unwrap_or(2048) as usize;
    let start = Instant::now();
    let mut sub = common::open(
        ctx,
        &s,
        &filters,
        common::qos(p.qos, 0),
        COLLECT_DEPTH,
        deadline.reserving(window),
    )
    .await?;
    let granted: Vec<u64> = sub
        .granted
        .iter()
        .map(|(_, c)| match c {
            crate::mqtt::client::SubAckCode::Granted(q) => *q as u64,
            crate::mqtt::client::SubAckCode::Refused(_) => 128,
        })
        .collect();
    let mut sampler = Sampler::new(max);
    let mut topics: HashSet<String> = HashSet::new();
    let stop = common::drain(ctx, &mut sub, deadline.cut(window), None, |m| {
        if topics.len() < 100_000 && !topics.contains(&m.topic) {
            topics.insert(m.topic.clone());
        }
        sampler.push(m);
        !first_only
    })
    .await;
    let dropped = sub.dropped();
    drop(sub);
    let received = sampler.received();
    let (msgs, sampled) = sampler.finish();
    let stopped_by = match stop {
        Stop::Enough => "first_message",
        Stop::Cancelled => "cancelled",
        Stop::Closed => "session_closed",
        _ => "duration",
    };
    let note = if sampled {
        Some(format!("{received} messages arrived, more than max_messages ({max}); returned a representative sample (first, last, error-like payloads, one per payload shape, the rest spread over time). Narrow the filter or raise max_messages to see more."))
    } else if received == 0 {
        Some(format!("no message arrived on {} within {} ms; check the filter with list_topics or listen longer", filters.join(", "), window.as_millis()))
    } else {
        None
    };
    if dropped > 0 {
        tracing::warn!("collect dropped {dropped} messages (consumer too slow)");
    }
    Ok(results::SubscribeAndCollect {
        messages: msgs
            .iter()
            .map(|m| common::message_json(m, preview, common::Seen::of(&s)))
            .collect(),
        stats: results::SubscribeAndCollectStats {
            received,
            returned: msgs.len() as u64,
            dropped,
            sampled,
            distinct_topics: topics.len() as u64,
            duration_ms: ms(start.elapsed()),
            stopped_by: stopped_by.into(),
        },
        filters,
        granted_qos: granted,
        note,
    })
}

/// What we learn about one JSON path.
#[derive(Default)]
struct FieldStats {
    types: BTreeMap<&'static str, u64>,
    present_in: u64,
    min: Option<f64>,
    max: Option<f64>,
    examples: Vec<Value>,
}

const MAX_PATHS: usize = 500;

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn walk(
    v: &Value,
    path: &str,
    fields: &mut BTreeMap<String, FieldStats>,
    seen: &mut HashSet<String>,
    depth: usize,
) {
    if depth > 16 || (!fields.contains_key(path) && fields.len() >= MAX_PATHS) {
        return;
    }
    let f = fields.entry(path.to_string()).or_default();
    *f.types.entry(type_name(v)).or_default() += 1;
    if seen.insert(path.to_string()) {
        f.present_in += 1;
    }
    if let Some(x) = v.as_f64() {
        f.min = Some(f.min.map_or(x, |m| m.min(x)));
        f.max = Some(f.max.map_or(x, |m| m.max(x)));
    }
    let example = match v {
        Value::String(s) => Some(json!(payload::truncate_str(s, 64))),
        Value::Number(_) | Value::Bool(_) => Some(v.clone()),
        _ => None,
    };
    if let Some(e) = example {
        if f.examples.len() < 3 && !f.examples.contains(&e) {
            f.examples.push(e);
        }
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let key = if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    format!("{path}.{k}")
                } else {
                    format!("{path}[{}]", Value::from(k.as_str()))
                };
                walk(child, &key, fields, seen, depth + 1);
            }
        }
        Value::Array(a) => {
            let key = format!("{path}[]");
            for child in a.iter().take(50) {
                walk(child, &key, fields, seen, depth + 1);
            }
        }
        _ => {}
    }
}

/// How much of one decoded payload schema inference looks at.
const SCHEMA_DECODE_LIMIT: usize = 64 * 1024;

/// A Sparkplug message as the object schema inference walks: its metrics
/// by name (or `alias:N` when the birth is missing), each with its value.
fn sparkplug_fields(sp: super::defs::Sparkplug) -> Value {
    let mut out = serde_json::Map::new();
    for m in sp.metrics.unwrap_or_default() {
        let key = match (m.name, m.alias) {
            (Some(name), _) => name,
            (None, Some(alias)) => format!("alias:{alias}"),
            (None, None) => continue,
        };
        out.insert(key, m.value.unwrap_or(Value::Null));
    }
    Value::Object(out)
}

/// Samples a filter and infers the payload structure.
pub async fn get_topic_schema(
    ctx: &ToolContext,
    p: params::GetTopicSchema,
    deadline: Deadline,
) -> Result<results::GetTopicSchema, ToolError> {
    let filters = common::filters(Some(p.filter.clone()), None)?;
    let s = common::session(ctx, p.session_id.as_deref()).await?;
    let window = deadline.window();
    let max = p.max_messages.unwrap_or(200) as usize;
    let max = s.policy.cap_collect(max);
    let mut sub = common::open(
        ctx,
        &s,
        &filters,
        0,
        COLLECT_DEPTH,
        deadline.reserving(window),
    )
    .await?;
    let mut samples: Vec<Arc<Message>> = Vec::new();
    common::drain(ctx, &mut sub, deadline.cut(window), None, |m| {
        samples.push(m);
        samples.len() < max
    })
    .await;
    drop(sub);
    let mut fields: BTreeMap<String, FieldStats> = BTreeMap::new();
    let mut formats: HashMap<String, u64> = HashMap::new();
    let mut topics: HashMap<String, u64> = HashMap::new();
    let mut text_examples: Vec<String> = Vec::new();
    let mut json_count = 0u64;
    let seen = common::Seen::of(&s);
    for m in &samples {
        *topics.entry(m.topic.clone()).or_default() += 1;
        // The value as the tools show it: decoded by a configured codec or
        // as Sparkplug where that applies, so fields describe the values.
        let shown = common::decoded_payload(&m.topic, &m.payload, SCHEMA_DECODE_LIMIT, seen);
        *formats.entry(shown.format.clone()).or_default() += 1;
        let value = match (shown.json, shown.sparkplug) {
            (Some(v), _) => Some(v),
            (None, Some(sp)) => Some(sparkplug_fields(sp)),
            // JSON too long to show whole is still walked, as it always was.
            (None, None) if shown.format == Format::Json.as_str() => {
                serde_json::from_slice(&m.payload).ok()
            }
            (None, None) => None,
        };
        if let Some(v) = value {
            json_count += 1;
            let mut seen_paths = HashSet::new();
            walk(&v, "$", &mut fields, &mut seen_paths, 0);
        } else if shown.format == Format::Text.as_str() && text_examples.len() < 5 {
            let t = payload::preview(&m.payload, 64);
            if !text_examples.contains(&t) {
                text_examples.push(t);
            }
        }
    }
    let n = samples.len() as u64;
    let mut topic_list: Vec<(String, u64)> = topics.into_iter().collect();
    topic_list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    topic_list.truncate(50);
    Ok(results::GetTopicSchema {
        filter: p.filter,
        messages_sampled: n,
        formats: results::GetTopicSchemaFormats {
            json: formats.get("json").copied().unwrap_or(0),
            text: formats.get("text").copied().unwrap_or(0),
            binary: formats.get("binary").copied().unwrap_or(0),
            empty: formats.get("empty").copied().unwrap_or(0),
            sparkplug: formats.get("sparkplug").copied(),
            msgpack: formats.get("msgpack").copied(),
            cbor: formats.get("cbor").copied(),
            protobuf: formats.get("protobuf").copied(),
        },
        non_json_share: if n == 0 {
            0.0
        } else {
            (n - json_count) as f64 / n as f64
        },
        topics: topic_list
            .into_iter()
            .map(|(topic, messages)| results::GetTopicSchemaTopicsItem { topic, messages })
            .collect(),
        fields: fields
            .into_iter()
            .map(|(path, f)| results::GetTopicSchemaFieldsItem {
                path,
                types: f
                    .types
                    .iter()
                    .map(|(k, v)| (k.to_string(), i64::try_from(*v).unwrap_or(i64::MAX)))
                    .collect(),
                present_in: f.present_in,
                presence: if json_count == 0 {
                    0.0
                } else {
                    f.present_in as f64 / json_count as f64
                },
                min: f.min,
                max: f.max,
                examples: {
                    // Sorted, so the answer does not depend on arrival order.
                    let mut e = f.examples;
                    e.sort_by_key(|v| v.to_string());
                    e
                },
            })
            .collect(),
        text_examples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::SystemTime;

    fn msg(topic: &str, payload: &str) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            qos: 0,
            retain: false,
            received_at: SystemTime::now(),
            props: None,
        })
    }

    #[test]
    fn returns_everything_that_fits() {
        let mut s = Sampler::new(5);
        for i in 0..5 {
            s.push(msg("t", &i.to_string()));
        }
        let (m, sampled) = s.finish();
        assert!(!sampled);
        assert_eq!(m.len(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn sample_keeps_first_last_errors_shapes_and_spread() {
        let mut s = Sampler::new(20);
        for i in 0..1000 {
            tokio::time::advance(std::time::Duration::from_millis(10)).await;
            let p = match i {
                500 => r#"{"status":"ERROR","code":7}"#.to_string(),
                700 => "plain text".to_string(),
                _ => format!(r#"{{"t":{i}}}"#),
            };
            s.push(msg("sensor", &p));
        }
        let (m, sampled) = s.finish();
        assert!(sampled);
        assert!(m.len() <= 20 && m.len() >= 15, "{}", m.len());
        let payloads: Vec<String> = m
            .iter()
            .map(|x| String::from_utf8_lossy(&x.payload).into_owned())
            .collect();
        assert_eq!(payloads.first().map(String::as_str), Some(r#"{"t":0}"#));
        assert_eq!(payloads.last().map(String::as_str), Some(r#"{"t":999}"#));
        assert!(payloads.iter().any(|p| p.contains("ERROR")));
        assert!(payloads.iter().any(|p| p == "plain text"));
        // Spread: the chosen ordinary messages cover the whole window.
        let ts: Vec<i64> = payloads
            .iter()
            .filter_map(|p| serde_json::from_str::<Value>(p).ok())
            .filter_map(|v| v["t"].as_i64())
            .collect();
        assert!(
            ts.iter().any(|t| (200..400).contains(t)) && ts.iter().any(|t| (600..800).contains(t)),
            "{ts:?}"
        );
    }

    #[test]
    fn infers_fields() {
        let mut fields = BTreeMap::new();
        for p in [
            json!({"t": 20.5, "unit": "C", "tags": ["a"]}),
            json!({"t": 19, "bat": 80}),
        ] {
            let mut seen = HashSet::new();
            walk(&p, "$", &mut fields, &mut seen, 0);
        }
        let t = &fields["$.t"];
        assert_eq!((t.min, t.max, t.present_in), (Some(19.0), Some(20.5), 2));
        assert_eq!(t.types.get("number"), Some(&1));
        assert_eq!(t.types.get("integer"), Some(&1));
        assert_eq!(fields["$.bat"].present_in, 1);
        assert!(fields.contains_key("$.tags[]"));
    }
}
