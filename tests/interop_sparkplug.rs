//! Sparkplug B against an independent implementation:
//! `tests/interop/sparkplug/edge_node.py` is an edge node with two devices
//! that pysparkplug (and, for DataSet, Template and PropertySets, Google's
//! protobuf runtime with the Tahu schema pysparkplug ships) encodes and
//! paho-mqtt publishes to the embedded broker: births, data carrying only
//! aliases, commands, deaths and a STATE. For each message it prints what a
//! decoder must show, read back from the bytes by Google's runtime; the
//! test reads the messages through `read_messages` and compares every
//! value exactly (floats by bit pattern, DateTime as RFC 3339 and ms).
//!
//! pysparkplug, protobuf and paho-mqtt, pinned in
//! `tests/interop/sparkplug/requirements.txt`, are installed into a venv
//! under `target/interop/sparkplug-venv`. Without python3 or PyPI the test
//! is skipped with a notice, unless `CI` is set.

mod common;

use common::brokers::{unique, Target};
use common::interop::{python_venv, run};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const TEST: &str = "interop_sparkplug";

#[test]
fn pysparkplug_edge_node_decodes_exactly() {
    let Some(python) = python_venv(
        TEST,
        "sparkplug-venv",
        "tests/interop/sparkplug/requirements.txt",
    ) else {
        return;
    };
    let Some(mut b) = Target::Embedded.start(TEST) else {
        return;
    };
    let group = unique("plant");
    let sub = b.call_ok("subscribe", json!({"filter": "spBv1.0/#", "qos": 1}));
    let sub = sub["subscription_id"].as_str().unwrap().to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/sparkplug/edge_node.py");
    let out = run(
        Command::new(&python)
            .arg(script)
            .arg(b.v4_port.to_string())
            .arg(&group)
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        Duration::from_secs(60),
    )
    .expect("run edge_node.py");
    assert!(out.success(), "edge_node.py failed: {}", out.describe());
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let sent = lines
        .last()
        .and_then(|l| l["done"].as_u64())
        .expect("a done line") as usize;
    let expected = &lines[..lines.len() - 1];
    assert_eq!(expected.len(), sent);

    let mut got: Vec<Value> = Vec::new();
    for _ in 0..50 {
        let r = b.call_ok(
            "read_messages",
            json!({"subscription_id": sub, "since": got.len(), "wait_ms": 200, "preview_bytes": 65536}),
        );
        got.extend(r["messages"].as_array().unwrap().iter().cloned());
        if got.len() >= sent {
            break;
        }
    }
    assert_eq!(got.len(), sent, "messages read: {got:#?}");

    let mut checked = 0;
    for want in expected {
        let topic = want["topic"].as_str().unwrap();
        let msg = got
            .iter()
            .find(|m| m["topic"] == topic)
            .unwrap_or_else(|| panic!("no message on {topic}"));
        let p = &msg["payload"];
        assert_eq!(p["format"], "sparkplug", "{topic}: {p:#}");
        assert!(p.get("decode_error").is_none(), "{topic}: {p:#}");
        let sp = &p["sparkplug"];
        if let Some(state) = want.get("state") {
            assert_eq!(sp["message_type"], "STATE");
            assert_eq!(sp["host"], "scada1");
            assert_eq!(sp["online"], state["online"]);
            assert_eq!(sp["timestamp"], state["timestamp"]);
            checked += 1;
            continue;
        }
        assert_eq!(sp["message_type"], topic.split('/').nth(2).unwrap());
        assert_eq!(sp["group"], group.as_str());
        assert_eq!(sp["node"], "edge1");
        assert_eq!(sp["timestamp"], want["timestamp"], "{topic}");
        if !want["seq"].is_null() {
            assert_eq!(sp["seq"], want["seq"], "{topic}");
        }
        assert!(sp.get("note").is_none(), "{topic}: {sp:#}");
        let metrics = sp["metrics"].as_array().unwrap();
        let wanted = want["metrics"].as_array().unwrap();
        assert_eq!(metrics.len(), wanted.len(), "{topic}");
        for (m, w) in metrics.iter().zip(wanted) {
            let what = format!("{topic} {}", w["name"]);
            assert_eq!(m["name"], w["name"], "{what}: {m}");
            assert_eq!(m["datatype"], w["datatype"], "{what}: {m}");
            if let Some(alias) = w.get("alias") {
                assert_eq!(&m["alias"], alias, "{what}");
            }
            assert!(m.get("error").is_none(), "{what}: {m}");
            same_value(&what, m, w);
            checked += 1;
        }
        if topic.ends_with("/DBIRTH/edge1/d2") {
            composites(metrics);
        }
    }
    // Every metric (31 datatypes twice, births, data, commands, deaths) and the STATE.
    let all: usize = expected
        .iter()
        .map(|w| w["metrics"].as_array().map_or(1, Vec::len))
        .sum();
    assert_eq!(checked, all);
    assert!(checked >= 70, "only {checked} values compared");
    // The aliased DDATA took its names from the DBIRTH.
    let ddata = got
        .iter()
        .find(|m| m["topic"].as_str().unwrap().contains("/DDATA/"))
        .unwrap();
    assert!(ddata["payload"]["sparkplug"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["name_from"] == "birth"));
}

/// Compares a shown metric with the script's expectation: `f32`/`f64` are
/// bit patterns (one or a list), `value` is exact, `millis` the raw ms.
fn same_value(what: &str, m: &Value, w: &Value) {
    let bits = |v: &Value, wide: bool| -> u64 {
        let f = v
            .as_f64()
            .unwrap_or_else(|| panic!("{what}: {v} is not a number"));
        if wide {
            f.to_bits()
        } else {
            u64::from((f as f32).to_bits())
        }
    };
    for (key, wide) in [("f32", false), ("f64", true)] {
        match w.get(key) {
            Some(Value::Array(want)) => {
                let shown = m["value"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{what}: {m}"));
                let shown: Vec<u64> = shown.iter().map(|v| bits(v, wide)).collect();
                let want: Vec<u64> = want.iter().map(|v| v.as_u64().unwrap()).collect();
                assert_eq!(shown, want, "{what}: {m}");
            }
            Some(want) => assert_eq!(
                bits(&m["value"], wide),
                want.as_u64().unwrap(),
                "{what}: {m}"
            ),
            None => {}
        }
    }
    if let Some(v) = w.get("value") {
        assert_eq!(&m["value"], v, "{what}");
    }
    if let Some(ms) = w.get("millis") {
        assert_eq!(&m["millis"], ms, "{what}");
    }
}

/// The DataSet, Template and PropertySets of device d2, as the script built them.
fn composites(metrics: &[Value]) {
    assert_eq!(
        metrics[0]["value"],
        json!({"columns": ["id", "temp", "label"], "types": ["Int32", "Float", "String"], "rows": [[-1, 21.5, "a"], [2, -0.25, "b"]], "num_of_columns": 3})
    );
    let t = &metrics[1]["value"];
    assert_eq!(t["template_ref"], "Motor");
    assert_eq!(t["version"], "v1");
    assert_eq!(t["is_definition"], false);
    assert_eq!(
        t["parameters"],
        json!([{"name": "poles", "type": "UInt8", "value": 4}])
    );
    assert_eq!(t["metrics"][0]["name"], "rpm");
    assert_eq!(t["metrics"][0]["value"], 1450.5);
    assert_eq!(metrics[2]["value"], 42);
    assert_eq!(
        metrics[2]["properties"],
        json!({"engUnit": "rpm", "limits": {"max": 3000.0}, "history": [{"on": true}]})
    );
}
