//! `publish_message` and `subscribe_and_collect` against the embedded broker
//! and Mosquitto, on the default session and on extra MQTT 5 and MQTT 3.1.1
//! sessions: what was published is what is collected (topic, decoded
//! payload, QoS, retain flag), sampling, and cancellation of a collect.

mod common;

use common::brokers::{error_text, poll, unique, with_session, Bench, Target};
use serde_json::{json, Value};
use std::time::Duration;

on_both_brokers!(
    publish_reports_what_the_broker_confirmed,
    retained_then_live_on_every_session,
    collect_while_publishing_keeps_every_message,
    collect_samples_beyond_max_messages,
    collect_of_nothing_explains_itself,
    cancelled_collect_answers_nothing_and_unsubscribes,
);

fn session_label(s: &Option<String>) -> Option<&str> {
    s.as_deref()
}

/// The messages of a result on `topic`.
fn on_topic<'a>(msgs: &'a Value, topic: &str) -> Vec<&'a Value> {
    msgs.as_array()
        .unwrap()
        .iter()
        .filter(|m| m["topic"] == json!(topic))
        .collect()
}

fn publish_reports_what_the_broker_confirmed(target: Target) {
    let Some(mut b) = target.start("publish_reports_what_the_broker_confirmed") else {
        return;
    };
    for (label, session) in b.sessions() {
        let s = session_label(&session);
        let protocol = b.protocol_of(s);
        let topic = format!("{}/t", unique("pub"));
        for qos in [0, 1, 2] {
            let r = b.call_ok(
                "publish_message",
                with_session(
                    json!({"topic": topic, "payload": {"n": qos}, "qos": qos}),
                    s,
                ),
            );
            let status = if qos == 0 { "sent" } else { "acknowledged" };
            assert_eq!(r["status"], json!(status), "{label} qos {qos}: {r}");
            assert_eq!(r["topic"], json!(topic));
            assert_eq!(r["qos"], json!(qos));
            assert_eq!(r["retain"], json!(false));
            assert_eq!(r["payload_bytes"], json!(r#"{"n":0}"#.len()));
            assert_eq!(r["protocol_version"], json!(protocol));
            assert_eq!(r["session_id"], json!(s.unwrap_or("default")), "{r}");
            match (protocol.as_str(), qos) {
                // 0x10 "no matching subscribers" is a success code too.
                ("5", 1 | 2) => assert!(
                    r["reason_code"] == json!(0) || r["reason_code"] == json!(16),
                    "{label}: {r}"
                ),
                _ => assert_eq!(r["reason_code"], Value::Null, "{label} qos {qos}: {r}"),
            }
        }
        // The default QoS is 1 and the default payload empty.
        let r = b.call_ok("publish_message", with_session(json!({"topic": topic}), s));
        assert_eq!(
            (&r["qos"], &r["status"], &r["payload_bytes"]),
            (&json!(1), &json!("acknowledged"), &json!(0)),
            "{r}"
        );
    }
}

fn retained_then_live_on_every_session(target: Target) {
    let Some(mut b) = target.start("retained_then_live_on_every_session") else {
        return;
    };
    for (label, session) in b.sessions() {
        let s = session_label(&session);
        let base = unique("rl");
        let state = json!({"on": true, "level": 42, "name": "lamp"});
        let r = b.call_ok(
            "publish_message",
            with_session(
                json!({"topic": format!("{base}/state"), "payload": state, "qos": 1, "retain": true}),
                s,
            ),
        );
        assert_eq!(r["retain"], json!(true));

        // A collect sees the retained message first, flagged retain.
        let c = b.call_ok(
            "subscribe_and_collect",
            with_session(
                json!({"filter": format!("{base}/#"), "qos": 1, "duration_ms": 300}),
                s,
            ),
        );
        let msgs = c["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 1, "{label}: {c}");
        let m = &msgs[0];
        assert_eq!(m["topic"], json!(format!("{base}/state")));
        assert_eq!(m["retain"], json!(true), "{label}: {m}");
        assert_eq!(m["qos"], json!(1), "{label}: {m}");
        assert_eq!(
            m["payload"],
            json!({"format": "json", "size": state.to_string().len(), "json": state, "truncated": false})
        );
        assert!(m["received_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(c["filters"], json!([format!("{base}/#")]));
        assert_eq!(c["granted_qos"], json!([1]));
        let st = &c["stats"];
        assert_eq!(
            (
                &st["received"],
                &st["returned"],
                &st["sampled"],
                &st["distinct_topics"]
            ),
            (&json!(1), &json!(1), &json!(false), &json!(1)),
            "{label}: {c}"
        );
        assert_eq!(st["dropped"], json!(0));
        assert_eq!(st["stopped_by"], json!("duration"));
        assert_eq!(c["note"], Value::Null);

        // A live message, published at QoS 2 while the collect waits for the
        // first message: it arrives at QoS 2, not retained.
        let live = format!("{base}/live/x");
        let id = b.send_call(
            "subscribe_and_collect",
            with_session(
                json!({"filter": format!("{base}/live/#"), "qos": 2, "stop_after_first": true, "duration_ms": 20000}),
                s,
            ),
        );
        let resp = poll("the first live message", 200, || {
            b.call_ok(
                "publish_message",
                with_session(
                    json!({"topic": live, "payload": "switched on", "qos": 2}),
                    s,
                ),
            );
            b.try_recv_id(&id, Duration::from_millis(100))
        });
        let c = common::Server::ok_of(&resp);
        assert_eq!(c["stats"]["stopped_by"], json!("first_message"), "{c}");
        assert_eq!(c["stats"]["returned"], json!(1), "{c}");
        let m = &c["messages"][0];
        assert_eq!(m["topic"], json!(live));
        assert_eq!(m["retain"], json!(false));
        assert_eq!(m["qos"], json!(2), "{label}: {m}");
        assert_eq!(
            m["payload"],
            json!({"format": "text", "size": 11, "text": "switched on", "truncated": false})
        );
    }
}

fn collect_while_publishing_keeps_every_message(target: Target) {
    let Some(mut b) = target.start("collect_while_publishing_keeps_every_message") else {
        return;
    };
    for (label, session) in b.sessions() {
        let s = session_label(&session);
        let base = unique("cw");
        let ready = format!("{base}/ready");
        let resp = b.while_listening(
            s,
            "subscribe_and_collect",
            json!({"filters": [format!("{base}/a/#"), format!("{base}/ready"), format!("{base}/+/z")], "qos": 1, "duration_ms": 1500, "max_messages": 1000}),
            &ready,
            |b: &mut Bench| {
                let sends = [
                    (format!("{base}/a/json"), json!({"t": 21.5, "ok": true}), 0, false),
                    (format!("{base}/a/text"), json!("hello world"), 1, false),
                    (format!("{base}/a/bin"), json!({"hex": "00ff10fe"}), 2, false),
                    // Retained, but delivered live: not flagged retain.
                    (format!("{base}/b/z"), json!([1, 2, 3]), 1, true),
                    (format!("{base}/c/y"), json!("not covered"), 1, false),
                ];
                for (topic, payload, qos, retain) in sends {
                    b.call_ok(
                        "publish_message",
                        with_session(
                            json!({"topic": topic, "payload": payload, "qos": qos, "retain": retain}),
                            s,
                        ),
                    );
                }
            },
        );
        let c = common::Server::ok_of(&resp);
        let msgs = &c["messages"];
        let one = |topic: &str| -> Value {
            let v = on_topic(msgs, &format!("{base}/{topic}"));
            assert_eq!(v.len(), 1, "{label}: {topic} in {c}");
            v[0].clone()
        };
        // MQTT delivers at min(publish QoS, granted QoS). rumqttd delivers at
        // the granted QoS instead (a QoS 0 publish arrives at QoS 1), so the
        // embedded broker is not held to it.
        let strict_qos = !b.embedded();
        let m = one("a/json");
        if strict_qos {
            assert_eq!(m["qos"], json!(0), "{label}: {m}");
        }
        assert_eq!(m["payload"]["json"], json!({"t": 21.5, "ok": true}));
        let m = one("a/text");
        assert_eq!(m["qos"], json!(1), "{label}: {m}");
        assert_eq!(m["payload"]["text"], json!("hello world"));
        let m = one("a/bin");
        // Granted QoS 1 caps the QoS 2 publish.
        assert_eq!(m["qos"], json!(1), "{label}: {m}");
        assert_eq!(
            m["payload"],
            json!({"format": "binary", "size": 4, "base64": "AP8Q/g==", "truncated": false})
        );
        let m = one("b/z");
        assert_eq!(m["retain"], json!(false), "{label}: a live delivery: {m}");
        assert_eq!(m["payload"]["json"], json!([1, 2, 3]));
        assert!(on_topic(msgs, &format!("{base}/c/y")).is_empty());
        assert!(msgs
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["retain"] == json!(false)));
        let n = msgs.as_array().unwrap().len();
        assert_eq!(c["stats"]["received"], json!(n));
        assert_eq!(c["stats"]["returned"], json!(n));
        assert_eq!(c["stats"]["distinct_topics"], json!(5), "{c}");
        assert_eq!(c["granted_qos"], json!([1, 1, 1]));
    }
}

fn collect_samples_beyond_max_messages(target: Target) {
    let Some(mut b) = target.start("collect_samples_beyond_max_messages") else {
        return;
    };
    let base = unique("sample");
    for i in 0..30 {
        b.call_ok(
            "publish_message",
            json!({"topic": format!("{base}/t{i:02}"), "payload": {"i": i}, "retain": true}),
        );
    }
    let c = b.call_ok(
        "subscribe_and_collect",
        json!({"filter": format!("{base}/#"), "duration_ms": 500, "max_messages": 5}),
    );
    let st = &c["stats"];
    assert_eq!(st["received"], json!(30), "{c}");
    assert_eq!(st["distinct_topics"], json!(30), "{c}");
    assert_eq!(st["sampled"], json!(true), "{c}");
    let returned = c["messages"].as_array().unwrap().len();
    assert_eq!(st["returned"], json!(returned));
    assert!((1..=5).contains(&returned), "{c}");
    assert!(c["note"].as_str().unwrap().contains("sample"), "{c}");
    for m in c["messages"].as_array().unwrap() {
        let t = m["topic"].as_str().unwrap();
        let i: u64 = t[t.len() - 2..].parse().unwrap();
        assert_eq!(m["payload"]["json"], json!({"i": i}), "{m}");
    }
}

fn collect_of_nothing_explains_itself(target: Target) {
    let Some(mut b) = target.start("collect_of_nothing_explains_itself") else {
        return;
    };
    let filter = format!("{}/#", unique("quiet"));
    let c = b.call_ok(
        "subscribe_and_collect",
        json!({"filter": filter, "duration_ms": 200}),
    );
    assert_eq!(c["messages"], json!([]));
    assert_eq!(c["stats"]["received"], json!(0));
    let note = c["note"].as_str().unwrap();
    assert!(
        note.contains("no message") && note.contains(&filter),
        "{note}"
    );
    // Neither filter nor filters: a tool error naming the arguments.
    let r = b.call("subscribe_and_collect", json!({"duration_ms": 200}));
    let text = error_text(&r);
    assert!(text.contains("Invalid arguments"), "{text}");
}

fn cancelled_collect_answers_nothing_and_unsubscribes(target: Target) {
    let Some(mut b) = target.start("cancelled_collect_answers_nothing_and_unsubscribes") else {
        return;
    };
    let base = unique("cancel");
    let id = b.send_call(
        "subscribe_and_collect",
        json!({"filter": format!("{base}/#"), "duration_ms": 120000}),
    );
    // Wait until the collect listens: its messages reach the session's history.
    poll("the collect's subscription", 200, || {
        b.call_ok(
            "publish_message",
            json!({"topic": format!("{base}/before"), "payload": "x"}),
        );
        let h = b.call_ok("topic_history", json!({"topic": format!("{base}/before")}));
        (!h["messages"].as_array().unwrap().is_empty()).then_some(())
    });
    b.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id, "reason": "test"}}));
    // The server keeps answering, and the collect's subscription goes away:
    // a probe published after it is never delivered to the session.
    let barrier = b.call_ok(
        "subscribe",
        json!({"filter": format!("{}/b", unique("barrier"))}),
    );
    let barrier_topic = barrier["filters"][0].as_str().unwrap().to_string();
    let sub = barrier["subscription_id"].as_str().unwrap().to_string();
    let mut cursor = 0;
    poll("the cancelled collect to unsubscribe", 100, || {
        let probe = format!("{base}/after/{}", unique("p"));
        b.call_ok(
            "publish_message",
            json!({"topic": probe, "payload": "late"}),
        );
        b.call_ok(
            "publish_message",
            json!({"topic": barrier_topic, "payload": "barrier"}),
        );
        let r = b.call_ok(
            "read_messages",
            json!({"subscription_id": sub, "since": cursor, "wait_ms": 2000}),
        );
        cursor = r["next_cursor"].as_u64().unwrap();
        let h = b.call_ok("topic_history", json!({"topic": probe}));
        h["messages"].as_array().unwrap().is_empty().then_some(())
    });
    assert_eq!(
        b.call_ok("list_subscriptions", json!({}))["subscriptions"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "only the barrier subscription"
    );
    let (status, rest) = b.finish(Duration::from_secs(5));
    assert!(status.success());
    assert!(
        rest.iter().all(|m| m.get("id") != Some(&id)),
        "the cancelled call was answered: {rest:?}"
    );
}
