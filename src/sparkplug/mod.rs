//! Sparkplug B: messages on `spBv1.0/…` topics decoded for display.
//! A topic names the message (`spBv1.0/<group>/<type>/<node>[/<device>]`,
//! `spBv1.0/STATE/<host>`, also under `$sparkplug/certificates/`); the
//! payload is the Tahu protobuf `Payload` (STATE: JSON). Decoding never
//! guesses from bytes: only the topic namespace selects it, and a payload
//! that does not decode is shown as before, with the error.
//!
//! - `proto.rs`: the protobuf messages (prost derive structs).
//! - `datatype.rs`: datatype numbers and names.
//! - `value.rs`: values by datatype, within an output budget.
//! - `metric.rs`: one metric, composites included.
//! - `births.rs`: alias names learned from births.
//! - `command.rs`: NCMD/DCMD payloads in the datatypes their births declared.
//! - `edge.rs`: edge nodes and devices replayed from their messages, with health problems.

pub mod births;
pub mod command;
pub mod datatype;
pub mod edge;
pub mod metric;
pub mod proto;
pub mod value;

use crate::tools::defs;
use births::{Births, Names};
use prost::encoding::{decode_key, decode_varint, WireType};
use prost::Message as _;
use std::sync::Arc;
use value::Budget;

/// The Sparkplug B topic namespace.
pub const NAMESPACE: &str = "spBv1.0";

/// Where Sparkplug-aware brokers keep retained copies of births.
const CERTIFICATES: &str = "$sparkplug/certificates/";

/// Payloads larger than this are not decoded: a metric costs about 60
/// times its smallest wire form in memory, so this bounds a hostile
/// payload to some 60 MiB for the moment it is shown.
pub const MAX_DECODE_BYTES: usize = 1024 * 1024;

/// The kinds of Sparkplug message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the names are the specification's
pub enum MessageType {
    NBirth,
    NDeath,
    NData,
    NCmd,
    DBirth,
    DDeath,
    DData,
    DCmd,
    State,
}

impl MessageType {
    /// The topic level that names it.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::NBirth => "NBIRTH",
            MessageType::NDeath => "NDEATH",
            MessageType::NData => "NDATA",
            MessageType::NCmd => "NCMD",
            MessageType::DBirth => "DBIRTH",
            MessageType::DDeath => "DDEATH",
            MessageType::DData => "DDATA",
            MessageType::DCmd => "DCMD",
            MessageType::State => "STATE",
        }
    }

    fn of_node(level: &str) -> Option<MessageType> {
        Some(match level {
            "NBIRTH" => MessageType::NBirth,
            "NDEATH" => MessageType::NDeath,
            "NDATA" => MessageType::NData,
            "NCMD" => MessageType::NCmd,
            _ => return None,
        })
    }

    fn of_device(level: &str) -> Option<MessageType> {
        Some(match level {
            "DBIRTH" => MessageType::DBirth,
            "DDEATH" => MessageType::DDeath,
            "DDATA" => MessageType::DData,
            "DCMD" => MessageType::DCmd,
            _ => return None,
        })
    }
}

/// A Sparkplug topic, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topic<'a> {
    /// What the message is.
    pub kind: MessageType,
    /// Group id (empty for STATE).
    pub group: &'a str,
    /// Edge node id, or the host id for STATE.
    pub node: &'a str,
    /// Device id (device messages only).
    pub device: Option<&'a str>,
}

impl Topic<'_> {
    /// Parses a topic; None when it is not a Sparkplug B topic.
    pub fn parse(topic: &str) -> Option<Topic<'_>> {
        let t = topic.strip_prefix(CERTIFICATES).unwrap_or(topic);
        let mut levels = t.split('/');
        if levels.next()? != NAMESPACE {
            return None;
        }
        let rest: Vec<&str> = levels.collect();
        let parsed = match rest.as_slice() {
            ["STATE", host] => Topic {
                kind: MessageType::State,
                group: "",
                node: host,
                device: None,
            },
            [group, kind, node] => Topic {
                kind: MessageType::of_node(kind)?,
                group,
                node,
                device: None,
            },
            [group, kind, node, device] => Topic {
                kind: MessageType::of_device(kind)?,
                group,
                node,
                device: Some(device),
            },
            _ => return None,
        };
        let ids = [parsed.group, parsed.node, parsed.device.unwrap_or("x")];
        (parsed.kind == MessageType::State || ids.iter().all(|id| !id.is_empty())).then_some(parsed)
    }

    /// The topic of the birth that names this message's metrics: NBIRTH for
    /// node messages, DBIRTH for device messages; None for STATE.
    pub fn birth_topic(&self) -> Option<String> {
        match (self.kind, self.device) {
            (MessageType::State, _) => None,
            (_, None) => Some(format!("{NAMESPACE}/{}/NBIRTH/{}", self.group, self.node)),
            (_, Some(d)) => Some(format!(
                "{NAMESPACE}/{}/DBIRTH/{}/{d}",
                self.group, self.node
            )),
        }
    }

    fn is_birth(&self) -> bool {
        matches!(self.kind, MessageType::NBirth | MessageType::DBirth)
    }
}

