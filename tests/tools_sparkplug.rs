//! Sparkplug B through the tools, against the embedded broker and
//! Mosquitto: a birth and an aliased DDATA decode in `get_retained`,
//! `topic_history` and `subscribe_and_collect` (the alias named from the
//! birth); garbage and random bytes on `spBv1.0` topics fall back to the
//! plain payload with `decode_error` and never take the server down.
//! (The decoder's own property tests are in `src/sparkplug/tests.rs`; the
//! independent encoder in `tests/interop_sparkplug.rs`.)

mod common;

use common::brokers::{error_text, unique, Target};
use mqtt_mcp::sparkplug::proto::{Metric, MetricValue};
use prost::Message as _;
use serde_json::{json, Value};

on_both_brokers!(
    births_name_aliases_everywhere,
    undecodable_bytes_fall_back,
    debug_device_reports_sparkplug_health,
    commands_take_their_datatypes_from_the_birth,
);

/// A `Payload` with `seq` and these metrics (its top level written by hand,
/// as the library reads it).
fn payload(seq: u8, metrics: &[Metric]) -> String {
    let mut out = vec![0x18, seq];
    for m in metrics {
        let body = m.encode_to_vec();
        out.push(0x12);
        prost::encoding::encode_varint(body.len() as u64, &mut out);
        out.extend(body);
    }
    out.iter().map(|b| format!("{b:02x}")).collect()
}

fn bd_seq(v: u64) -> Metric {
    Metric {
        name: Some("bdSeq".into()),
        datatype: Some(4),
        value: Some(MetricValue::Long(v)),
        ..Default::default()
    }
}

/// A payload without seq (NDEATH): `payload` less its leading seq field.
fn death(metrics: &[Metric]) -> String {
    payload(0, metrics).split_off(4)
}

fn publish_hex(b: &mut common::brokers::Bench, topic: &str, hex: &str, retain: bool) {
    b.call_ok(
        "publish_message",
        json!({"topic": topic, "payload": {"hex": hex}, "retain": retain, "qos": 1}),
    );
}

