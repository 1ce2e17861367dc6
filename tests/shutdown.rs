//! End of input ends the process cleanly, also with a call still running,
//! and a slow call never blocks other requests.

mod common;

use common::Server;
use serde_json::json;
use std::time::Duration;

#[test]
fn eof_exits_cleanly_with_a_call_in_flight() {
    let mut s = Server::embedded(&[]);
    s.initialize();
    let port = common::blackhole();
    // A connect that would wait a minute for CONNACK.
    s.send(&json!({"jsonrpc":"2.0","id":"slow","method":"tools/call","params":{"name":"establish_connection","arguments":{"host":"127.0.0.1","port":port,"timeout_ms":60000,"protocol_version":"5"}}}));
    // Meanwhile other requests are answered.
    assert_eq!(s.request("ping", json!({}))["result"], json!({}));
    s.call_ok("list_active_connections", json!({}));
    let (status, rest) = s.finish(Duration::from_secs(5));
    assert!(status.success(), "exit status {status}");
    assert!(
        rest.iter().all(|m| m["id"] != json!("slow")),
        "the abandoned call must not be answered after shutdown: {rest:?}"
    );
}

#[test]
fn eof_without_initialize_exits() {
    let mut s = Server::embedded(&[]);
    let (status, rest) = s.finish(Duration::from_secs(5));
    assert!(status.success());
    assert!(rest.is_empty());
}