/// Why a payload on a Sparkplug topic was not decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Over [`MAX_DECODE_BYTES`].
    #[error("the payload is {size} bytes; Sparkplug payloads over {limit} bytes are not decoded")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a protobuf `Payload`.
    #[error("not a Sparkplug B protobuf payload: {0}")]
    Protobuf(String),
    /// A STATE payload that is neither JSON `{"online": ...}` nor ONLINE/OFFLINE.
    #[error("a STATE payload must be JSON {{\"online\": true|false, \"timestamp\": ms}} (or ONLINE/OFFLINE)")]
    State,
}

impl From<prost::DecodeError> for DecodeError {
    /// prost names every enclosing field; past a few levels that path
    /// says nothing more, so the text is cut.
    fn from(e: prost::DecodeError) -> Self {
        let text = e.to_string();
        let cut = crate::payload::truncate_str(&text, 300);
        DecodeError::Protobuf(if cut.len() < text.len() {
            format!("{cut}…")
        } else {
            text
        })
    }
}

/// The top level of a `Payload`, its metrics left as undecoded fields.
#[derive(Debug, Default)]
struct Frame<'a> {
    timestamp: Option<u64>,
    seq: Option<u64>,
    uuid: Option<String>,
    body: Option<&'a [u8]>,
    metrics: Vec<&'a [u8]>,
}

/// Walks the top level of a `Payload` by hand, so that its metrics can be
/// decoded one at a time (and skipped once the output budget is spent).
fn frame(bytes: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let mut f = Frame::default();
    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf)?;
        let wrong = || DecodeError::Protobuf(format!("field {tag} has the wrong wire type"));
        match wire {
            WireType::Varint => {
                let v = decode_varint(&mut buf)?;
                match tag {
                    1 => f.timestamp = Some(v),
                    3 => f.seq = Some(v),
                    2 | 4 | 5 => return Err(wrong()),
                    _ => {}
                }
            }
            WireType::LengthDelimited => {
                let len = usize::try_from(decode_varint(&mut buf)?).unwrap_or(usize::MAX);
                if len > buf.len() {
                    return Err(DecodeError::Protobuf(format!(
                        "field {tag} claims {len} bytes but {} remain",
                        buf.len()
                    )));
                }
                let (field, rest) = buf.split_at(len);
                buf = rest;
                match tag {
                    2 => f.metrics.push(field),
                    4 => {
                        f.uuid = Some(
                            String::from_utf8(field.to_vec())
                                .map_err(|_| DecodeError::Protobuf("uuid is not UTF-8".into()))?,
                        )
                    }
                    5 => f.body = Some(field),
                    1 | 3 => return Err(wrong()),
                    _ => {}
                }
            }
            WireType::SixtyFourBit | WireType::ThirtyTwoBit => {
                let n = if wire == WireType::SixtyFourBit { 8 } else { 4 };
                if (1..=5).contains(&tag) {
                    return Err(wrong());
                }
                if buf.len() < n {
                    return Err(DecodeError::Protobuf("truncated fixed-width field".into()));
                }
                buf = &buf[n..];
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(DecodeError::Protobuf(
                    "protobuf groups are not part of Sparkplug B".into(),
                ))
            }
        }
    }
    Ok(f)
}

/// A Sparkplug message as results show it.
#[derive(Debug)]
pub struct Shown {
    /// The decoded message (`$defs/sparkplug`).
    pub sparkplug: defs::Sparkplug,
    /// Whether the preview limit left anything out.
    pub truncated: bool,
}

