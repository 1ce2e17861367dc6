//! `test_connection`, `$` filters and the session tools against the
//! embedded broker and Mosquitto. Mosquitto offers `$SYS`; the embedded
//! rumqttd has none and drops a client that subscribes to a `$` filter, so
//! the server refuses such filters on it up front (a limitation of rumqttd,
//! not MQTT behaviour: on Mosquitto the same calls must work).

mod common;

use common::brokers::{error_text, unique, with_session, Target};
use serde_json::{json, Value};

on_both_brokers!(
    test_connection_measures_every_session,
    dollar_filters_work_where_the_broker_allows_them,
    sessions_open_list_and_close,
);

fn test_connection_measures_every_session(target: Target) {
    let Some(mut b) = target.start("test_connection_measures_every_session") else {
        return;
    };
    for (label, session) in b.sessions() {
        let s = session.as_deref();
        let protocol = b.protocol_of(s);
        let port = if protocol == "5" {
            b.v5_port
        } else {
            b.v4_port
        };
        let t = b.call_ok(
            "test_connection",
            with_session(json!({"sys_wait_ms": 1500}), s),
        );
        assert_eq!(t["reachable"], json!(true), "{label}: {t}");
        assert_eq!(t["state"], json!("connected"));
        assert_eq!(t["protocol_version"], json!(protocol));
        assert_eq!(t["broker_url"], json!(format!("mqtt://127.0.0.1:{port}")));
        assert!(t["round_trip_ms"].as_f64().unwrap() >= 0.0, "{t}");
        assert!(t["puback_ms"].as_f64().unwrap() >= 0.0, "{t}");
        assert!(t["test_topic"]
            .as_str()
            .unwrap()
            .starts_with("mqtt-mcp/test/"));
        assert_eq!(t["reconnects"], json!(0));
        if b.embedded() {
            eprintln!(
                "note: {label}: the embedded broker has no $SYS topics; $SYS figures skipped"
            );
            assert_eq!(t["sys"], Value::Null, "{t}");
            assert!(
                t["sys_note"].as_str().unwrap().contains("$SYS skipped"),
                "{t}"
            );
        } else {
            let sys = t["sys"]
                .as_object()
                .unwrap_or_else(|| panic!("no $SYS: {t}"));
            assert!(
                sys.get("$SYS/broker/version")
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.contains("mosquitto")),
                "{label}: {t}"
            );
            assert!(sys.keys().all(|k| k.starts_with("$SYS/")));
            assert_eq!(t["sys_note"], Value::Null, "{t}");
        }
        // Without $SYS: neither figures nor a note about them.
        let t = b.call_ok(
            "test_connection",
            with_session(json!({"include_sys": false}), s),
        );
        assert_eq!((&t["sys"], &t["sys_note"]), (&Value::Null, &Value::Null));
        assert_eq!(t["reachable"], json!(true));
    }
    // The probes left no subscriptions behind.
    assert_eq!(
        b.call_ok("list_subscriptions", json!({}))["subscriptions"],
        json!([])
    );
}

