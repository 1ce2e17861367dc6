//! The Streamable HTTP transport (`serve --http`), end to end against the
//! real binary with its embedded broker, through the minimal HTTP/1.1 client
//! of `tests/common/http.rs`: session lifecycle, the bearer token, Origin
//! checks, the body cap, SSE notifications, isolation between sessions,
//! idle expiry, SIGTERM, and golden transcripts replayed over HTTP.

mod common;

use common::http::{expect_event_stream, http, sse_data, write_request, Client};
use common::transcript::compare;
use common::{normalize, Server};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::BufReader;
use std::net::TcpStream;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------

#[test]
fn session_lifecycle_over_http() {
    let (_server, port) = Server::embedded_http(&[]);
    let mut c = Client::new(port);
    let init = c.initialize();
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");

    let tools = c.request("tools/list", json!({}));
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"publish_message") && names.contains(&"subscribe_and_collect"));

    // subscribe_and_collect runs while publish_message is sent on another connection.
    let port2 = port;
    let sid = c.session.clone();
    let collector = std::thread::spawn(move || {
        let mut c2 = Client::new(port2);
        c2.session = sid;
        c2.call_ok(
            "subscribe_and_collect",
            json!({"filter": "http/life/#", "duration_ms": 8000, "stop_after_first": true}),
        )
    });
    std::thread::sleep(Duration::from_millis(700));
    let published = c.call_ok(
        "publish_message",
        json!({"topic": "http/life/a", "payload": "hello over http", "qos": 1}),
    );
    assert_eq!(published["status"], "acknowledged");
    let collected = collector.join().unwrap();
    assert!(
        collected.to_string().contains("hello over http"),
        "{collected}"
    );

    // Errors of the transport itself.
    let no_session = http(
        port,
        "POST",
        &[("Content-Type", "application/json")],
        br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    );
    assert_eq!(no_session.status, 400);
    let r = http(
        port,
        "POST",
        &[
            ("Content-Type", "application/json"),
            ("Mcp-Session-Id", c.session.as_deref().unwrap()),
            ("MCP-Protocol-Version", "1999-01-01"),
        ],
        br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    );
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let parse = c.post_raw(b"{not json");
    assert_eq!(parse.status, 400);
    assert_eq!(parse.json()["error"]["code"], -32700);
    let form = http(
        port,
        "POST",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Mcp-Session-Id", c.session.as_deref().unwrap()),
        ],
        b"a=b",
    );
    assert_eq!(form.status, 415);
    let response = c.post(&json!({"jsonrpc": "2.0", "id": 7, "result": {}}));
    assert_eq!(response.status, 202);

    // DELETE ends the session; its id is unknown afterwards.
    assert_eq!(c.delete().status, 204);
    let after = c.post(&json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}));
    assert_eq!(after.status, 404);
    assert_eq!(c.delete().status, 404);
    let sse_after = http(
        port,
        "GET",
        &[
            ("Accept", "text/event-stream"),
            ("Mcp-Session-Id", c.session.as_deref().unwrap()),
        ],
        b"",
    );
    assert_eq!(sse_after.status, 404);
}

#[test]
fn bearer_token_is_required_when_set() {
    let (_server, port) = Server::embedded_http(&["--http-token", "s3cret-token-for-tests"]);
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let mut c = Client::new(port);
    let missing = c.post(&init);
    assert_eq!(missing.status, 401);
    assert!(missing
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));
    c.extra = vec![(
        "Authorization".into(),
        "Bearer s3cret-token-for-tesTs".into(),
    )];
    assert_eq!(c.post(&init).status, 401);
    c.extra = vec![(
        "Authorization".into(),
        "Bearer s3cret-token-for-tests-and-more".into(),
    )];
    assert_eq!(c.post(&init).status, 401);
    c.extra = vec![("Authorization".into(), "Basic czNjcmV0".into())];
    assert_eq!(c.post(&init).status, 401);
    let get = http(port, "GET", &[("Accept", "text/event-stream")], b"");
    assert_eq!(get.status, 401);
    let delete = http(port, "DELETE", &[("Mcp-Session-Id", "x")], b"");
    assert_eq!(delete.status, 401);

    c.extra = vec![(
        "Authorization".into(),
        "Bearer s3cret-token-for-tests".into(),
    )];
    c.initialize();
    let pong = c.request("ping", json!({}));
    assert_eq!(pong["result"], json!({}));
}