/// Decodes a message on a Sparkplug topic for display, within `limit`
/// bytes of output. Births are learned into `births`; aliases of other
/// messages are named from there, or else from the last birth that
/// `last_birth` (the connection's history) returns for a birth topic.
pub fn show(
    topic: &Topic<'_>,
    bytes: &[u8],
    limit: usize,
    births: &Births,
    last_birth: &dyn Fn(&str) -> Option<bytes::Bytes>,
) -> Result<Shown, DecodeError> {
    let mut out = defs::Sparkplug {
        message_type: topic.kind.as_str().to_string(),
        group: (!topic.group.is_empty()).then(|| topic.group.to_string()),
        node: (topic.kind != MessageType::State).then(|| topic.node.to_string()),
        device: topic.device.map(str::to_string),
        host: (topic.kind == MessageType::State).then(|| topic.node.to_string()),
        online: None,
        timestamp: None,
        time: None,
        seq: None,
        uuid: None,
        body_base64: None,
        metrics: None,
        metrics_total: None,
        note: None,
    };
    if topic.kind == MessageType::State {
        let (online, timestamp) = state(bytes)?;
        out.online = Some(online);
        out.timestamp = timestamp;
        out.time = timestamp.and_then(value::rfc3339_ms);
        return Ok(Shown {
            sparkplug: out,
            truncated: false,
        });
    }
    if bytes.len() > MAX_DECODE_BYTES {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: MAX_DECODE_BYTES,
        });
    }
    let f = frame(bytes)?;
    let birth_topic = topic.birth_topic();
    let names = if topic.is_birth() {
        let learned = Names::from_metrics(f.metrics.iter().copied());
        match &birth_topic {
            Some(t) => {
                births.learn(t, learned);
                births.get(t)
            }
            None => Some(Arc::new(learned)),
        }
    } else {
        birth_topic.as_deref().and_then(|t| births.get(t))
    };
    let mut budget = Budget::new(limit.max(256));
    let mut metrics = Vec::new();
    let mut names = names;
    let mut refreshed = false;
    let mut unnamed = false;
    for field in &f.metrics {
        if budget.spent() {
            budget.cut = true;
            break;
        }
        let m = proto::Metric::decode(*field)?;
        // An alias the known birth does not declare: a rebirth this session
        // has not shown may be in the history.
        if let (None, Some(alias), false, Some(t)) = (&m.name, m.alias, refreshed, &birth_topic) {
            if !names.as_ref().is_some_and(|n| n.has_alias(alias)) {
                refreshed = true;
                if let Some(fresh) = seen_birth(t, last_birth).and_then(|b| birth_names(&b)) {
                    births.learn(t, fresh);
                    names = births.get(t);
                }
            }
        }
        let shown = metric::show(&m, names.as_deref(), &mut budget, 0);
        unnamed |= shown.name.is_none() && shown.alias.is_some();
        metrics.push(shown);
    }
    if unnamed {
        if let Some(t) = &birth_topic {
            out.note = Some(format!("metrics without a name are shown by alias: this session has not seen the birth on {t:?} (births are not retained; subscribe before the node's next birth, or ask it to rebirth with an NCMD of \"Node Control/Rebirth\")"));
        }
    }
    out.timestamp = f.timestamp;
    out.time = f.timestamp.and_then(value::rfc3339_ms);
    out.seq = f.seq;
    out.uuid = f.uuid;
    out.body_base64 = f.body.map(|b| {
        use base64::Engine as _;
        let keep = if budget.take(b.len() * 4 / 3) {
            b.len()
        } else {
            0
        };
        base64::engine::general_purpose::STANDARD.encode(&b[..keep])
    });
    out.metrics_total = Some(f.metrics.len() as u64);
    out.metrics = Some(metrics);
    Ok(Shown {
        sparkplug: out,
        truncated: budget.cut,
    })
}

/// What the birth behind `topic` declared: learned by the session, or read
/// from the last birth on that topic in the connection's history.
pub fn names_for(
    topic: &Topic<'_>,
    births: &Births,
    last_birth: &dyn Fn(&str) -> Option<bytes::Bytes>,
) -> Option<Arc<Names>> {
    let t = topic.birth_topic()?;
    births.get(&t).or_else(|| {
        births.learn(&t, birth_names(&seen_birth(&t, last_birth)?)?);
        births.get(&t)
    })
}

/// The last birth on `birth_topic` in the history, or else the retained
/// copy a Sparkplug-aware broker keeps under `$sparkplug/certificates/`.
fn seen_birth(
    birth_topic: &str,
    last_birth: &dyn Fn(&str) -> Option<bytes::Bytes>,
) -> Option<bytes::Bytes> {
    last_birth(birth_topic).or_else(|| last_birth(&format!("{CERTIFICATES}{birth_topic}")))
}

/// The names in a birth payload, if it decodes.
fn birth_names(bytes: &[u8]) -> Option<Names> {
    if bytes.len() > MAX_DECODE_BYTES {
        return None;
    }
    frame(bytes)
        .ok()
        .map(|f| Names::from_metrics(f.metrics.iter().copied()))
}

/// A STATE payload: Sparkplug 3.0 JSON, or the 2.2 texts ONLINE/OFFLINE.
fn state(bytes: &[u8]) -> Result<(bool, Option<u64>), DecodeError> {
    #[derive(serde::Deserialize)]
    struct State {
        online: bool,
        timestamp: Option<u64>,
    }
    match bytes {
        b"ONLINE" => return Ok((true, None)),
        b"OFFLINE" => return Ok((false, None)),
        _ => {}
    }
    serde_json::from_slice::<State>(bytes)
        .map(|s| (s.online, s.timestamp))
        .map_err(|_| DecodeError::State)
}

#[cfg(test)]
mod tests;
