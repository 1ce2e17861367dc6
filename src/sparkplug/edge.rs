//! The state of Sparkplug edge nodes and their devices, replayed from their
//! messages in order of arrival, with the health problems the
//! specification makes visible: sequence gaps (seq 0-255 wrapping, NBIRTH
//! has 0), an NDEATH whose bdSeq does not match the birth (stale: the node
//! stays online), data before a birth, and a primary host whose STATE is
//! offline. Problems are kept on the node or device they concern. No I/O:
//! callers feed messages, so this is tested as plain function calls.

use super::births::Names;
use super::datatype::DataType;
use super::proto::Metric;
use super::value::Budget;
use super::{frame, metric, MessageType, Topic};
use prost::Message as _;
use serde_json::Value;
use std::collections::BTreeMap;

/// Problems kept per node or device (the latest ones).
const MAX_PROBLEMS: usize = 20;
/// Metrics kept per node or device.
const MAX_METRICS: usize = 1000;
/// Output bytes a message's metric values may take.
const VALUE_BUDGET: usize = 16 * 1024;

/// One metric's declared datatype and latest value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MetricState {
    /// Datatype name from the birth (or the message).
    pub datatype: String,
    /// Latest value; null when it was null.
    pub value: Value,
}

/// A device of an edge node.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct DeviceState {
    /// Online between its DBIRTH and its DDEATH (or its node's death).
    pub online: bool,
    /// Whether its DBIRTH was seen.
    pub birth_seen: bool,
    /// Metrics by name.
    pub metrics: BTreeMap<String, MetricState>,
    /// Health problems, oldest first.
    pub problems: Vec<String>,
    /// Alias names from its DBIRTH.
    #[serde(skip)]
    names: Names,
}

/// An edge node.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct NodeState {
    /// Online between its NBIRTH and a matching NDEATH.
    pub online: bool,
    /// Whether its NBIRTH was seen.
    pub birth_seen: bool,
    /// The bdSeq of its current birth.
    pub bd_seq: Option<u64>,
    /// The last seq seen from it or its devices.
    pub seq: Option<u64>,
    /// Node metrics by name.
    pub metrics: BTreeMap<String, MetricState>,
    /// Its devices by id.
    pub devices: BTreeMap<String, DeviceState>,
    /// Health problems, oldest first.
    pub problems: Vec<String>,
    /// Alias names from its NBIRTH.
    #[serde(skip)]
    names: Names,
}

/// Everything replayed so far: nodes by (group, node id), hosts by id.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Edge {
    /// Edge nodes.
    pub nodes: BTreeMap<(String, String), NodeState>,
    /// Primary hosts and whether their last STATE said online.
    pub hosts: BTreeMap<String, bool>,
}

fn problem(list: &mut Vec<String>, p: String) {
    if list.len() >= MAX_PROBLEMS {
        list.remove(0);
    }
    list.push(p);
}