#[test]
fn foreign_origins_are_rejected() {
    let (_server, port) = Server::embedded_http(&[]);
    let mut c = Client::new(port);
    for bad in [
        "http://evil.example",
        "http://localhost.evil.example:80",
        "null",
    ] {
        c.extra = vec![("Origin".into(), bad.into())];
        let r = c.post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}));
        assert_eq!(r.status, 403, "{bad}");
        assert!(r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Origin"));
    }
    c.extra = vec![("Origin".into(), "http://localhost:5173".into())];
    c.initialize();
    c.extra = vec![("Origin".into(), "http://127.0.0.1:9".into())];
    assert_eq!(c.request("ping", json!({}))["result"], json!({}));
}

#[test]
fn oversized_bodies_get_413() {
    let (_server, port) = Server::embedded_http(&["--max-line-bytes", "65536"]);
    let mut c = Client::new(port);
    c.initialize();
    // The length alone decides: the body is never read.
    let big = (5 * 1024 * 1024).to_string();
    let r = http(
        port,
        "POST",
        &[
            ("Content-Type", "application/json"),
            ("Mcp-Session-Id", c.session.as_deref().unwrap()),
            ("Content-Length", &big),
        ],
        b"",
    );
    assert_eq!(r.status, 413);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("65536"));
    // Just under the limit is fine.
    let filler = "x".repeat(60_000);
    let ok = c.request(
        "tools/call",
        json!({"name": "publish_message", "arguments": {"topic": "http/big", "payload": filler}}),
    );
    assert_eq!(ok["result"]["isError"], json!(false), "{ok}");
}

#[test]
fn sse_stream_carries_notifications() {
    let (_server, port) = Server::embedded_http(&[]);
    let mut c = Client::new(port);
    c.initialize();
    let events = c.sse();
    let sub = c.request(
        "resources/subscribe",
        json!({"uri": "mqtt://default/topic/http/sse/t"}),
    );
    assert_eq!(sub["result"], json!({}), "{sub}");
    c.call_ok(
        "publish_message",
        json!({"topic": "http/sse/t", "payload": "ping", "qos": 1}),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = events
            .recv_timeout(left)
            .expect("notifications/resources/updated on the SSE stream");
        assert!(
            ev.get("id").is_none(),
            "no responses on the GET stream: {ev}"
        );
        if ev["method"] == "notifications/resources/updated" {
            assert_eq!(ev["params"]["uri"], "mqtt://default/topic/http/sse/t");
            break;
        }
    }
    // A second GET replaces the first stream.
    let second = c.sse();
    c.call_ok(
        "publish_message",
        json!({"topic": "http/sse/t", "payload": "again", "qos": 1}),
    );
    let ev = second
        .recv_timeout(Duration::from_secs(10))
        .expect("the new stream gets it");
    assert_eq!(ev["method"], "notifications/resources/updated");
    assert_eq!(c.delete().status, 204);
}

#[test]
fn sessions_are_isolated() {
    let (server, port) = Server::embedded_http(&[]);
    let mut a = Client::new(port);
    let mut b = Client::new(port);
    a.initialize();
    b.initialize();
    assert_ne!(a.session, b.session);
    let opened = a.call_ok(
        "establish_connection",
        json!({"host": "127.0.0.1", "port": server.v5_port, "client_id": "http-isolation-a"}),
    );
    let sid = opened["session_id"].as_str().unwrap().to_string();
    let in_a = a.call_ok("list_active_connections", json!({}));
    let in_b = b.call_ok("list_active_connections", json!({}));
    assert!(in_a.to_string().contains(&sid));
    assert!(!in_b.to_string().contains(&sid), "{in_b}");
    // Each has its own default session.
    assert!(in_b.to_string().contains("\"default\""), "{in_b}");
    let closed = b.request(
        "tools/call",
        json!({"name": "close_connection", "arguments": {"session_id": sid}}),
    );
    assert_eq!(closed["result"]["isError"], json!(true), "{closed}");
    // Ending A leaves B working.
    assert_eq!(a.delete().status, 204);
    assert_eq!(b.request("ping", json!({}))["result"], json!({}));
}

#[test]
fn non_loopback_bind_without_token_is_refused() {
    // Refused before anything is bound or started.
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--http", "0.0.0.0:0", "--no-embedded"])
        .env_remove("MQTT_MCP_HTTP_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--http-token"), "{err}");
}