fn dollar_filters_work_where_the_broker_allows_them(target: Target) {
    let Some(mut b) = target.start("dollar_filters_work_where_the_broker_allows_them") else {
        return;
    };
    for (label, session) in b.sessions() {
        let s = session.as_deref();
        if b.embedded() {
            for (tool, args) in [
                ("subscribe", json!({"filter": "$SYS/#"})),
                (
                    "subscribe_and_collect",
                    json!({"filters": ["a/b", "$SYS/broker/uptime"], "duration_ms": 100}),
                ),
                ("list_topics", json!({"filter": "$SYS/#", "window_ms": 0})),
                ("get_retained", json!({"filter": "$SYS/#"})),
            ] {
                let r = b.call(tool, with_session(args, s));
                let text = error_text(&r);
                assert!(
                    text.contains("$ topics") && text.contains("ordinary topic"),
                    "{label} {tool}: {text}"
                );
            }
            // The session was not dropped for it, and still works.
            let list = b.call_ok("list_active_connections", json!({}));
            for sess in list["sessions"].as_array().unwrap() {
                assert_eq!(sess["state"], json!("connected"), "{sess}");
                assert_eq!(sess["reconnects"], json!(0), "{sess}");
            }
        } else {
            let r = b.call_ok(
                "subscribe",
                with_session(json!({"filter": "$SYS/broker/#"}), s),
            );
            assert_eq!(r["granted_qos"], json!([0]));
            let sub = r["subscription_id"].as_str().unwrap().to_string();
            let r = b.call_ok(
                "read_messages",
                with_session(json!({"subscription_id": sub, "wait_ms": 5000}), s),
            );
            let msgs = r["messages"].as_array().unwrap();
            assert!(!msgs.is_empty(), "{label}: {r}");
            assert!(
                msgs[0]["topic"]
                    .as_str()
                    .unwrap()
                    .starts_with("$SYS/broker/"),
                "{label}: {msgs:?}"
            );
            b.call_ok(
                "unsubscribe",
                with_session(json!({"subscription_id": sub}), s),
            );
            let c = b.call_ok(
                "subscribe_and_collect",
                with_session(
                    json!({"filter": "$SYS/broker/version", "duration_ms": 300}),
                    s,
                ),
            );
            let m = &c["messages"][0];
            assert_eq!(m["topic"], json!("$SYS/broker/version"), "{c}");
            assert!(m["payload"]["text"]
                .as_str()
                .unwrap()
                .starts_with("mosquitto"));
        }
        // `#` never matches $ topics (MQTT 4.7.2), on any broker.
        let base = unique("plain");
        b.call_ok(
            "publish_message",
            with_session(
                json!({"topic": format!("{base}/x"), "retain": true, "payload": 1}),
                s,
            ),
        );
        let l = b.call_ok(
            "list_topics",
            with_session(json!({"filter": "#", "window_ms": 300}), s),
        );
        let topics: Vec<&str> = l["topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["topic"].as_str().unwrap())
            .collect();
        assert!(topics.contains(&format!("{base}/x").as_str()), "{l}");
        assert!(
            topics.iter().all(|t| !t.starts_with('$')),
            "{label}: {topics:?}"
        );
    }
}

fn sessions_open_list_and_close(target: Target) {
    let Some(mut b) = target.start("sessions_open_list_and_close") else {
        return;
    };
    let (v4, v5) = (b.v4_port, b.v5_port);
    let list = b.call_ok("list_active_connections", json!({}));
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{list}");
    let d = &sessions[0];
    assert_eq!(d["session_id"], json!("default"));
    assert_eq!(d["is_default"], json!(true));
    assert_eq!(d["broker_url"], json!(format!("mqtt://127.0.0.1:{v5}")));
    assert_eq!(d["protocol_version"], json!("5"));
    assert_eq!(d["state"], json!("connected"));
    assert_eq!(d["expires_in_s"], Value::Null);
    assert_eq!(d["reconnects"], json!(0));
    assert_eq!(d["last_error"], Value::Null);

    // A URL with a client id, and fields with an explicit 3.1.1.
    let client_id = unique("my-client");
    let a = b.call_ok(
        "establish_connection",
        json!({"connection_string": format!("mqtt://127.0.0.1:{v5}/{client_id}")}),
    );
    assert_eq!(a["client_id"], json!(client_id));
    assert_eq!(a["protocol_version"], json!("5"));
    assert_eq!(a["fell_back_to_3_1_1"], json!(false));
    assert_eq!(a["session_present"], json!(false));
    assert_eq!(a["broker_url"], json!(format!("mqtt://127.0.0.1:{v5}")));
    let c = b.call_ok(
        "establish_connection",
        json!({"host": "127.0.0.1", "port": v4, "protocol_version": "3.1.1", "keep_alive": 10}),
    );
    assert_eq!(c["protocol_version"], json!("3.1.1"));
    assert!(c["client_id"].as_str().unwrap().starts_with("mqtt-mcp-"));
    // No version given: MQTT 5 where the listener speaks it, else 3.1.1
    // (the embedded broker's 3.1.1 listener refuses MQTT 5).
    let f = b.call_ok(
        "establish_connection",
        json!({"host": "127.0.0.1", "port": v4}),
    );
    let expect_fallback = b.embedded();
    assert_eq!(f["fell_back_to_3_1_1"], json!(expect_fallback), "{f}");
    assert_eq!(
        f["protocol_version"],
        json!(if expect_fallback { "3.1.1" } else { "5" })
    );

    let list = b.call_ok("list_active_connections", json!({}));
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 4, "{list}");
    for (opened, protocol) in [(&a, "5"), (&c, "3.1.1")] {
        let s = sessions
            .iter()
            .find(|s| s["session_id"] == opened["session_id"])
            .unwrap_or_else(|| panic!("{opened} not listed in {list}"));
        assert_eq!(s["protocol_version"], json!(protocol));
        assert_eq!(s["client_id"], opened["client_id"]);
        assert_eq!(s["state"], json!("connected"));
        assert_eq!(s["is_default"], json!(false));
        assert!(s["expires_in_s"].as_u64().unwrap() > 0, "{s}");
    }

    // Close: gone from the list, and unusable.
    let id = c["session_id"].as_str().unwrap().to_string();
    let r = b.call_ok("close_connection", json!({"session_id": id}));
    assert_eq!(r["closed"], json!(true));
    assert_eq!(r["session_id"], json!(id));
    assert_eq!(r["broker_url"], json!(format!("mqtt://127.0.0.1:{v4}")));
    let list = b.call_ok("list_active_connections", json!({}));
    assert!(list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["session_id"] != json!(id)));
    let r = b.call(
        "publish_message",
        json!({"session_id": id, "topic": "a/b", "payload": 1}),
    );
    error_text(&r);
    let r = b.call("close_connection", json!({"session_id": id}));
    error_text(&r);
    // The others still work.
    let t = b.call_ok(
        "test_connection",
        json!({"session_id": a["session_id"], "include_sys": false}),
    );
    assert_eq!(t["reachable"], json!(true));
}
