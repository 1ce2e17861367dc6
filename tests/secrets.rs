//! No password may appear in anything the process prints: stdout (answers,
//! log notifications), stderr (logs at the most verbose level), error
//! messages, or listed sessions.

mod common;

use common::Server;
use serde_json::json;
use std::time::Duration;

const SECRETS: [&str; 4] = [
    "Env-Pa55word-0123",
    "Url-Pa55word-4567",
    "Tool-Pa55word-89ab",
    "Field-Pa55word-cdef",
];

fn assert_clean(server: &Server) {
    let out = server.stdout();
    let err = server.stderr();
    assert!(!err.is_empty(), "expected trace logs on stderr");
    for s in SECRETS {
        assert!(!out.contains(s), "secret {s} leaked to stdout");
        assert!(!err.contains(s), "secret {s} leaked to stderr");
    }
}

#[test]
fn passwords_never_appear_in_output() {
    // A default session whose URL and environment both carry passwords; the
    // embedded broker of a second process plays the external broker.
    let mut broker = Server::embedded_env(&["--log-level", "trace"], &[("RUST_LOG", "trace")]);
    broker.initialize();
    broker.call_ok("list_active_connections", json!({}));
    let port = broker.v5_port;
    let url = format!("mqtt://alice:{}@127.0.0.1:{port}/secret-test", SECRETS[1]);
    let mut server = Server::spawn(
        &["serve".into(), "--log-level".into(), "trace".into()],
        &[
            ("MQTT_MCP_BROKER", &url),
            ("MQTT_MCP_PASSWORD", SECRETS[0]),
            ("RUST_LOG", "trace"),
        ],
    );
    server.initialize();
    server.request("logging/setLevel", json!({"level": "debug"}));
    let list = server.call_ok("list_active_connections", json!({}));
    assert_eq!(
        list["sessions"][0]["broker_url"],
        json!(format!("mqtt://alice@127.0.0.1:{port}"))
    );

    // Successful connects with a password in the URL and in the field.
    let a = server.call_ok(
        "establish_connection",
        json!({"connection_string": format!("mqtt://bob:{}@127.0.0.1:{port}", SECRETS[2])}),
    );
    let b = server.call_ok(
        "establish_connection",
        json!({"host": "127.0.0.1", "port": port, "username": "carol", "password": SECRETS[3]}),
    );
    // Failing connects: unreachable, and arguments that fail validation.
    let closed = common::free_port();
    let r = server.call("establish_connection", json!({"connection_string": format!("mqtt://bob:{}@127.0.0.1:{closed}", SECRETS[2]), "timeout_ms": 500}));
    assert_eq!(r["isError"], json!(true));
    let r = server.call("establish_connection", json!({"host": "127.0.0.1", "port": closed, "username": "carol", "password": SECRETS[3], "keep_alive": 1}));
    assert_eq!(r["isError"], json!(true));
    let r = server.call(
        "establish_connection",
        json!({"connection_string": format!("mqtt://bob:{}@127.0.0.1:notaport", SECRETS[2])}),
    );
    assert_eq!(r["isError"], json!(true));
    let r = server.call(
        "establish_connection",
        json!({"host": "127.0.0.1", "password": 12345, "username": SECRETS[3].len().to_string()}),
    );
    assert_eq!(r["isError"], json!(true));
    server.call_ok("list_active_connections", json!({}));
    server.call_ok("close_connection", json!({"session_id": a["session_id"]}));
    server.call_ok("close_connection", json!({"session_id": b["session_id"]}));
    let (status, _) = server.finish(Duration::from_secs(5));
    assert!(status.success());
    assert_clean(&server);
    // The embedded broker saw every CONNECT with its password: it must not log them either.
    broker.finish(Duration::from_secs(5));
    assert_clean(&broker);
}