#[test]
fn cancelled_request_ends_its_post() {
    let (_server, port) = Server::embedded_http(&[]);
    let mut c = Client::new(port);
    c.initialize();
    let session = c.session.clone();
    let started = Instant::now();
    let waiting = std::thread::spawn(move || {
        let mut c2 = Client::new(port);
        c2.session = session;
        c2.post(&json!({"jsonrpc": "2.0", "id": "long", "method": "tools/call", "params": {"name": "subscribe_and_collect", "arguments": {"filter": "http/cancel/#", "duration_ms": 20000}}}))
    });
    std::thread::sleep(Duration::from_millis(500));
    let cancel = c.post(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "long", "reason": "test"}}));
    assert_eq!(cancel.status, 202);
    let r = waiting.join().unwrap();
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    assert!(started.elapsed() < Duration::from_secs(10));
    // The session goes on.
    assert_eq!(c.request("ping", json!({}))["result"], json!({}));
}

#[test]
fn idle_sessions_expire() {
    let (_server, port) = Server::embedded_http(&["--session-ttl", "1"]);
    let mut c = Client::new(port);
    c.initialize();
    assert_eq!(c.request("ping", json!({}))["result"], json!({}));
    // No request and no stream for well over the TTL (the reaper looks every 250 ms).
    std::thread::sleep(Duration::from_millis(2500));
    let r = c.post(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn sigterm_stops_the_server_with_a_stream_open() {
    let (mut server, port) = Server::embedded_http(&[]);
    let mut c = Client::new(port);
    c.initialize();
    let events = c.sse();
    let started = Instant::now();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(8);
    let status = loop {
        if let Some(st) = server.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "no exit after SIGTERM; stderr:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}; stderr:\n{}", server.stderr());
    eprintln!("exited {:?} after SIGTERM", started.elapsed());
    // The stream ended with the server.
    assert!(matches!(
        events.recv_timeout(Duration::from_secs(2)),
        Err(mpsc::RecvTimeoutError::Disconnected)
    ));
}

// ---------------------------------------------------------------------------
// Golden transcripts over HTTP (the format is described in tests/transcripts.rs).

/// Replays one transcript in a new HTTP session. A request whose answer the
/// transcript expects right after it is sent and answered in turn; one whose
/// answer comes later (it waits for a later message) runs on its own thread.
fn replay(path: &Path, server: &Server, port: u16) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut vars: HashMap<String, String> = HashMap::new();
    vars.insert("v4_port".into(), server.v4_port.to_string());
    vars.insert("v5_port".into(), server.v5_port.to_string());
    vars.insert("blackhole_port".into(), common::blackhole().to_string());
    vars.insert("closed_port".into(), common::free_port().to_string());
    let answers: Arc<Mutex<HashMap<String, Value>>> = Default::default();
    let mut client = Client::new(port);
    let mut errors = Vec::new();
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    for (n, line) in lines.iter().enumerate() {
        let mut sent = line.to_string();
        for (k, v) in &vars {
            sent = sent.replace(&format!("{{{{{k}}}}}"), v);
        }
        let v: Value = serde_json::from_str(&sent).unwrap();
        if v.get("method").is_some() {
            let Some(id) = v.get("id") else {
                let r = client.post_raw(sent.as_bytes());
                assert_eq!(
                    r.status,
                    202,
                    "{name}:{}: {}",
                    n + 1,
                    String::from_utf8_lossy(&r.body)
                );
                continue;
            };
            let key = id.to_string();
            let answered_next = lines.get(n + 1).is_some_and(|next| {
                serde_json::from_str::<Value>(next)
                    .is_ok_and(|nv| nv.get("method").is_none() && nv.get("id") == Some(id))
            });
            let initialize = v["method"] == "initialize" && client.session.is_none();
            let post = {
                let port = client.port;
                let session = client.session.clone();
                let answers = answers.clone();
                let body = sent.clone();
                move || {
                    let mut c = Client::new(port);
                    c.session = session;
                    let r = c.post_raw(body.as_bytes());
                    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                    let sid = r.header("mcp-session-id").map(str::to_string);
                    answers.lock().unwrap().insert(key, r.json());
                    sid
                }
            };
            if answered_next || initialize {
                let sid = post();
                if initialize {
                    client.session = Some(sid.expect("session header"));
                }
            } else {
                std::thread::spawn(post);
                // Let it reach the server before the next message.
                std::thread::sleep(Duration::from_millis(300));
            }
        } else if v.get("result").is_some() || v.get("error").is_some() {
            let key = v["id"].to_string();
            let deadline = Instant::now() + Duration::from_secs(30);
            let actual = loop {
                if let Some(a) = answers.lock().unwrap().remove(&key) {
                    break a;
                }
                assert!(
                    Instant::now() < deadline,
                    "{name}:{}: no answer for id {key}",
                    n + 1
                );
                std::thread::sleep(Duration::from_millis(10));
            };
            let norm = normalize(&actual);
            let mut errs = Vec::new();
            compare(&v, &actual, &norm, "", &mut vars, &mut errs);
            errors.extend(errs.into_iter().map(|e| format!("{name}:{}: {e}", n + 1)));
        } else {
            panic!(
                "{name}:{}: line kind not replayable over HTTP: {line}",
                n + 1
            );
        }
    }
    let r = client.delete();
    if r.status != 204 {
        errors.push(format!("{name}: DELETE gave {}", r.status));
    }
    errors
}

/// Transcripts that start with `initialize` and have no raw lines (a request
/// before `initialize` has no session over HTTP: 400 by design).
#[test]
fn golden_transcripts_over_http() {
    let (server, port) = Server::embedded_http(&[]);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/transcripts");
    let mut errors = Vec::new();
    for name in [
        "handshake_2025_11_25.jsonl",
        "handshake_2024_11_05.jsonl",
        "tools_list.jsonl",
        "session_lifecycle.jsonl",
        "tool_background_subscriptions.jsonl",
        "tool_subscribe_and_collect.jsonl",
        "tool_request_response.jsonl",
        "tool_retained.jsonl",
        "tool_schema_and_history.jsonl",
        "tool_diagnostics.jsonl",
    ] {
        errors.extend(replay(&dir.join(name), &server, port));
    }
    assert!(
        errors.is_empty(),
        "{} differences:\n{}",
        errors.len(),
        errors.join("\n")
    );
}

/// A 2026-07-28 `subscriptions/listen` over HTTP needs no session: its POST
/// answers with an SSE stream that starts with the acknowledgement and carries
/// the notifications tagged with the client's listen id; a failed listen is a
/// plain JSON error (400).
#[test]
fn stateless_listen_streams_over_http() {
    let (_server, port) = Server::embedded_http(&[]);
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}});
    let headers = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", "2026-07-28"),
    ];
    let listen = json!({"jsonrpc":"2.0","id":"L1","method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["mqtt://default/topic/http/listen"]},"_meta": meta}});
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let listen_headers = [
        headers[0],
        headers[1],
        headers[2],
        ("Mcp-Method", "subscriptions/listen"),
    ];
    write_request(
        &mut s,
        port,
        "POST",
        &listen_headers,
        listen.to_string().as_bytes(),
    );
    let mut r = BufReader::new(s);
    expect_event_stream(&mut r);
    let rx = sse_data(r);
    let ack = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("acknowledgement");
    assert_eq!(
        ack["method"],
        json!("notifications/subscriptions/acknowledged"),
        "{ack}"
    );
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        json!("L1")
    );
    let publish = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"publish_message","arguments":{"topic":"http/listen","payload":"hi"},"_meta": meta}});
    let call_headers = [
        headers[0],
        headers[1],
        headers[2],
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "publish_message"),
    ];
    let resp = http(port, "POST", &call_headers, publish.to_string().as_bytes());
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    // SEP-2243: the routing headers must match the body.
    let wrong = [
        headers[0],
        headers[1],
        headers[2],
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "clear_retained"),
    ];
    let resp = http(port, "POST", &wrong, publish.to_string().as_bytes());
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["error"]["code"], json!(-32020));
    let updated = rx.recv_timeout(Duration::from_secs(20)).expect("an update");
    assert_eq!(
        updated["method"],
        json!("notifications/resources/updated"),
        "{updated}"
    );
    assert_eq!(
        updated["params"]["uri"],
        json!("mqtt://default/topic/http/listen")
    );
    assert_eq!(
        updated["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        json!("L1")
    );
    let bad = json!({"jsonrpc":"2.0","id":"L2","method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["mqtt://nope/topic/x"]},"_meta": meta}});
    let resp = http(port, "POST", &listen_headers, bad.to_string().as_bytes());
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["id"], json!("L2"));
    assert_eq!(resp.json()["error"]["code"], json!(-32602));
}
