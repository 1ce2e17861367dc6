//! Payloads and topics at the edges, against the embedded broker and
//! Mosquitto: a 10 MB binary payload (published through the server and by an
//! independent client), invalid UTF-8, empty payloads, truncation flags;
//! MQTT 5 properties round-trip between MQTT 5 sessions, are absent on MQTT
//! 3.1.1 sessions and refused when publishing from one; invalid topics and
//! filters are tool errors that say what is wrong.

mod common;

use base64::Engine as _;
use common::brokers::{error_text, unique, with_session, Bench, RawClient, Target};
use serde_json::{json, Value};

on_both_brokers!(
    ten_megabytes_of_binary_arrive_whole,
    odd_payloads_decode_without_error,
    mqtt5_properties_round_trip,
    mqtt5_fields_on_a_311_session_are_refused,
    invalid_topics_and_filters_are_explained,
);

const TEN_MB: usize = 10 * 1024 * 1024;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Subscribes `filter` in every given session; returns (session, subscription) pairs.
fn subscribe_all(
    b: &mut Bench,
    sessions: &[(&'static str, Option<String>)],
    filter: &str,
    extra: Value,
) -> Vec<(Option<String>, String)> {
    sessions
        .iter()
        .map(|(_, s)| {
            let mut args = json!({"filter": filter, "qos": 1});
            for (k, v) in extra.as_object().unwrap() {
                args[k] = v.clone();
            }
            let r = b.call_ok("subscribe", with_session(args, s.as_deref()));
            (
                s.clone(),
                r["subscription_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn ten_megabytes_of_binary_arrive_whole(target: Target) {
    let Some(mut b) = target.start_with(
        "ten_megabytes_of_binary_arrive_whole",
        &["--max-line-bytes", "33554432"],
    ) else {
        return;
    };
    let v4 = b.session("3.1.1");
    let sessions = vec![("default", None), ("3.1.1", Some(v4))];
    let topic = format!("{}/blob", unique("big"));
    let subs = subscribe_all(
        &mut b,
        &sessions,
        &topic,
        json!({"buffer_bytes": 64 * 1024 * 1024}),
    );
    // Not UTF-8 from the first byte on.
    let blob: Vec<u8> = (0..TEN_MB)
        .map(|i| if i % 3 == 0 { 0xff } else { (i % 251) as u8 })
        .collect();
    let r = b.call_ok(
        "publish_message",
        json!({"topic": topic, "payload": {"base64": B64.encode(&blob)}, "qos": 1}),
    );
    assert_eq!(r["status"], json!("acknowledged"), "{r}");
    assert_eq!(r["payload_bytes"], json!(TEN_MB));
    // And the same size from a client that is not the server.
    let mut raw = RawClient::connect(b.v4_port);
    let mut other = blob.clone();
    other[1] = 0x00;
    raw.publish(&topic, &other, false);

    for (s, sub) in &subs {
        let s = s.as_deref();
        let (msgs, _) = b.read_n(s, sub, 0, 2);
        for (m, bytes) in msgs.iter().zip([&blob, &other]) {
            let p = &m["payload"];
            assert_eq!(p["format"], json!("binary"), "{s:?}");
            assert_eq!(p["size"], json!(TEN_MB));
            assert_eq!(p["truncated"], json!(true));
            assert_eq!(p["base64"], json!(B64.encode(&bytes[..2048])));
        }
        // With the largest preview, the first MiB comes back exactly.
        let r = b.call_ok(
            "read_messages",
            with_session(
                json!({"subscription_id": sub, "limit": 1, "preview_bytes": 1048576}),
                s,
            ),
        );
        assert_eq!(
            r["messages"][0]["payload"]["base64"],
            json!(B64.encode(&blob[..1048576]))
        );
        let l = b.call_ok("list_subscriptions", with_session(json!({}), s));
        let mine = l["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["subscription_id"] == json!(sub))
            .unwrap()
            .clone();
        assert_eq!(mine["buffered_bytes"], json!(2 * TEN_MB), "{mine}");
    }
    // The server is still responsive and its line limit still holds.
    b.call_ok("list_active_connections", json!({}));
}

fn odd_payloads_decode_without_error(target: Target) {
    let Some(mut b) = target.start("odd_payloads_decode_without_error") else {
        return;
    };
    let sessions = b.sessions();
    let base = unique("odd");
    let subs = subscribe_all(&mut b, &sessions, &format!("{base}/#"), json!({}));
    let long_text = "é".repeat(100); // 200 bytes
    let long_json = json!({"k": "v".repeat(100)});
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "bad_utf8",
            json!({"hex": "c328ff00"}),
            json!({"format": "binary", "size": 4, "base64": "wyj/AA==", "truncated": false}),
        ),
        (
            "empty",
            Value::Null,
            json!({"format": "empty", "size": 0, "text": "", "truncated": false}),
        ),
        (
            "empty_string",
            json!(""),
            json!({"format": "empty", "size": 0, "text": "", "truncated": false}),
        ),
        (
            // 16 bytes of preview end on a char boundary: 8 é.
            "long_text",
            json!(long_text),
            json!({"format": "text", "size": 200, "text": "é".repeat(8), "truncated": true}),
        ),
        (
            "long_json",
            long_json.clone(),
            json!({"format": "json", "size": long_json.to_string().len(), "text": long_json.to_string()[..16], "truncated": true}),
        ),
        (
            "number",
            json!(-1.5e3),
            json!({"format": "json", "size": 7, "json": -1500.0, "truncated": false}),
        ),
        (
            "nul_text",
            json!("a\u{0}b"),
            json!({"format": "text", "size": 3, "text": "a\u{0}b", "truncated": false}),
        ),
    ];
    for (name, payload, _) in &cases {
        let mut args = json!({"topic": format!("{base}/{name}"), "qos": 1});
        if !payload.is_null() {
            args["payload"] = payload.clone();
        }
        b.call_ok("publish_message", args);
    }
    for (s, sub) in &subs {
        let s = s.as_deref();
        let (msgs, _) = b.read_n(s, sub, 0, cases.len());
        let r = b.call_ok(
            "read_messages",
            with_session(json!({"subscription_id": sub, "preview_bytes": 16}), s),
        );
        assert_eq!(r["messages"].as_array().unwrap().len(), cases.len());
        for (name, _, expected) in &cases {
            let topic = json!(format!("{base}/{name}"));
            let m = r["messages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["topic"] == topic)
                .unwrap_or_else(|| panic!("{name} missing in {r}"));
            assert_eq!(&m["payload"], expected, "{s:?} {name}");
        }
        // With the default preview nothing is cut.
        let long = msgs
            .iter()
            .find(|m| m["topic"] == json!(format!("{base}/long_text")))
            .unwrap();
        assert_eq!(long["payload"]["text"], json!(long_text));
        assert_eq!(long["payload"]["truncated"], json!(false));
    }
    // The same through a collect of retained messages: an empty retained
    // payload is a deletion, so only the others.
    let rbase = unique("oddret");
    b.call_ok(
        "publish_message",
        json!({"topic": format!("{rbase}/bin"), "payload": {"base64": "gICA"}, "retain": true}),
    );
    let c = b.call_ok(
        "subscribe_and_collect",
        json!({"filter": format!("{rbase}/#"), "duration_ms": 300, "preview_bytes": 16}),
    );
    assert_eq!(
        c["messages"][0]["payload"],
        json!({"format": "binary", "size": 3, "base64": "gICA", "truncated": false})
    );
}

fn mqtt5_properties_round_trip(target: Target) {
    let Some(mut b) = target.start("mqtt5_properties_round_trip") else {
        return;
    };
    let mut sessions = b.sessions();
    if b.embedded() {
        // rumqttd's 3.1.1 listener panics when it forwards a message with
        // MQTT 5 properties (see embedded_311_listener_survives_mqtt5_properties).
        sessions.retain(|(label, _)| *label != "3.1.1");
    }
    let base = unique("props");
    let subs = subscribe_all(&mut b, &sessions, &format!("{base}/#"), json!({}));
    let (_, v5) = &sessions[1];
    for (publisher, topic) in [(None, "from-default"), (v5.clone(), "from-v5")] {
        let r = b.call_ok(
            "publish_message",
            with_session(
                json!({
                    "topic": format!("{base}/{topic}"),
                    "payload": {"on": true},
                    "content_type": "application/json",
                    "payload_format_indicator": 1,
                    "message_expiry_interval": 3600,
                    "response_topic": format!("{base}/reply"),
                    "correlation_data": {"hex": "cafe01"},
                    "user_properties": {"a": "1", "b": "two"}
                }),
                publisher.as_deref(),
            ),
        );
        assert_eq!(r["protocol_version"], json!("5"));
    }
    // And a message without any property.
    b.call_ok(
        "publish_message",
        json!({"topic": format!("{base}/plain"), "payload": "x"}),
    );
    for ((label, _), (s, sub)) in sessions.iter().zip(&subs) {
        let s = s.as_deref();
        let (msgs, _) = b.read_n(s, sub, 0, 3);
        for m in &msgs {
            let plain = m["topic"] == json!(format!("{base}/plain"));
            if plain {
                assert_eq!(m["payload"]["text"], json!("x"));
            } else {
                assert_eq!(m["payload"]["json"], json!({"on": true}), "{m}");
            }
            if *label == "3.1.1" || plain {
                assert!(m.get("properties").is_none(), "{label}: {m}");
                continue;
            }
            let p = &m["properties"];
            assert_eq!(p["content_type"], json!("application/json"), "{label}: {m}");
            assert_eq!(p["payload_format_indicator"], json!(1));
            let expiry = p["message_expiry_interval"].as_u64().unwrap();
            assert!((3000..=3600).contains(&expiry), "the remaining expiry: {m}");
            assert_eq!(p["response_topic"], json!(format!("{base}/reply")));
            assert_eq!(p["correlation_data_hex"], json!("cafe01"));
            assert_eq!(p["user_properties"], json!([["a", "1"], ["b", "two"]]));
        }
    }
}

fn mqtt5_fields_on_a_311_session_are_refused(target: Target) {
    let Some(mut b) = target.start("mqtt5_fields_on_a_311_session_are_refused") else {
        return;
    };
    let v4 = b.session("3.1.1");
    let topic = format!("{}/t", unique("v5only"));
    for (field, value) in [
        ("content_type", json!("text/plain")),
        ("payload_format_indicator", json!(1)),
        ("message_expiry_interval", json!(60)),
        ("response_topic", json!("a/b")),
        ("correlation_data", json!("c")),
        ("user_properties", json!({"k": "v"})),
    ] {
        let mut args = json!({"session_id": v4, "topic": topic, "payload": "x"});
        args[field] = value;
        let r = b.call("publish_message", args);
        let text = error_text(&r);
        assert!(
            text.contains("MQTT 5") && text.contains(field),
            "{field}: {text}"
        );
    }
    // Nothing was published.
    let h = b.call_ok("topic_history", json!({"session_id": v4, "topic": topic}));
    assert_eq!(h["messages"], json!([]));
}

fn invalid_topics_and_filters_are_explained(target: Target) {
    let Some(mut b) = target.start("invalid_topics_and_filters_are_explained") else {
        return;
    };
    let too_long_chars = "a".repeat(70_000);
    // 35,000 characters, 70,000 bytes: within the schema's length, over MQTT's.
    let too_long_bytes = "é".repeat(35_000);
    let topics: Vec<(&str, String, &[&str])> = vec![
        ("plus", "a/+/b".into(), &["wildcard"]),
        ("hash", "a/#".into(), &["wildcard"]),
        ("lone hash", "#".into(), &["wildcard"]),
        ("nul", "a/\u{0}/b".into(), &["NUL"]),
        ("70,000 chars", too_long_chars.clone(), &["/topic", "65535"]),
        (
            "70,000 bytes",
            too_long_bytes.clone(),
            &["70000 bytes", "65535"],
        ),
        ("empty", String::new(), &["/topic"]),
    ];
    for (label, topic, words) in &topics {
        let r = b.call("publish_message", json!({"topic": topic, "payload": "x"}));
        let text = error_text(&r);
        for w in *words {
            assert!(text.contains(w), "{label}: {w:?} not in {text}");
        }
    }
    let filters: Vec<(&str, String, &[&str])> = vec![
        ("hash inside", "a/#/b".into(), &["misplaced wildcard"]),
        ("hash glued", "a/b#".into(), &["misplaced wildcard"]),
        ("plus glued", "a/b+/c".into(), &["misplaced wildcard"]),
        ("nul", "a/\u{0}".into(), &["NUL"]),
        ("70,000 bytes", too_long_bytes, &["70000 bytes", "65535"]),
        ("empty", String::new(), &["/filter"]),
        ("share without filter", "$share/group".into(), &["$share"]),
    ];
    for (label, filter, words) in &filters {
        for (tool, args) in [
            ("subscribe", json!({"filter": filter})),
            (
                "subscribe_and_collect",
                json!({"filter": filter, "duration_ms": 100}),
            ),
            ("list_topics", json!({"filter": filter, "window_ms": 0})),
            ("get_retained", json!({"filter": filter})),
            ("clear_retained", json!({"filter": filter})),
            (
                "get_topic_schema",
                json!({"filter": filter, "duration_ms": 100}),
            ),
        ] {
            let r = b.call(tool, args);
            let text = error_text(&r);
            for w in *words {
                assert!(text.contains(w), "{tool} {label}: {w:?} not in {text}");
            }
        }
    }
    // One bad filter among good ones spoils the call, and names the culprit.
    let r = b.call(
        "subscribe",
        json!({"filters": ["ok/#", "bad/#/x"], "qos": 1}),
    );
    assert!(error_text(&r).contains("bad/#/x"));
    // None of it subscribed anything or hurt the session.
    assert_eq!(
        b.call_ok("list_subscriptions", json!({}))["subscriptions"],
        json!([])
    );
    let t = b.call_ok("test_connection", json!({"include_sys": false}));
    assert_eq!(t["reachable"], json!(true));
    assert_eq!(t["reconnects"], json!(0));
}

/// The embedded rumqttd's 3.1.1 listener panics when it forwards a message
/// with MQTT 5 properties (an `unreachable!()` in its v4 writer), dropping every
/// 3.1.1 client. The server refuses such a publish while one of its own 3.1.1
/// sessions subscribes to the topic, says why, and the listener keeps serving.
#[test]
fn embedded_311_listener_is_protected_from_mqtt5_properties() {
    let mut b = Target::Embedded
        .start("embedded_311_listener_is_protected_from_mqtt5_properties")
        .unwrap();
    let v4 = b.session("3.1.1");
    let topic = format!("{}/t", unique("v4props"));
    let sub = b.call_ok(
        "subscribe",
        json!({"session_id": v4, "filter": topic, "qos": 1}),
    );
    let sub = sub["subscription_id"].as_str().unwrap().to_string();
    let refused = b.call(
        "publish_message",
        json!({"topic": topic, "payload": "x", "user_properties": {"a": "1"}}),
    );
    assert_eq!(refused["isError"], json!(true), "{refused}");
    assert!(error_text(&refused).contains("3.1.1"), "{refused}");
    // Without MQTT 5 fields the message goes through to the 3.1.1 subscriber.
    b.call_ok("publish_message", json!({"topic": topic, "payload": "x"}));
    let r = b.call_ok(
        "read_messages",
        json!({"session_id": v4, "subscription_id": sub, "wait_ms": 3000}),
    );
    assert_eq!(r["messages"].as_array().unwrap().len(), 1, "{r}");
    let list = b.call_ok("list_active_connections", json!({}));
    assert!(
        list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == json!("connected")),
        "{list}"
    );
    b.session("3.1.1");
}
