//! `get_topic_schema` (field paths, types, presence, min/max, examples,
//! formats) and `topic_history` (oldest first, field-level diffs) against
//! the embedded broker and Mosquitto, on MQTT 5 and MQTT 3.1.1 sessions.

mod common;

use common::brokers::{error_text, unique, with_session, Bench, Target};
use serde_json::{json, Value};

on_both_brokers!(
    schema_infers_fields_types_and_ranges,
    history_lists_messages_with_diffs,
);

fn field<'a>(s: &'a Value, path: &str) -> &'a Value {
    s["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == json!(path))
        .unwrap_or_else(|| panic!("no field {path} in {s}"))
}

fn schema_infers_fields_types_and_ranges(target: Target) {
    let Some(mut b) = target.start("schema_infers_fields_types_and_ranges") else {
        return;
    };
    for (label, session) in b.sessions() {
        let s = session.as_deref();
        let base = unique("schema");
        let payloads = [
            ("s1", json!({"t": 20.5, "unit": "C", "bat": 80})),
            ("s2", json!({"t": 19, "unit": "C"})),
            (
                "s3",
                json!({"t": -3.25, "unit": "F", "tags": ["a", "b"], "nested": {"ok": true}}),
            ),
            ("s4", json!("plain text")),
            ("s5", json!({"hex": "fffe"})),
            ("s6", Value::Null),
        ];
        for (t, p) in &payloads {
            // Retained, so the sample does not depend on timing; s6 is empty
            // (an empty retained payload deletes), so it is published live below.
            if !p.is_null() {
                b.call_ok(
                    "publish_message",
                    with_session(
                        json!({"topic": format!("{base}/{t}"), "payload": p, "retain": true}),
                        s,
                    ),
                );
            }
        }
        let sc = b.call_ok(
            "get_topic_schema",
            with_session(
                json!({"filter": format!("{base}/#"), "duration_ms": 300}),
                s,
            ),
        );
        assert_eq!(sc["filter"], json!(format!("{base}/#")));
        assert_eq!(sc["messages_sampled"], json!(5), "{label}: {sc}");
        assert_eq!(
            sc["formats"],
            json!({"json": 3, "text": 1, "binary": 1, "empty": 0})
        );
        assert_eq!(sc["non_json_share"], json!(0.4));
        assert_eq!(sc["topics"].as_array().unwrap().len(), 5);
        assert!(sc["topics"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["messages"] == json!(1)));
        assert_eq!(sc["text_examples"], json!(["plain text"]));

        let root = field(&sc, "$");
        assert_eq!(root["types"], json!({"object": 3}));
        assert_eq!(root["present_in"], json!(3));
        let t = field(&sc, "$.t");
        assert_eq!(t["types"], json!({"integer": 1, "number": 2}), "{t}");
        assert_eq!((&t["min"], &t["max"]), (&json!(-3.25), &json!(20.5)));
        assert_eq!((&t["present_in"], &t["presence"]), (&json!(3), &json!(1.0)));
        let ex = t["examples"].as_array().unwrap();
        assert!(ex.contains(&json!(19)) && ex.contains(&json!(20.5)), "{t}");
        let unit = field(&sc, "$.unit");
        assert_eq!(unit["types"], json!({"string": 3}));
        assert_eq!((&unit["min"], &unit["max"]), (&Value::Null, &Value::Null));
        let ex = unit["examples"].as_array().unwrap();
        assert_eq!(ex.len(), 2, "distinct examples: {unit}");
        assert!(ex.contains(&json!("C")) && ex.contains(&json!("F")));
        let bat = field(&sc, "$.bat");
        assert_eq!(bat["present_in"], json!(1));
        assert!((bat["presence"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!((&bat["min"], &bat["max"]), (&json!(80.0), &json!(80.0)));
        let tags = field(&sc, "$.tags[]");
        assert_eq!(tags["types"], json!({"string": 2}));
        assert_eq!(tags["present_in"], json!(1));
        assert_eq!(field(&sc, "$.tags")["types"], json!({"array": 1}));
        assert_eq!(field(&sc, "$.nested.ok")["types"], json!({"boolean": 1}));

        // max_messages caps the sample.
        let capped = b.call_ok(
            "get_topic_schema",
            with_session(
                json!({"filter": format!("{base}/#"), "duration_ms": 300, "max_messages": 2}),
                s,
            ),
        );
        assert_eq!(capped["messages_sampled"], json!(2), "{capped}");

        // Live messages count too, an empty one as "empty".
        let resp = b.while_listening(
            s,
            "get_topic_schema",
            json!({"filter": format!("{base}/live/#"), "duration_ms": 1500}),
            &format!("{base}/live/ready"),
            |b: &mut Bench| {
                b.call_ok(
                    "publish_message",
                    with_session(json!({"topic": format!("{base}/live/e")}), s),
                );
                b.call_ok(
                    "publish_message",
                    with_session(
                        json!({"topic": format!("{base}/live/j"), "payload": {"v": [1, 2.5]}}),
                        s,
                    ),
                );
            },
        );
        let live = common::Server::ok_of(&resp);
        assert_eq!(live["formats"]["empty"], json!(1), "{label}: {live}");
        assert_eq!(live["formats"]["json"], json!(1), "{label}: {live}");
        let v = field(&live, "$.v[]");
        assert_eq!(v["types"], json!({"integer": 1, "number": 1}));
        assert_eq!((&v["min"], &v["max"]), (&json!(1.0), &json!(2.5)));
    }
}

fn history_lists_messages_with_diffs(target: Target) {
    let Some(mut b) = target.start("history_lists_messages_with_diffs") else {
        return;
    };
    for (label, session) in b.sessions() {
        let s = session.as_deref();
        let topic = format!("{}/dev/state", unique("hist"));
        let sub = b.call_ok(
            "subscribe",
            with_session(json!({"filter": topic, "qos": 1}), s),
        );
        let sub = sub["subscription_id"].as_str().unwrap().to_string();
        let payloads = [
            json!({"a": 1, "b": "x", "deep": {"k": [1, 2]}}),
            json!({"a": 2, "b": "x", "deep": {"k": [1, 3]}}),
            json!({"a": 2, "c": true, "deep": {"k": [1, 3]}}),
            json!("offline"),
            json!("online"),
            json!("online"),
        ];
        for p in &payloads {
            b.call_ok(
                "publish_message",
                with_session(json!({"topic": topic, "payload": p, "qos": 1}), s),
            );
        }
        b.read_n(s, &sub, 0, payloads.len());
        let h = b.call_ok(
            "topic_history",
            with_session(json!({"topic": topic, "limit": 100}), s),
        );
        assert_eq!(h["topic"], json!(topic));
        assert_eq!(h["note"], Value::Null);
        let msgs = h["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 6, "{label}: {h}");
        assert_eq!(msgs[0]["payload"]["json"], payloads[0], "oldest first");
        assert_eq!(msgs[5]["payload"]["text"], json!("online"));
        assert!(msgs.iter().all(|m| m["topic"] == json!(topic)));
        let changes: Vec<(u64, String, String, Value, Value)> = h["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["index"].as_u64().unwrap(),
                    c["path"].as_str().unwrap().to_string(),
                    c["change"].as_str().unwrap().to_string(),
                    c.get("from").cloned().unwrap_or(Value::Null),
                    c.get("to").cloned().unwrap_or(Value::Null),
                )
            })
            .collect();
        let has = |index: u64, path: &str, change: &str, from: Value, to: Value| {
            assert!(
                changes.contains(&(index, path.into(), change.into(), from, to)),
                "{label}: missing change {index} {path} {change} in {changes:#?}"
            );
        };
        has(1, "$.a", "changed", json!(1), json!(2));
        has(1, "$.deep.k[1]", "changed", json!(2), json!(3));
        has(2, "$.b", "removed", json!("x"), Value::Null);
        has(2, "$.c", "added", Value::Null, json!(true));
        has(
            3,
            "$",
            "payload",
            json!(payloads[2].to_string()),
            json!("offline"),
        );
        has(4, "$", "payload", json!("offline"), json!("online"));
        // Identical payloads differ in nothing; unchanged fields are not listed.
        assert!(changes.iter().all(|c| c.0 != 5), "{changes:#?}");
        assert!(changes.iter().all(|c| c.1 != "$.deep.k[0]"), "{changes:#?}");
        assert_eq!(
            changes.iter().filter(|c| c.0 == 1).count(),
            2,
            "{changes:#?}"
        );

        // limit: the newest, still oldest first, diffs renumbered.
        let h = b.call_ok(
            "topic_history",
            with_session(json!({"topic": topic, "limit": 3}), s),
        );
        let texts: Vec<&Value> = h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["payload"]["text"])
            .collect();
        assert_eq!(texts, vec!["offline", "online", "online"], "{h}");
        assert_eq!(
            h["changes"],
            json!([{"index": 1, "path": "$", "change": "payload", "from": "offline", "to": "online"}])
        );
        // preview_bytes truncates what is shown, and says so.
        let h = b.call_ok(
            "topic_history",
            with_session(json!({"topic": topic, "limit": 6, "preview_bytes": 16}), s),
        );
        let first = payloads[0].to_string();
        assert_eq!(
            h["messages"][0]["payload"],
            json!({"format": "json", "size": first.len(), "text": first[..16], "truncated": true})
        );
        assert_eq!(h["messages"][5]["payload"]["truncated"], json!(false));

        // A topic never seen: nothing, and a note that says what to do.
        let h = b.call_ok(
            "topic_history",
            with_session(json!({"topic": format!("{topic}/never")}), s),
        );
        assert_eq!(h["messages"], json!([]));
        assert!(h["note"].as_str().unwrap().contains("subscribe"), "{h}");
        // Wildcards are not topics.
        let r = b.call(
            "topic_history",
            with_session(json!({"topic": format!("{topic}/#")}), s),
        );
        assert!(error_text(&r).contains("wildcard"));
    }
}