impl Edge {
    /// Applies one message (in order of arrival).
    pub fn observe(&mut self, topic: &Topic<'_>, payload: &[u8]) {
        if topic.kind == MessageType::State {
            if let Ok((online, _)) = super::state(payload) {
                self.hosts.insert(topic.node.to_string(), online);
            }
            return;
        }
        let key = (topic.group.to_string(), topic.node.to_string());
        let node = self.nodes.entry(key).or_default();
        let Ok(f) = frame(payload) else {
            problem(
                &mut node.problems,
                format!("{} does not decode as Sparkplug B", topic.kind.as_str()),
            );
            return;
        };
        let metrics: Vec<Metric> = f
            .metrics
            .iter()
            .filter_map(|m| Metric::decode(*m).ok())
            .collect();
        let kind = topic.kind;
        match kind {
            MessageType::NBirth => {
                if f.seq != Some(0) {
                    problem(
                        &mut node.problems,
                        format!("NBIRTH carries seq {:?}; it must be 0", f.seq),
                    );
                }
                node.online = true;
                node.birth_seen = true;
                node.seq = f.seq;
                node.bd_seq = bd_seq(&metrics);
                node.names = Names::from_metrics(f.metrics.iter().copied());
                node.metrics.clear();
                // A new node birth: devices are offline until they rebirth.
                for d in node.devices.values_mut() {
                    d.online = false;
                }
                record(&mut node.metrics, &metrics, &node.names);
                return;
            }
            MessageType::NDeath => {
                let death = bd_seq(&metrics);
                match (death, node.bd_seq) {
                    (Some(d), Some(b)) if d != b => problem(
                        &mut node.problems,
                        format!("stale NDEATH: its bdSeq {d} does not match the current birth's {b}; the node stays online"),
                    ),
                    _ => {
                        node.online = false;
                        for d in node.devices.values_mut() {
                            d.online = false;
                        }
                    }
                }
                return;
            }
            MessageType::NCmd | MessageType::DCmd | MessageType::State => return,
            _ => {}
        }
        // NDATA, DBIRTH, DDATA, DDEATH: in the node's sequence.
        if let Some(seq) = f.seq {
            if let Some(last) = node.seq {
                let expected = (last + 1) % 256;
                if seq != expected {
                    problem(&mut node.problems, format!("sequence gap: {} with seq {seq} after seq {last} (expected {expected})", kind.as_str()));
                }
            }
            node.seq = Some(seq);
        }
        if !node.birth_seen {
            problem(
                &mut node.problems,
                format!("{} before any NBIRTH of this node", kind.as_str()),
            );
        }
        let Some(device) = topic.device else {
            record(&mut node.metrics, &metrics, &node.names);
            return;
        };
        let d = node.devices.entry(device.to_string()).or_default();
        match kind {
            MessageType::DBirth => {
                d.online = true;
                d.birth_seen = true;
                d.names = Names::from_metrics(f.metrics.iter().copied());
                d.metrics.clear();
                record(&mut d.metrics, &metrics, &d.names);
            }
            MessageType::DDeath => d.online = false,
            _ => {
                if !d.birth_seen {
                    problem(
                        &mut d.problems,
                        "DDATA before any DBIRTH of this device: metrics are shown by alias".into(),
                    );
                }
                record(&mut d.metrics, &metrics, &d.names);
            }
        }
    }

    /// Problems of hosts: each primary host whose last STATE was offline.
    pub fn host_problems(&self) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|(_, online)| !**online)
            .map(|(h, _)| format!("primary host {h:?} is offline (its STATE says so)"))
            .collect()
    }
}

/// The bdSeq metric of a birth or death.
fn bd_seq(metrics: &[Metric]) -> Option<u64> {
    metrics
        .iter()
        .find(|m| m.name.as_deref() == Some("bdSeq"))
        .and_then(|m| match m.value {
            Some(super::proto::MetricValue::Long(v)) => Some(v),
            Some(super::proto::MetricValue::Int(v)) => Some(u64::from(v)),
            _ => None,
        })
}

