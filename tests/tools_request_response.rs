//! `request_response` against the embedded broker and Mosquitto. The
//! responder is a second session of the same server: a background
//! subscription on the request topic, read with `read_messages`, answered
//! with `publish_message`. On MQTT 5 the reply must carry the request's
//! correlation data (a decoy with other correlation data is ignored); on
//! MQTT 3.1.1 the first non-retained message on response_topic is the reply.

mod common;

use common::brokers::{error_text, unique, with_session, Bench, Target};
use serde_json::{json, Value};
use std::time::Duration;

on_both_brokers!(
    mqtt5_reply_is_matched_by_correlation_data,
    mqtt5_with_given_response_topic_and_correlation_data,
    mqtt311_reply_is_the_first_message_on_response_topic,
    request_errors_say_what_to_fix,
);

/// Starts a responder session subscribed to `topic`; returns (session, subscription).
fn responder(b: &mut Bench, topic: &str) -> (String, String) {
    let r = b.session("5");
    let sub = b.call_ok(
        "subscribe",
        json!({"session_id": r, "filter": topic, "qos": 1}),
    );
    (r, sub["subscription_id"].as_str().unwrap().to_string())
}

/// The next request the responder received.
fn next_request(b: &mut Bench, r: &str, sub: &str) -> Value {
    let (msgs, _) = b.read_n(Some(r), sub, 0, 1);
    msgs[0].clone()
}

fn mqtt5_reply_is_matched_by_correlation_data(target: Target) {
    let Some(mut b) = target.start("mqtt5_reply_is_matched_by_correlation_data") else {
        return;
    };
    let base = unique("rr5");
    let req_topic = format!("{base}/req");
    let (r, sub) = responder(&mut b, &req_topic);
    let v5 = b.session("5");
    let mut cursor = 0;
    for requester in [None, Some(v5.as_str())] {
        let id = b.send_call(
            "request_response",
            with_session(
                json!({
                    "topic": req_topic,
                    "payload": {"cmd": "on"},
                    "content_type": "application/json",
                    "user_properties": {"origin": "test"},
                    "timeout_ms": 20000
                }),
                requester,
            ),
        );
        let (msgs, last) = b.read_n(Some(&r), &sub, cursor, 1);
        cursor = last["next_cursor"].as_u64().unwrap();
        let req = &msgs[0];
        assert_eq!(req["payload"]["json"], json!({"cmd": "on"}), "{req}");
        let props = &req["properties"];
        let reply_to = props["response_topic"]
            .as_str()
            .unwrap_or_else(|| panic!("no response_topic on the request: {req}"))
            .to_string();
        assert!(reply_to.starts_with("mqtt-mcp/reply/"), "{reply_to}");
        let corr = props["correlation_data_hex"]
            .as_str()
            .unwrap_or_else(|| panic!("no correlation data on the request: {req}"))
            .to_string();
        assert!(!corr.is_empty());
        assert_eq!(props["content_type"], json!("application/json"));
        assert_eq!(props["user_properties"], json!([["origin", "test"]]));

        // A reply for someone else first, then ours.
        b.call_ok(
            "publish_message",
            json!({"session_id": r, "topic": reply_to, "payload": "decoy", "correlation_data": {"hex": "00"}}),
        );
        b.call_ok(
            "publish_message",
            json!({
                "session_id": r,
                "topic": reply_to,
                "payload": {"ok": true},
                "correlation_data": {"hex": corr},
                "content_type": "application/json",
                "user_properties": {"status": "200"}
            }),
        );
        let res = common::Server::ok_of(&b.recv_id(&id, Duration::from_secs(30)));
        assert_eq!(res["matched_by"], json!("correlation_data"));
        assert_eq!(res["response_topic"], json!(reply_to));
        assert_eq!(res["correlation_data_hex"], json!(corr));
        assert_eq!(res["publish_status"], json!("acknowledged"), "{res}");
        let m = &res["response"];
        assert_eq!(m["topic"], json!(reply_to));
        assert_eq!(m["payload"]["json"], json!({"ok": true}), "{res}");
        assert_eq!(m["retain"], json!(false));
        assert_eq!(m["properties"]["correlation_data_hex"], json!(corr));
        assert_eq!(m["properties"]["content_type"], json!("application/json"));
        assert_eq!(
            m["properties"]["user_properties"],
            json!([["status", "200"]])
        );
    }
}

