//! The HTTP transport holds against abandoned and slow clients (issue 11):
//! at the session cap the idlest session without an open stream makes room
//! for a new client, 503 with `Retry-After` only when every session is busy;
//! clients that send their headers or their body slowly are disconnected by
//! the deadlines (10 s each) while a normal client is served meanwhile.
//! Against the real binary with its embedded broker, on 127.0.0.1.

mod common;

use common::http::{read_head, write_request, Client};
use common::Server;
use serde_json::{json, Value};
use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn ping(c: &Client) -> u16 {
    c.post(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .status
}

#[test]
fn abandoned_sessions_make_room_for_new_clients() {
    // The default cap (64); 200 clients initialize and never come back.
    let (_server, port) = Server::embedded_http(&[]);
    let mut abandoned = Vec::new();
    for i in 0..200 {
        let mut c = Client::new(port);
        let r = c.post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "abandoned", "version": "0"}}}));
        assert_eq!(
            r.status,
            200,
            "initialize #{i}: {}",
            String::from_utf8_lossy(&r.body)
        );
        c.session = r.header("mcp-session-id").map(str::to_string);
        assert!(c.session.is_some(), "initialize #{i} opened no session");
        abandoned.push(c);
    }
    let mut fresh = Client::new(port);
    fresh.initialize();
    assert_eq!(fresh.request("ping", json!({}))["result"], json!({}));
    // The cap holds: the 63 most recent abandoned sessions are still there,
    // the older ones were ended (idlest first) to make room.
    let alive: Vec<usize> = (0..abandoned.len())
        .filter(|&i| match ping(&abandoned[i]) {
            200 => true,
            404 => false,
            s => panic!("session #{i}: status {s}"),
        })
        .collect();
    assert_eq!(alive, (137..200).collect::<Vec<_>>());
    assert_eq!(fresh.request("ping", json!({}))["result"], json!({}));
}

/// An open GET stream of a session; dropping it closes the connection.
fn open_stream(c: &Client) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    let sid = c.session.as_deref().unwrap();
    write_request(
        &mut s,
        c.port,
        "GET",
        &[("Accept", "text/event-stream"), ("Mcp-Session-Id", sid)],
        b"",
    );
    let mut r = BufReader::new(s);
    assert_eq!(read_head(&mut r).0, 200);
    r
}

#[test]
fn busy_sessions_are_kept_and_the_newcomer_gets_503_with_retry_after() {
    // The cap from the environment variable: two sessions, both listening.
    let (_server, port) = Server::embedded_http_env(&[], &[("MQTT_MCP_HTTP_MAX_SESSIONS", "2")]);
    let mut a = Client::new(port);
    a.initialize();
    let mut b = Client::new(port);
    b.initialize();
    let stream_a = open_stream(&a);
    let _stream_b = open_stream(&b);
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "late", "version": "0"}}});
    let late = Client::new(port);
    let r = late.post(&init);
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After of whole seconds");
    assert!(retry > 0);
    let body = r.json();
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["error"]["code"], -32600);
    assert!(body["error"]["message"].is_string(), "{body}");
    // Both busy sessions were kept.
    assert_eq!(ping(&a), 200);
    assert_eq!(ping(&b), 200);
    // Once a's stream closes, a is the idle one and makes room.
    drop(stream_a);
    let deadline = Instant::now() + Duration::from_secs(60);
    let admitted = loop {
        let r = late.post(&init);
        if r.status == 200 {
            break r;
        }
        assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
        assert!(
            Instant::now() < deadline,
            "never admitted after a's stream closed"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(admitted.header("mcp-session-id").is_some());
    assert_eq!(ping(&a), 404, "the idle session was ended");
    assert_eq!(ping(&b), 200, "the listening session was kept");
}

/// What a slow client observed.
struct Slow {
    /// Set when the server closed the connection (or answered and closed).
    cut: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Option<u16>>,
}

/// Connects, sends `head` at once, then `drip` one byte per second, and
/// watches for the server to close: returns the status of an answer, if one
/// came before the close. Panics if `drip` runs out first.
fn slow_client(port: u16, head: Vec<u8>, drip: Vec<u8>) -> Slow {
    let cut = Arc::new(AtomicBool::new(false));
    let flag = cut.clone();
    let thread = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        s.write_all(&head).unwrap();
        let mut got = Vec::new();
        for b in &drip {
            if s.write_all(std::slice::from_ref(b)).is_err() {
                break;
            }
            let mut buf = [0u8; 4096];
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        // Still open after the whole drip: the deadline did not hold.
        let open = matches!(s.read(&mut [0u8; 1]), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
        assert!(!open, "the server kept a slow client for {} s", drip.len());
        flag.store(true, Ordering::SeqCst);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        got.extend(rest);
        let text = String::from_utf8_lossy(&got);
        text.strip_prefix("HTTP/1.1 ")
            .and_then(|t| t.get(..3))
            .and_then(|c| c.parse().ok())
    });
    Slow { cut, thread }
}

#[test]
fn slow_headers_and_slow_bodies_are_cut_off_while_others_are_served() {
    let (_server, port) = Server::embedded_http(&[]);
    // Each drip lasts 45 s, far beyond the 10 s deadlines.
    let slow_head = (0..5)
        .map(|_| {
            let head = format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
            slow_client(port, head.into_bytes(), b"X-Slow: a".repeat(5))
        })
        .collect::<Vec<_>>();
    let slow_body = (0..5)
        .map(|_| {
            let head = format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n");
            slow_client(port, head.into_bytes(), b" ".repeat(45))
        })
        .collect::<Vec<_>>();
    std::thread::sleep(Duration::from_millis(500));
    // A normal client, served while the slow ones hold their connections.
    let mut c = Client::new(port);
    c.initialize();
    for _ in 0..5 {
        assert_eq!(c.request("ping", json!({}))["result"], json!({}));
    }
    let tools = c.request("tools/list", json!({}));
    assert!(tools["result"]["tools"]
        .as_array()
        .is_some_and(|t| !t.is_empty()));
    assert_eq!(c.delete().status, 204);
    let all = slow_head.iter().chain(&slow_body);
    assert!(
        all.clone().all(|s| !s.cut.load(Ordering::SeqCst)),
        "the normal client was served after the slow ones were cut, not meanwhile"
    );
    // Cut by the deadline: a 408 answer, or just the close (the answer can be
    // lost when the server resets a connection whose data it did not read).
    for s in slow_head.into_iter().chain(slow_body) {
        let status = s.thread.join().expect("slow client");
        assert!(matches!(status, None | Some(408)), "{status:?}");
    }
    // And the server still serves.
    let mut d = Client::new(port);
    let v: Value = d.initialize();
    assert!(v["result"]["serverInfo"].is_object(), "{v}");
}
