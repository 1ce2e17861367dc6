//! A long call sends `notifications/progress` carrying the request's progress
//! token before it answers.

mod common;

use common::Server;
use serde_json::json;
use std::time::Duration;

#[test]
fn collect_reports_progress() {
    let mut s = Server::embedded(&[]);
    s.initialize();
    s.send(
        &json!({"jsonrpc":"2.0","id":"long","method":"tools/call","params":{
        "name":"subscribe_and_collect","arguments":{"filter":"progress/#","duration_ms":2500},
        "_meta":{"progressToken":"tok-1"}}}),
    );
    let answer = s.recv_id(&json!("long"), Duration::from_secs(30));
    assert_eq!(answer["result"]["isError"], json!(false), "{answer}");
    let mut progress = Vec::new();
    while let Some(m) = s.next_message(Duration::from_millis(50)) {
        if m["method"] == json!("notifications/progress") {
            progress.push(m);
        }
    }
    assert!(!progress.is_empty(), "no progress notification");
    let mut last = -1.0;
    for p in &progress {
        assert_eq!(p["params"]["progressToken"], json!("tok-1"));
        let v = p["params"]["progress"].as_f64().unwrap();
        assert!(v > last, "progress must increase: {progress:?}");
        last = v;
        assert_eq!(p["params"]["total"], json!(2500.0));
    }
    // Without a token: none.
    s.call_ok(
        "subscribe_and_collect",
        json!({"filter":"progress/#","duration_ms":1500}),
    );
    while let Some(m) = s.next_message(Duration::from_millis(50)) {
        assert_ne!(
            m["method"],
            json!("notifications/progress"),
            "progress without a token: {m}"
        );
    }
}
