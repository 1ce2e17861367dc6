//! Live topics as MCP resources, end to end: subscribing to a topic resource
//! brings `notifications/resources/updated` when messages arrive (coalesced),
//! the topics list announces new topics, and unsubscribing stops both.

mod common;

use common::Server;
use serde_json::{json, Value};
use std::time::Duration;

fn notifications(s: &mut Server, method: &str, wait: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(m) = s.next_message(wait) {
        if m["method"] == json!(method) {
            out.push(m);
        }
    }
    out
}

#[test]
fn topic_resource_updates_and_list_changes() {
    let mut s = Server::embedded(&[]);
    let init = s.initialize();
    assert_eq!(
        init["result"]["capabilities"]["resources"],
        json!({"subscribe": true, "listChanged": true})
    );
    let uri = "mqtt://default/topic/live/sensor";
    assert_eq!(
        s.request("resources/subscribe", json!({"uri": uri}))["result"],
        json!({})
    );
    assert_eq!(
        s.request(
            "resources/subscribe",
            json!({"uri": "mqtt://default/topics"})
        )["result"],
        json!({})
    );
    // A burst of 20 publishes: notifications are coalesced, at least one arrives.
    for i in 0..20 {
        s.send(&json!({"jsonrpc":"2.0","id":format!("p{i}"),"method":"tools/call","params":{"name":"publish_message","arguments":{"topic":"live/sensor","payload":{"i":i}}}}));
    }
    for i in 0..20 {
        let r = s.recv_id(&json!(format!("p{i}")), Duration::from_secs(20));
        assert_eq!(r["result"]["isError"], json!(false), "{r}");
    }
    let updated = notifications(
        &mut s,
        "notifications/resources/updated",
        Duration::from_millis(2500),
    );
    let for_topic: Vec<&Value> = updated
        .iter()
        .filter(|n| n["params"]["uri"] == json!(uri))
        .collect();
    assert!(!for_topic.is_empty(), "no update for {uri}: {updated:?}");
    assert!(
        for_topic.len() < 20,
        "updates must be coalesced, got {}",
        for_topic.len()
    );
    // The resource now reads the history (concurrent publishes arrive in any order).
    let read = s.request("resources/read", json!({"uri": uri}));
    let text: Value =
        serde_json::from_str(read["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    let mut seen: Vec<u64> = text["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"]["json"]["i"].as_u64().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, (0..20).collect::<Vec<u64>>(), "{text}");
    assert_eq!(text["last"], text["history"][19]);
    // A new topic changes the list.
    s.call_ok(
        "publish_message",
        json!({"topic": "live/new-thing", "payload": "hello"}),
    );
    let changed = notifications(
        &mut s,
        "notifications/resources/list_changed",
        Duration::from_millis(2500),
    );
    assert!(!changed.is_empty(), "no list_changed after a new topic");
    let list = s.request("resources/list", json!({}));
    assert!(list["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["uri"] == json!("mqtt://default/topic/live/new-thing")));
    // Unsubscribed: silence.
    s.request("resources/unsubscribe", json!({"uri": uri}));
    s.request(
        "resources/unsubscribe",
        json!({"uri": "mqtt://default/topics"}),
    );
    s.call_ok(
        "publish_message",
        json!({"topic": "live/sensor", "payload": {"i": 99}}),
    );
    let after = notifications(
        &mut s,
        "notifications/resources/updated",
        Duration::from_millis(1500),
    );
    assert!(after.is_empty(), "updates after unsubscribe: {after:?}");
    let (st, _) = s.finish(Duration::from_secs(5));
    assert!(st.success());
}