/// Keeps the latest value of each metric, named through the birth.
fn record(into: &mut BTreeMap<String, MetricState>, metrics: &[Metric], names: &Names) {
    let mut budget = Budget::new(VALUE_BUDGET);
    for m in metrics {
        let shown = metric::show(m, Some(names), &mut budget, 0);
        let key = match (shown.name, shown.alias) {
            (Some(n), _) => n,
            (None, Some(a)) => format!("alias:{a}"),
            (None, None) => continue,
        };
        if into.len() >= MAX_METRICS && !into.contains_key(&key) {
            continue;
        }
        let datatype = if shown.datatype == DataType::Unknown.name() {
            into.get(&key)
                .map_or(shown.datatype, |old| old.datatype.clone())
        } else {
            shown.datatype
        };
        into.insert(
            key,
            MetricState {
                datatype,
                value: shown.value.unwrap_or(Value::Null),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::proto::MetricValue;
    use super::*;

    fn payload(seq: Option<u8>, metrics: &[Metric]) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(s) = seq {
            out.push(0x18);
            prost::encoding::encode_varint(u64::from(s), &mut out);
        }
        for m in metrics {
            let body = m.encode_to_vec();
            out.push(0x12);
            prost::encoding::encode_varint(body.len() as u64, &mut out);
            out.extend(body);
        }
        out
    }

    fn m(name: Option<&str>, alias: u64, dt: u32, v: MetricValue) -> Metric {
        Metric {
            name: name.map(str::to_string),
            alias: Some(alias),
            datatype: Some(dt),
            value: Some(v),
            ..Default::default()
        }
    }

    fn feed(e: &mut Edge, topic: &str, bytes: &[u8]) {
        e.observe(&Topic::parse(topic).unwrap(), bytes);
    }

    #[test]
    fn births_deaths_and_sequence() {
        let mut e = Edge::default();
        let bd = m(Some("bdSeq"), 0, 4, MetricValue::Long(5));
        feed(
            &mut e,
            "spBv1.0/g/NBIRTH/n",
            &payload(Some(0), std::slice::from_ref(&bd)),
        );
        feed(
            &mut e,
            "spBv1.0/g/DBIRTH/n/d",
            &payload(Some(1), &[m(Some("t"), 3, 9, MetricValue::Float(1.0))]),
        );
        let data = Metric {
            alias: Some(3),
            value: Some(MetricValue::Float(2.5)),
            ..Default::default()
        };
        feed(
            &mut e,
            "spBv1.0/g/DDATA/n/d",
            &payload(Some(2), std::slice::from_ref(&data)),
        );
        let node = &e.nodes[&("g".into(), "n".into())];
        assert!(node.online && node.problems.is_empty(), "{node:?}");
        assert_eq!(node.bd_seq, Some(5));
        let d = &node.devices["d"];
        assert_eq!(
            d.metrics["t"],
            MetricState {
                datatype: "Float".into(),
                value: serde_json::json!(2.5)
            }
        );
        // A gap: seq 4 after 2.
        feed(
            &mut e,
            "spBv1.0/g/DDATA/n/d",
            &payload(Some(4), std::slice::from_ref(&data)),
        );
        // A stale death: bdSeq 4 is not the birth's 5.
        let stale = m(Some("bdSeq"), 0, 4, MetricValue::Long(4));
        feed(&mut e, "spBv1.0/g/NDEATH/n", &payload(None, &[stale]));
        let node = &e.nodes[&("g".into(), "n".into())];
        assert!(node.online);
        assert_eq!(node.problems.len(), 2, "{:?}", node.problems);
        assert!(node.problems[0].contains("sequence gap"));
        assert!(node.problems[1].contains("stale NDEATH"));
        // The matching death takes the node and its devices offline.
        feed(&mut e, "spBv1.0/g/NDEATH/n", &payload(None, &[bd]));
        let node = &e.nodes[&("g".into(), "n".into())];
        assert!(!node.online && !node.devices["d"].online);
        // Wrapping: 255 then 0 is no gap.
        let mut e = Edge::default();
        feed(&mut e, "spBv1.0/g/NBIRTH/n", &payload(Some(0), &[]));
        for s in 1..=255u8 {
            feed(&mut e, "spBv1.0/g/NDATA/n", &payload(Some(s), &[]));
        }
        feed(&mut e, "spBv1.0/g/NDATA/n", &payload(Some(0), &[]));
        assert!(e.nodes[&("g".into(), "n".into())].problems.is_empty());
    }

    #[test]
    fn data_before_birth_and_offline_hosts() {
        let mut e = Edge::default();
        feed(
            &mut e,
            "spBv1.0/g/DDATA/n/d",
            &payload(
                Some(7),
                &[Metric {
                    alias: Some(1),
                    value: Some(MetricValue::Int(3)),
                    ..Default::default()
                }],
            ),
        );
        let node = &e.nodes[&("g".into(), "n".into())];
        assert!(node.problems[0].contains("before any NBIRTH"));
        assert!(node.devices["d"].problems[0].contains("before any DBIRTH"));
        assert!(node.devices["d"].metrics.contains_key("alias:1"));
        feed(
            &mut e,
            "spBv1.0/STATE/scada",
            br#"{"online":false,"timestamp":1}"#,
        );
        assert_eq!(e.host_problems().len(), 1);
        feed(&mut e, "spBv1.0/g/NBIRTH/n", &payload(Some(3), &[]));
        assert!(e.nodes[&("g".into(), "n".into())]
            .problems
            .last()
            .unwrap()
            .contains("must be 0"));
    }
}
