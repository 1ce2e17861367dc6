//! A minimal HTTP/1.1 client over `std::net::TcpStream` for the Streamable
//! HTTP tests: one request per connection (`Connection: close`), chunked
//! bodies, the SSE stream on a thread, and [`Client`] for one MCP session.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Writes a request that closes the connection after its answer.
pub fn write_request(
    s: &mut TcpStream,
    port: u16,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    write_request_on(s, port, method, headers, body, "close");
}

/// Writes a request with `Connection: <connection>` (`close`, `keep-alive`).
pub fn write_request_on(
    s: &mut TcpStream,
    port: u16,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    connection: &str,
) {
    let mut head =
        format!("{method} /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: {connection}\r\n");
    let mut has_length = false;
    for (k, v) in headers {
        has_length |= k.eq_ignore_ascii_case("content-length");
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_length && (method == "POST" || !body.is_empty()) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    s.flush().unwrap();
}

/// Status line and headers.
pub fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    (status, headers)
}

/// One chunk of a chunked body; None at its end.
pub fn read_chunk(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
    let mut data = vec![0; size + 2];
    r.read_exact(&mut data).ok()?;
    data.truncate(size);
    (size > 0).then_some(data)
}

pub fn http(port: u16, method: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write_request(&mut s, port, method, headers, body);
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        while let Some(c) = read_chunk(&mut r) {
            body.extend(c);
        }
    } else {
        let _ = r.read_to_end(&mut body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

/// One keep-alive HTTP/1.1 connection carrying request after request, each
/// answered with a `Content-Length` body (JSON, not SSE).
pub struct KeepAlive {
    port: u16,
    r: BufReader<TcpStream>,
}

impl KeepAlive {
    pub fn open(port: u16) -> KeepAlive {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).ok();
        s.set_read_timeout(Some(Duration::from_secs(60))).ok();
        KeepAlive {
            port,
            r: BufReader::new(s),
        }
    }

    /// Sends one request and reads its whole answer.
    pub fn send(&mut self, method: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let port = self.port;
        write_request_on(self.r.get_mut(), port, method, headers, body, "keep-alive");
        let (status, headers) = read_head(&mut self.r);
        let length = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().expect("Content-Length"));
        let mut body = vec![0; length];
        self.r.read_exact(&mut body).expect("body");
        Resp {
            status,
            headers,
            body,
        }
    }
}

/// A client of one MCP session.
pub struct Client {
    pub port: u16,
    pub session: Option<String>,
    pub extra: Vec<(String, String)>,
    pub next_id: i64,
}

impl Client {
    pub fn new(port: u16) -> Client {
        Client {
            port,
            session: None,
            extra: Vec::new(),
            next_id: 100,
        }
    }

    pub fn post_raw(&self, body: &[u8]) -> Resp {
        let mut h: Vec<(&str, &str)> = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ];
        if let Some(s) = &self.session {
            h.push(("Mcp-Session-Id", s));
            h.push(("MCP-Protocol-Version", "2025-11-25"));
        }
        for (k, v) in &self.extra {
            h.push((k, v));
        }
        http(self.port, "POST", &h, body)
    }

    pub fn post(&self, v: &Value) -> Resp {
        self.post_raw(v.to_string().as_bytes())
    }

    /// initialize + notifications/initialized; keeps the session id.
    pub fn initialize(&mut self) -> Value {
        let r = self.post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "http-test", "version": "0"}}}));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("content-type"), Some("application/json"));
        let id = r
            .header("mcp-session-id")
            .expect("Mcp-Session-Id on the initialize answer");
        assert!(
            id.len() >= 32 && id.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "{id}"
        );
        self.session = Some(id.to_string());
        let v = r.json();
        let n = self.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        assert_eq!(n.status, 202);
        assert!(n.body.is_empty());
        v
    }

    pub fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let r = self.post(
            &json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}),
        );
        assert_eq!(
            r.status,
            200,
            "{method}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let v = r.json();
        assert_eq!(v["id"], json!(self.next_id));
        v
    }

    pub fn call_ok(&mut self, name: &str, args: Value) -> Value {
        let r = self.request("tools/call", json!({"name": name, "arguments": args}));
        assert_eq!(r["result"]["isError"], json!(false), "{name}: {r}");
        r["result"]["structuredContent"].clone()
    }

    pub fn delete(&self) -> Resp {
        let s = self.session.as_deref().unwrap();
        http(self.port, "DELETE", &[("Mcp-Session-Id", s)], b"")
    }

    /// Opens the SSE stream; its `data:` payloads arrive on the channel.
    pub fn sse(&self) -> mpsc::Receiver<Value> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let sid = self.session.as_deref().unwrap();
        write_request(
            &mut s,
            self.port,
            "GET",
            &[("Accept", "text/event-stream"), ("Mcp-Session-Id", sid)],
            b"",
        );
        let mut r = BufReader::new(s);
        expect_event_stream(&mut r);
        // The server's first event (a comment) proves the stream is registered.
        let first = read_chunk(&mut r).expect("a first SSE event");
        assert!(
            first.starts_with(b":"),
            "{}",
            String::from_utf8_lossy(&first)
        );
        sse_data(r)
    }
}

/// Reads the answer's head: 200 and an event stream.
pub fn expect_event_stream(r: &mut impl BufRead) {
    let (status, headers) = read_head(r);
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("content-type")
                && v.starts_with("text/event-stream"))
    );
}

/// The `data:` payloads of an SSE body (chunked), as they arrive, read by a
/// thread of its own.
pub fn sse_data(mut r: impl BufRead + Send + 'static) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        while let Some(c) = read_chunk(&mut r) {
            text.push_str(&String::from_utf8_lossy(&c));
            while let Some(i) = text.find("\n\n") {
                let event: String = text.drain(..i + 2).collect();
                for l in event.lines() {
                    if let Some(d) = l.strip_prefix("data:") {
                        let v: Value = serde_json::from_str(d.trim()).unwrap();
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    rx
}
