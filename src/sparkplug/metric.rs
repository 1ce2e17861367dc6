//! One Sparkplug metric as results show it (`$defs/sparkplug_metric`):
//! its name (from the birth when the message carries only the alias), its
//! datatype, and its value decoded by that datatype, including the
//! composite ones (DataSet, Template, PropertySet, PropertySetList).

use super::births::Names;
use super::datatype::DataType;
use super::proto::{
    DataSet, DataSetValueValue, MetaData, Metric, MetricValue, ParameterValue, PropertySet,
    PropertyValue, PropertyValueValue, Template,
};
use super::value::{by_datatype, raw_json, Budget, Raw, Shown, MAX_DEPTH};
use crate::tools::defs::SparkplugMetric;
use serde_json::{Map, Value};

/// A metric as results show it. `names` is the birth of the node or device
/// the message is about, when the session has seen it; `depth` counts the
/// templates this metric is nested in.
pub fn show(
    m: &Metric,
    names: Option<&Names>,
    budget: &mut Budget,
    depth: usize,
) -> SparkplugMetric {
    let mut name = m.name.clone();
    let mut name_from = None;
    let mut code = m.datatype;
    if let Some(names) = names {
        match (&name, m.alias) {
            (None, Some(alias)) => {
                if let Some(known) = names.by_alias(alias) {
                    name = Some(known.name.clone());
                    name_from = Some("birth".to_string());
                    code = code.or(known.datatype);
                }
            }
            (Some(n), _) if code.is_none() => code = names.by_name(n),
            _ => {}
        }
    }
    budget.take(name.as_ref().map_or(0, String::len) + 48);
    let mut error = None;
    let dt = match code.map(|c| (c, DataType::from_code(c))) {
        None => DataType::Unknown,
        Some((_, Some(dt))) => dt,
        Some((c, None)) => {
            error = Some(format!(
                "datatype number {c} is not one of the specification's (0-34)"
            ));
            DataType::Unknown
        }
    };
    let shown = if m.is_null == Some(true) {
        Shown::default()
    } else {
        match &m.value {
            None => Shown::default(),
            Some(v) => metric_value(dt, v, budget, depth, &mut error),
        }
    };
    let is_null = m.is_null == Some(true) || m.value.is_none();
    SparkplugMetric {
        name,
        alias: m.alias,
        name_from,
        datatype: dt.name().to_string(),
        value: (!is_null).then_some(shown.value),
        millis: shown.millis,
        timestamp: m.timestamp,
        is_historical: m.is_historical,
        is_transient: m.is_transient,
        is_null: m.is_null.or(is_null.then_some(true)),
        properties: m
            .properties
            .as_ref()
            .map(|p| property_set(p, budget, depth + 1, &mut error)),
        metadata: m.metadata.as_deref().map(metadata),
        error,
    }
}

fn metric_value(
    dt: DataType,
    v: &MetricValue,
    budget: &mut Budget,
    depth: usize,
    error: &mut Option<String>,
) -> Shown {
    let raw = match v {
        MetricValue::Bytes(b) => Raw::Bytes(b),
        MetricValue::DataSet(ds) => return dataset(ds, budget, error).into(),
        MetricValue::Template(t) => return template(t, budget, depth + 1, error).into(),
        scalar => match scalar.scalar() {
            Some(raw) => raw,
            None => return Shown::default(),
        },
    };
    scalar(dt, raw, budget, error)
}

/// A scalar by its datatype; on a mismatch the raw field, and the first error kept.
fn scalar(dt: DataType, raw: Raw<'_>, budget: &mut Budget, error: &mut Option<String>) -> Shown {
    by_datatype(dt, raw, budget).unwrap_or_else(|e| {
        error.get_or_insert(e);
        raw_json(raw, budget).into()
    })
}

