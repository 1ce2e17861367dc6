//! Sparkplug commands: `{"metrics": [{"name", "value", "datatype"?}]}` on an
//! NCMD or DCMD topic, encoded as the specification asks: each metric in
//! the datatype its birth declared (and with the birth's alias), its value
//! in the matching protobuf field, and a payload timestamp. Without the
//! birth a metric needs an explicit `datatype`; with it, a name the birth
//! does not declare or a value that does not fit is refused, so a command
//! never reaches a node in a shape it cannot read.

use super::births::Names;
use super::datatype::DataType;
use super::proto::{Metric, MetricValue};
use super::{MessageType, Topic};
use base64::Engine as _;
use prost::Message as _;
use serde_json::Value;

/// Encodes a command; the error tells the caller what to change.
pub fn encode(
    topic: &Topic<'_>,
    spec: &Value,
    names: Option<&Names>,
    now_ms: u64,
) -> Result<Vec<u8>, String> {
    if !matches!(topic.kind, MessageType::NCmd | MessageType::DCmd) {
        return Err("a {\"sparkplug\": ...} payload is a command: publish it to spBv1.0/<group>/NCMD/<node> or spBv1.0/<group>/DCMD/<node>/<device>".into());
    }
    let metrics = spec
        .get("metrics")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("sparkplug.metrics must be a non-empty array of {\"name\", \"value\"}")?;
    if spec.as_object().is_some_and(|o| o.len() != 1) {
        return Err(
            "sparkplug takes only \"metrics\" (the timestamp is set when it is sent)".into(),
        );
    }
    let mut out = vec![0x08];
    prost::encoding::encode_varint(now_ms, &mut out);
    for (i, m) in metrics.iter().enumerate() {
        let metric = one(m, names, now_ms).map_err(|e| format!("sparkplug.metrics[{i}]: {e}"))?;
        let body = metric.encode_to_vec();
        out.push(0x12);
        prost::encoding::encode_varint(body.len() as u64, &mut out);
        out.extend(body);
    }
    Ok(out)
}

fn one(m: &Value, names: Option<&Names>, now_ms: u64) -> Result<Metric, String> {
    let name = m
        .get("name")
        .and_then(Value::as_str)
        .ok_or("needs a \"name\"")?;
    let value = m.get("value").ok_or("needs a \"value\"")?;
    let given = match m.get("datatype") {
        None => None,
        Some(Value::String(s)) => Some(
            DataType::all()
                .iter()
                .copied()
                .find(|d| d.name().eq_ignore_ascii_case(s))
                .ok_or_else(|| format!("datatype {s:?} is not a Sparkplug datatype"))?,
        ),
        Some(_) => return Err("datatype must be a name such as \"Float\"".into()),
    };
    let declared = match names {
        Some(n) => Some(
            n.by_name(name)
                .and_then(DataType::from_code)
                .ok_or_else(|| format!("the birth declares no metric {name:?}"))?,
        ),
        None => None,
    };
    let dt = match (declared, given) {
        (Some(d), Some(g)) if d != g => {
            return Err(format!(
                "{name:?} is {} in its birth, not {}",
                d.name(),
                g.name()
            ))
        }
        (Some(d), _) | (None, Some(d)) => d,
        (None, None) => {
            return Err(format!(
                "the birth of this node/device has not been seen, so the datatype of {name:?} is unknown: give \"datatype\" (e.g. \"Boolean\"), or subscribe before the node's next birth"
            ))
        }
    };
    Ok(Metric {
        name: Some(name.to_string()),
        alias: names.and_then(|n| n.alias_of(name)),
        timestamp: Some(now_ms),
        datatype: Some(dt.code()),
        value: Some(value_of(dt, value)?),
        ..Default::default()
    })
}