fn births_name_aliases_everywhere(target: Target) {
    let Some(mut b) = target.start("births_name_aliases_everywhere") else {
        return;
    };
    let group = unique("g");
    let birth = payload(
        0,
        &[Metric {
            name: Some("Pressure".into()),
            alias: Some(7),
            datatype: Some(9),
            value: Some(MetricValue::Float(1.5)),
            ..Default::default()
        }],
    );
    let data = payload(
        1,
        &[Metric {
            alias: Some(7),
            value: Some(MetricValue::Float(-0.1)),
            ..Default::default()
        }],
    );
    // Births are not retained in Sparkplug; here it is, so the test does not race.
    publish_hex(
        &mut b,
        &format!("spBv1.0/{group}/DBIRTH/n1/d1"),
        &birth,
        true,
    );
    publish_hex(&mut b, &format!("spBv1.0/{group}/DDATA/n1/d1"), &data, true);
    let r = b.call_ok(
        "get_retained",
        json!({"filter": format!("spBv1.0/{group}/#")}),
    );
    let msgs = r["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{r}");
    let ddata = msgs
        .iter()
        .find(|m| m["topic"].as_str().unwrap().contains("/DDATA/"))
        .unwrap();
    let sp = &ddata["payload"]["sparkplug"];
    assert_eq!(ddata["payload"]["format"], "sparkplug", "{ddata}");
    assert_eq!(sp["message_type"], "DDATA");
    assert_eq!(
        (&sp["group"], &sp["node"], &sp["device"]),
        (&json!(group), &json!("n1"), &json!("d1"))
    );
    assert_eq!(sp["seq"], 1);
    assert_eq!(
        sp["metrics"][0],
        json!({"name": "Pressure", "alias": 7, "name_from": "birth", "datatype": "Float", "value": -0.1})
    );
    // The session's history shows it the same way.
    let h = b.call_ok(
        "topic_history",
        json!({"topic": format!("spBv1.0/{group}/DDATA/n1/d1")}),
    );
    assert_eq!(
        h["messages"][0]["payload"]["sparkplug"]["metrics"][0]["name"],
        "Pressure"
    );
    // get_topic_schema works on the decoded values: metrics by name.
    let sc = b.call_ok(
        "get_topic_schema",
        json!({"filter": format!("spBv1.0/{group}/#"), "duration_ms": 300}),
    );
    assert_eq!(sc["formats"]["sparkplug"], 2, "{sc}");
    assert_eq!(sc["non_json_share"], 0.0);
    let pressure = sc["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "$.Pressure")
        .unwrap_or_else(|| panic!("no $.Pressure in {sc}"));
    assert_eq!(pressure["present_in"], 2);
    // A live DDATA of a device whose birth this session never saw: by alias, with a note.
    let other = unique("g");
    let id = b.send_call(
        "subscribe_and_collect",
        json!({"filter": format!("spBv1.0/{other}/#"), "duration_ms": 1500, "max_messages": 1}),
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    publish_hex(
        &mut b,
        &format!("spBv1.0/{other}/DDATA/n1/d1"),
        &data,
        false,
    );
    let r = common::Server::ok_of(&b.recv_id(&id, std::time::Duration::from_secs(30)));
    let sp = &r["messages"][0]["payload"]["sparkplug"];
    assert_eq!(sp["metrics"][0]["alias"], 7, "{r}");
    assert!(sp["metrics"][0].get("name").is_none());
    assert!(sp["note"]
        .as_str()
        .unwrap()
        .contains(&format!("spBv1.0/{other}/DBIRTH/n1/d1")));
}

fn undecodable_bytes_fall_back(target: Target) {
    let Some(mut b) = target.start("undecodable_bytes_fall_back") else {
        return;
    };
    let group = unique("g");
    // A fixed garbage payload, then random ones (xorshift, fixed seed).
    let mut payloads = vec![
        "ffffffffffffffffffff".to_string(),
        "0a".into(),
        "120a".into(),
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..30 {
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let len = (next() % 200) as usize + 1;
        payloads.push((0..len).map(|_| format!("{:02x}", next() as u8)).collect());
    }
    for (i, p) in payloads.iter().enumerate() {
        publish_hex(&mut b, &format!("spBv1.0/{group}/NDATA/n{i}"), p, true);
    }
    let r = b.call_ok(
        "get_retained",
        json!({"filter": format!("spBv1.0/{group}/#"), "limit": 100}),
    );
    let msgs = r["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), payloads.len(), "{r}");
    for m in msgs {
        let p = &m["payload"];
        match p["format"].as_str().unwrap() {
            // Random bytes can be a valid (if odd) Payload.
            "sparkplug" => assert!(p["sparkplug"]["metrics"].is_array(), "{m}"),
            "binary" | "text" | "json" => {
                assert!(
                    p["decode_error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{m}"
                )
            }
            other => panic!("unexpected format {other}: {m}"),
        }
    }
    let garbage = msgs
        .iter()
        .find(|m| m["topic"] == json!(format!("spBv1.0/{group}/NDATA/n0")))
        .unwrap();
    assert_eq!(garbage["payload"]["format"], "binary");
    assert_eq!(garbage["payload"]["base64"], "/////////////w==");
    // The server still answers.
    let alive: Value = b.call_ok("list_active_connections", json!({}));
    assert!(alive.is_object());
}

fn debug_device_reports_sparkplug_health(target: Target) {
    let Some(mut b) = target.start("debug_device_reports_sparkplug_health") else {
        return;
    };
    let group = unique("g");
    let node = unique("node");
    let id = b.send_call(
        "debug_device",
        json!({"device_id": node, "window_ms": 2500}),
    );
    std::thread::sleep(std::time::Duration::from_millis(700));
    let t = |kind: &str, dev: &str| format!("spBv1.0/{group}/{kind}/{node}{dev}");
    let temp = Metric {
        name: Some("Temp".into()),
        alias: Some(1),
        datatype: Some(10),
        value: Some(MetricValue::Double(20.0)),
        ..Default::default()
    };
    let aliased = Metric {
        alias: Some(1),
        value: Some(MetricValue::Double(21.5)),
        ..Default::default()
    };
    publish_hex(&mut b, &t("NBIRTH", ""), &payload(0, &[bd_seq(7)]), false);
    publish_hex(&mut b, &t("DBIRTH", "/d1"), &payload(1, &[temp]), false);
    // seq 3 after 1: a gap.
    publish_hex(
        &mut b,
        &t("DDATA", "/d1"),
        &payload(3, std::slice::from_ref(&aliased)),
        false,
    );
    // d2 never had a DBIRTH.
    publish_hex(&mut b, &t("DDATA", "/d2"), &payload(4, &[aliased]), false);
    // An NDEATH of an older session: stale, the node stays online.
    publish_hex(&mut b, &t("NDEATH", ""), &death(&[bd_seq(6)]), false);
    let r = common::Server::ok_of(&b.recv_id(&id, std::time::Duration::from_secs(30)));
    let sp = &r["sparkplug"];
    let n = &sp["nodes"][0];
    assert_eq!(
        (&n["group"], &n["node"]),
        (&json!(group), &json!(node)),
        "{r}"
    );
    assert_eq!(n["online"], true, "{n}");
    assert_eq!(n["bd_seq"], 7);
    assert_eq!(n["seq"], 4);
    let problems = n["problems"].to_string();
    assert!(problems.contains("sequence gap"), "{problems}");
    assert!(problems.contains("stale NDEATH"), "{problems}");
    let d1 = &n["devices"][0];
    assert_eq!(d1["device"], "d1");
    assert_eq!(d1["online"], true);
    assert_eq!(
        d1["metrics"]["Temp"],
        json!({"datatype": "Double", "value": 21.5})
    );
    let d2 = &n["devices"][1];
    assert_eq!(d2["birth_seen"], false);
    assert!(
        d2["problems"][0]
            .as_str()
            .unwrap()
            .contains("before any DBIRTH"),
        "{d2}"
    );
}

fn commands_take_their_datatypes_from_the_birth(target: Target) {
    let Some(mut b) = target.start("commands_take_their_datatypes_from_the_birth") else {
        return;
    };
    let group = unique("g");
    let sub = b.call_ok(
        "subscribe",
        json!({"filter": format!("spBv1.0/{group}/#"), "qos": 1}),
    );
    let sub = sub["subscription_id"].as_str().unwrap().to_string();
    let rebirth = Metric {
        name: Some("Node Control/Rebirth".into()),
        alias: Some(2),
        datatype: Some(11),
        value: Some(MetricValue::Boolean(false)),
        ..Default::default()
    };
    publish_hex(
        &mut b,
        &format!("spBv1.0/{group}/NBIRTH/n1"),
        &payload(0, &[bd_seq(1), rebirth]),
        false,
    );
    let ncmd = format!("spBv1.0/{group}/NCMD/n1");
    let cmd = json!({"sparkplug": {"metrics": [{"name": "Node Control/Rebirth", "value": true}]}});
    // The birth reaches the session's history before the command needs it.
    common::brokers::poll("the NBIRTH in the history", 100, || {
        let h = b.call_ok(
            "topic_history",
            json!({"topic": format!("spBv1.0/{group}/NBIRTH/n1")}),
        );
        (!h["messages"].as_array().unwrap().is_empty()).then_some(())
    });
    b.call_ok(
        "publish_message",
        json!({"topic": ncmd, "payload": cmd, "qos": 1}),
    );
    let r = b.call_ok(
        "read_messages",
        json!({"subscription_id": sub, "wait_ms": 2000, "limit": 10}),
    );
    let sent = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["topic"] == ncmd)
        .unwrap_or_else(|| panic!("no NCMD in {r}"));
    let m = &sent["payload"]["sparkplug"]["metrics"][0];
    assert_eq!(m["name"], "Node Control/Rebirth", "{sent}");
    assert_eq!(
        (&m["alias"], &m["datatype"], &m["value"]),
        (&json!(2), &json!("Boolean"), &json!(true))
    );
    assert!(sent["payload"]["sparkplug"]["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    // A metric the birth does not declare is refused before anything is sent.
    let bad = b.call(
        "publish_message",
        json!({"topic": ncmd, "payload": {"sparkplug": {"metrics": [{"name": "Reboot", "value": true}]}}}),
    );
    assert!(error_text(&bad).contains("declares no metric"), "{bad}");
}