fn dataset(ds: &DataSet, budget: &mut Budget, error: &mut Option<String>) -> Value {
    let types: Vec<Option<DataType>> = ds.types.iter().map(|t| DataType::from_code(*t)).collect();
    let mut rows = Vec::new();
    for row in &ds.rows {
        if !budget.take(2) {
            break;
        }
        let cells: Vec<Value> = row
            .elements
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let dt = types.get(i).copied().flatten().unwrap_or(DataType::Unknown);
                let Some(raw) = cell.value.as_ref().and_then(DataSetValueValue::scalar) else {
                    return Value::Null;
                };
                budget.take(4);
                scalar(dt, raw, budget, error).value
            })
            .collect();
        rows.push(Value::Array(cells));
    }
    budget.take(ds.columns.iter().map(|c| c.len() + 16).sum());
    serde_json::json!({
        "columns": ds.columns,
        "types": ds.types.iter().map(|t| DataType::from_code(*t).map_or("Unknown", DataType::name)).collect::<Vec<_>>(),
        "rows": rows,
        "num_of_columns": ds.num_of_columns,
    })
}

fn template(t: &Template, budget: &mut Budget, depth: usize, error: &mut Option<String>) -> Value {
    if depth > MAX_DEPTH {
        error.get_or_insert_with(|| {
            format!("templates nested deeper than {MAX_DEPTH} are not shown")
        });
        return Value::Null;
    }
    let parameters: Vec<Value> = t
        .parameters
        .iter()
        .map(|p| {
            let dt = p
                .r#type
                .and_then(DataType::from_code)
                .unwrap_or(DataType::Unknown);
            let value = match p.value.as_ref().and_then(ParameterValue::scalar) {
                None => Value::Null,
                Some(raw) => scalar(dt, raw, budget, error).value,
            };
            serde_json::json!({ "name": p.name, "type": dt.name(), "value": value })
        })
        .collect();
    let mut metrics = Vec::new();
    for m in &t.metrics {
        if budget.spent() {
            budget.cut = true;
            break;
        }
        let shown = show(m, None, budget, depth);
        metrics.push(serde_json::to_value(shown).unwrap_or(Value::Null));
    }
    serde_json::json!({
        "template_ref": t.template_ref,
        "version": t.version,
        "is_definition": t.is_definition,
        "parameters": parameters,
        "metrics": metrics,
    })
}

fn property_set(
    p: &PropertySet,
    budget: &mut Budget,
    depth: usize,
    error: &mut Option<String>,
) -> Value {
    if depth > MAX_DEPTH {
        error.get_or_insert_with(|| {
            format!("property sets nested deeper than {MAX_DEPTH} are not shown")
        });
        return Value::Null;
    }
    let mut out = Map::new();
    for (key, value) in p.keys.iter().zip(&p.values) {
        if !budget.take(key.len() + 8) {
            break;
        }
        out.insert(key.clone(), property_value(value, budget, depth, error));
    }
    Value::Object(out)
}

fn property_value(
    v: &PropertyValue,
    budget: &mut Budget,
    depth: usize,
    error: &mut Option<String>,
) -> Value {
    if v.is_null == Some(true) {
        return Value::Null;
    }
    let dt = v
        .r#type
        .and_then(DataType::from_code)
        .unwrap_or(DataType::Unknown);
    let raw = match &v.value {
        None => return Value::Null,
        Some(PropertyValueValue::PropertySet(set)) => {
            return property_set(set, budget, depth + 1, error)
        }
        Some(PropertyValueValue::PropertySetList(list)) => {
            return Value::Array(
                list.propertyset
                    .iter()
                    .map(|set| property_set(set, budget, depth + 1, error))
                    .collect(),
            )
        }
        Some(other) => match other.scalar() {
            Some(raw) => raw,
            None => return Value::Null,
        },
    };
    scalar(dt, raw, budget, error).value
}

/// MetaData as sent; its strings cut to 256 bytes each (they are labels).
fn metadata(m: &MetaData) -> Value {
    let text = |s: &Option<String>| {
        s.as_deref()
            .map(|s| Value::String(crate::payload::truncate_str(s, 256).to_string()))
    };
    let mut out = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            out.insert(k.to_string(), v);
        }
    };
    put("is_multi_part", m.is_multi_part.map(Value::Bool));
    put("content_type", text(&m.content_type));
    put("size", m.size.map(Value::from));
    put("seq", m.seq.map(Value::from));
    put("file_name", text(&m.file_name));
    put("file_type", text(&m.file_type));
    put("md5", text(&m.md5));
    put("description", text(&m.description));
    Value::Object(out)
}