/// A JSON value in the protobuf field of its datatype. Signed integers are
/// sign-extended into `int_value` as Tahu's encoder does.
fn value_of(dt: DataType, v: &Value) -> Result<MetricValue, String> {
    use DataType as D;
    let bad = || format!("{v} is not a {} value", dt.name());
    let int = |min: i64, max: i64| {
        v.as_i64()
            .filter(|x| (min..=max).contains(x))
            .ok_or_else(bad)
    };
    let uint = |max: u64| v.as_u64().filter(|x| *x <= max).ok_or_else(bad);
    Ok(match dt {
        D::Int8 => MetricValue::Int(int(i8::MIN.into(), i8::MAX.into())? as i32 as u32),
        D::Int16 => MetricValue::Int(int(i16::MIN.into(), i16::MAX.into())? as i32 as u32),
        D::Int32 => MetricValue::Int(int(i32::MIN.into(), i32::MAX.into())? as i32 as u32),
        D::Int64 => MetricValue::Long(int(i64::MIN, i64::MAX)? as u64),
        D::UInt8 => MetricValue::Int(uint(u8::MAX.into())? as u32),
        D::UInt16 => MetricValue::Int(uint(u16::MAX.into())? as u32),
        D::UInt32 => MetricValue::Int(uint(u32::MAX.into())? as u32),
        D::UInt64 | D::DateTime => MetricValue::Long(uint(u64::MAX)?),
        D::Float => MetricValue::Float(v.as_f64().ok_or_else(bad)? as f32),
        D::Double => MetricValue::Double(v.as_f64().ok_or_else(bad)?),
        D::Boolean => MetricValue::Boolean(v.as_bool().ok_or_else(bad)?),
        D::String | D::Text | D::Uuid => {
            MetricValue::String(v.as_str().ok_or_else(bad)?.to_string())
        }
        D::Bytes | D::File => MetricValue::Bytes(
            v.get("base64")
                .and_then(Value::as_str)
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .ok_or_else(|| format!("a {} value is {{\"base64\": \"...\"}}", dt.name()))?,
        ),
        _ => {
            return Err(format!(
                "commands with {} values are not supported; use a scalar, String or Bytes metric",
                dt.name()
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::births::Births;
    use super::*;
    use serde_json::json;

    fn birth() -> Names {
        let m = Metric {
            name: Some("Node Control/Rebirth".into()),
            alias: Some(4),
            datatype: Some(11),
            value: Some(MetricValue::Boolean(false)),
            ..Default::default()
        };
        let level = Metric {
            name: Some("Level".into()),
            datatype: Some(1),
            value: Some(MetricValue::Int(0)),
            ..Default::default()
        };
        Names::from_metrics([&m.encode_to_vec()[..], &level.encode_to_vec()[..]])
    }

    fn decode(bytes: &[u8]) -> Value {
        let t = Topic::parse("spBv1.0/g/NCMD/n").unwrap();
        let shown = super::super::show(&t, bytes, 1 << 16, &Births::default(), &|_| None).unwrap();
        serde_json::to_value(shown.sparkplug).unwrap()
    }

    #[test]
    fn encodes_in_the_declared_datatype() {
        let t = Topic::parse("spBv1.0/g/NCMD/n").unwrap();
        let names = birth();
        let spec = json!({"metrics": [{"name": "Node Control/Rebirth", "value": true}, {"name": "Level", "value": -2}]});
        let v = decode(&encode(&t, &spec, Some(&names), 42).unwrap());
        assert_eq!(v["timestamp"], 42);
        assert_eq!(
            v["metrics"][0],
            json!({"name": "Node Control/Rebirth", "alias": 4, "datatype": "Boolean", "value": true, "timestamp": 42})
        );
        assert_eq!(v["metrics"][1]["datatype"], "Int8");
        assert_eq!(v["metrics"][1]["value"], -2);
    }

    #[test]
    fn refuses_what_the_node_cannot_read() {
        let t = Topic::parse("spBv1.0/g/NCMD/n").unwrap();
        let names = birth();
        let err = |spec: Value, names: Option<&Names>| encode(&t, &spec, names, 1).unwrap_err();
        assert!(err(
            json!({"metrics": [{"name": "Nope", "value": 1}]}),
            Some(&names)
        )
        .contains("declares no metric"));
        assert!(err(
            json!({"metrics": [{"name": "Level", "value": 300}]}),
            Some(&names)
        )
        .contains("not a Int8"));
        assert!(err(
            json!({"metrics": [{"name": "Level", "value": 1, "datatype": "Float"}]}),
            Some(&names)
        )
        .contains("is Int8 in its birth"));
        assert!(err(json!({"metrics": [{"name": "X", "value": 1}]}), None)
            .contains("has not been seen"));
        assert!(err(json!({"metrics": []}), None).contains("non-empty"));
        let ok = encode(
            &t,
            &json!({"metrics": [{"name": "X", "value": 1.5, "datatype": "double"}]}),
            None,
            1,
        )
        .unwrap();
        assert_eq!(decode(&ok)["metrics"][0]["value"], 1.5);
        let data = Topic::parse("spBv1.0/g/NDATA/n").unwrap();
        assert!(encode(
            &data,
            &json!({"metrics": [{"name": "X", "value": 1}]}),
            None,
            1
        )
        .unwrap_err()
        .contains("NCMD"));
    }
}
