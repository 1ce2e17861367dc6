//! MCP 2026-07-28 without a handshake: `subscriptions/listen` acknowledges
//! first, tags every notification with the listen's id, sends no answer when
//! the client cancels it, and is torn down with `notifications/cancelled`
//! when the server shuts down. Log notifications never reach a client that
//! did not send `initialize`.

mod common;

use common::Server;
use serde_json::{json, Value};
use std::time::Duration;

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

const SUB: &str = "io.modelcontextprotocol/subscriptionId";

#[test]
fn listen_acknowledges_tags_and_ends() {
    let mut s = Server::embedded(&[]);
    s.send(&json!({"jsonrpc":"2.0","id":"l1","method":"subscriptions/listen","params":{
        "_meta": meta(),
        "notifications": {"resourceSubscriptions": ["mqtt://default/topic/era/lamp"], "toolsListChanged": true, "resourcesListChanged": true}
    }}));
    let ack = s
        .next_message(Duration::from_secs(10))
        .expect("acknowledgement");
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert_eq!(ack["params"]["_meta"][SUB], "l1");
    assert_eq!(
        ack["params"]["notifications"],
        json!({"resourcesListChanged": true, "resourceSubscriptions": ["mqtt://default/topic/era/lamp"]})
    );
    s.send(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
        "_meta": meta(), "name": "publish_message", "arguments": {"topic": "era/lamp", "payload": "on"}
    }}));
    let mut updated = None;
    let mut list_changed = None;
    let mut answered = false;
    while let Some(m) = s.next_message(Duration::from_secs(3)) {
        match m["method"].as_str() {
            Some("notifications/resources/updated") => updated = Some(m),
            Some("notifications/resources/list_changed") => list_changed = Some(m),
            Some("notifications/message") => panic!("log notification without initialize: {m}"),
            Some(_) => {}
            None => {
                assert_eq!(m["id"], 1, "{m}");
                assert_eq!(m["result"]["resultType"], "complete");
                answered = true;
            }
        }
        if answered && updated.is_some() && list_changed.is_some() {
            break;
        }
    }
    let updated = updated.expect("notifications/resources/updated");
    assert_eq!(updated["params"]["uri"], "mqtt://default/topic/era/lamp");
    assert_eq!(updated["params"]["_meta"][SUB], "l1");
    assert_eq!(
        list_changed.expect("list_changed")["params"]["_meta"][SUB],
        "l1"
    );

    // Cancelled by the client: no answer, no more notifications for it.
    s.send(
        &json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"l1"}}),
    );
    s.send(
        &json!({"jsonrpc":"2.0","id":"l2","method":"subscriptions/listen","params":{
            "_meta": meta(), "notifications": {"resourceSubscriptions": ["mqtt://default/topics"]}
        }}),
    );
    let ack = s
        .next_message(Duration::from_secs(10))
        .expect("second acknowledgement");
    assert_eq!(ack["params"]["_meta"][SUB], "l2", "{ack}");
    s.send(&json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
        "_meta": meta(), "name": "publish_message", "arguments": {"topic": "era/lamp", "payload": "off"}
    }}));
    assert_eq!(
        s.recv_id(&json!(2), Duration::from_secs(10))["result"]["resultType"],
        "complete"
    );
    std::thread::sleep(Duration::from_millis(300));

    // Shutdown ends the open listen with notifications/cancelled, no answer.
    let (status, rest) = s.finish(Duration::from_secs(5));
    assert!(status.success());
    assert!(
        rest.iter().all(|m| m["params"]["_meta"][SUB] != "l1"),
        "{rest:?}"
    );
    assert!(rest.iter().all(|m| m.get("id").is_none()), "{rest:?}");
    assert!(
        rest.iter()
            .any(|m| m["method"] == "notifications/cancelled" && m["params"]["requestId"] == "l2"),
        "{rest:?}"
    );
}