fn mqtt5_with_given_response_topic_and_correlation_data(target: Target) {
    let Some(mut b) = target.start("mqtt5_with_given_response_topic_and_correlation_data") else {
        return;
    };
    let base = unique("rr5g");
    let req_topic = format!("{base}/req");
    let reply_to = format!("{base}/reply");
    let (r, sub) = responder(&mut b, &req_topic);
    let id = b.send_call(
        "request_response",
        json!({"topic": req_topic, "payload": "ping", "response_topic": reply_to, "correlation_data": "req-1", "qos": 2, "timeout_ms": 20000}),
    );
    let req = next_request(&mut b, &r, &sub);
    assert_eq!(req["payload"]["text"], json!("ping"));
    assert_eq!(req["properties"]["response_topic"], json!(reply_to));
    // "req-1" as bytes.
    assert_eq!(
        req["properties"]["correlation_data_hex"],
        json!("7265712d31")
    );
    b.call_ok(
        "publish_message",
        json!({"session_id": r, "topic": reply_to, "payload": "pong", "correlation_data": "req-1"}),
    );
    let res = common::Server::ok_of(&b.recv_id(&id, Duration::from_secs(30)));
    assert_eq!(res["response_topic"], json!(reply_to));
    assert_eq!(res["correlation_data_hex"], json!("7265712d31"));
    assert_eq!(res["response"]["payload"]["text"], json!("pong"));
    assert_eq!(res["publish_status"], json!("acknowledged"));
}

fn mqtt311_reply_is_the_first_message_on_response_topic(target: Target) {
    let Some(mut b) = target.start("mqtt311_reply_is_the_first_message_on_response_topic") else {
        return;
    };
    let base = unique("rr4");
    let req_topic = format!("{base}/req");
    let reply_to = format!("{base}/reply");
    let (r, sub) = responder(&mut b, &req_topic);
    let v4 = b.session("3.1.1");
    // A stale retained reply is not the answer.
    b.call_ok(
        "publish_message",
        json!({"topic": reply_to, "payload": "stale", "retain": true}),
    );
    let id = b.send_call(
        "request_response",
        json!({"session_id": v4, "topic": req_topic, "payload": {"get": "state"}, "response_topic": reply_to, "timeout_ms": 20000}),
    );
    let req = next_request(&mut b, &r, &sub);
    assert_eq!(req["payload"]["json"], json!({"get": "state"}));
    assert!(
        req.get("properties").is_none(),
        "a 3.1.1 request has no properties: {req}"
    );
    b.call_ok(
        "publish_message",
        json!({"session_id": r, "topic": reply_to, "payload": {"state": "on"}}),
    );
    let res = common::Server::ok_of(&b.recv_id(&id, Duration::from_secs(30)));
    assert_eq!(res["matched_by"], json!("response_topic"));
    assert_eq!(res["response_topic"], json!(reply_to));
    assert_eq!(res["correlation_data_hex"], Value::Null);
    assert_eq!(
        res["response"]["payload"]["json"],
        json!({"state": "on"}),
        "{res}"
    );
    assert_eq!(res["response"]["retain"], json!(false));
    assert!(res["response"].get("properties").is_none(), "{res}");
    assert_eq!(res["publish_status"], json!("acknowledged"));
}

fn request_errors_say_what_to_fix(target: Target) {
    let Some(mut b) = target.start("request_errors_say_what_to_fix") else {
        return;
    };
    let v4 = b.session("3.1.1");
    let topic = format!("{}/req", unique("err"));
    // 3.1.1 needs response_topic, and has no correlation data.
    let r = b.call(
        "request_response",
        json!({"session_id": v4, "topic": topic, "timeout_ms": 300}),
    );
    assert!(error_text(&r).contains("response_topic"));
    let r = b.call(
        "request_response",
        json!({"session_id": v4, "topic": topic, "response_topic": "x/y", "correlation_data": "c", "timeout_ms": 300}),
    );
    assert!(error_text(&r).contains("MQTT 5"));
    // Nobody answers: the error says so and what to check.
    let r = b.call(
        "request_response",
        json!({"topic": topic, "payload": "anyone?", "timeout_ms": 300}),
    );
    let text = error_text(&r);
    assert!(
        text.contains("no reply") && text.contains("300 ms") && text.contains("correlation"),
        "{text}"
    );
    let r = b.call(
        "request_response",
        json!({"session_id": v4, "topic": topic, "response_topic": format!("{topic}/reply"), "timeout_ms": 300}),
    );
    assert!(error_text(&r).contains("no reply"));
    // Wildcards are not topics.
    let r = b.call(
        "request_response",
        json!({"topic": "a/+/b", "timeout_ms": 300}),
    );
    assert!(error_text(&r).contains("wildcard"));
    let r = b.call(
        "request_response",
        json!({"topic": topic, "response_topic": "a/#", "timeout_ms": 300}),
    );
    assert!(error_text(&r).contains("wildcard"));
    // The failed requests left no subscriptions behind.
    assert_eq!(
        b.call_ok("list_subscriptions", json!({}))["subscriptions"],
        json!([])
    );
}
