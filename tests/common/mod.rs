//! Test helpers: drive the real `mqtt-mcp` binary over stdio, match answers
//! by id, normalize volatile fields, and read the process's peak memory.
//! The benchmarks include this module too (`#[path]`), so what both need
//! lives here once.
#![allow(dead_code)]

pub mod brokers;
pub mod cli;
pub mod custom_mosquitto;
pub mod http;
pub mod interop;
pub mod sshd;
pub mod stdio;
pub mod transcript;

use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mqtt-mcp")
}

/// A private scratch directory under the system temp dir, removed on drop.
pub fn scratch_dir(what: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("mqtt-mcp-test-{what}-"))
        .tempdir()
        .expect("create a scratch directory")
}

/// A free loopback port chosen by the OS.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (15 s at most) until `log()` holds `marker` followed by a port
/// number, and returns that port: how a server started on port 0 says
/// which one it got.
pub fn port_logged(log: impl Fn() -> String, marker: &str) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = log();
        if let Some(i) = text.find(marker) {
            let digits: String = text[i + marker.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(port) = digits.parse() {
                return port;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {marker:?} in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Two different free loopback ports (the embedded broker's 3.1.1 and 5 listeners).
pub fn free_port_pair() -> (u16, u16) {
    let a = free_port();
    let mut b = free_port();
    while b == a {
        b = free_port();
    }
    (a, b)
}

/// `mqtt-mcp` with stdio piped and none of the caller's `MQTT_MCP_*` or
/// `RUST_LOG` settings, which would change what is tested or measured.
pub fn command() -> Command {
    let mut cmd = Command::new(bin());
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MQTT_MCP_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Keeps what `r` yields, at most `cap` bytes, in the returned buffer, read
/// by a thread of its own (a child's stderr, which must not fill its pipe).
pub fn keep_output(mut r: impl Read + Send + 'static, cap: usize) -> Arc<Mutex<Vec<u8>>> {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let log = kept.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
            let room = cap.saturating_sub(l.len()).min(n);
            l.extend_from_slice(&buf[..room]);
        }
    });
    kept
}

/// A JSON-RPC request object.
pub fn request(id: impl Into<Value>, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id.into(), "method": method, "params": params})
}

/// `initialize` params of a client named `client` (protocol 2025-11-25).
pub fn initialize_params(client: &str) -> Value {
    json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": client, "version": "0"}})
}

/// True when `v` is the answer (not a request or notification) to `id`.
pub fn is_answer(v: &Value, id: &Value) -> bool {
    v.get("id") == Some(id) && v.get("method").is_none()
}

/// Whether `list_active_connections` shows the default session connected.
pub fn default_connected(list: &Value) -> bool {
    list["sessions"].as_array().is_some_and(|s| {
        s.iter()
            .any(|s| s["is_default"] == true && s["state"] == "connected")
    })
}

/// A TCP server that accepts connections and never answers: a broker that
/// hangs before CONNACK. Lives as long as the returned listener thread.
pub fn blackhole() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

/// A running server process.
pub struct Server {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Every stdout line, for secret checks.
    pub stdout_log: Arc<Mutex<Vec<String>>>,
    /// All of stderr.
    pub stderr_log: Arc<Mutex<Vec<u8>>>,
    buffered: VecDeque<Value>,
    next_id: i64,
    pub v4_port: u16,
    pub v5_port: u16,
}

impl Server {
    /// Starts `mqtt-mcp serve` with the embedded broker on free ports, plus `extra` args.
    pub fn embedded(extra: &[&str]) -> Server {
        Server::embedded_env(extra, &[])
    }

    /// `serve --http 127.0.0.1:0 <extra>` with the embedded broker, and the
    /// HTTP port it logged (the OS picks it).
    pub fn embedded_http(extra: &[&str]) -> (Server, u16) {
        Server::embedded_http_env(extra, &[])
    }

    /// Like `embedded_http`, with environment variables.
    pub fn embedded_http_env(extra: &[&str], env: &[(&str, &str)]) -> (Server, u16) {
        let mut args = vec!["--http", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let server = Server::embedded_env(&args, env);
        let port = port_logged(
            || server.stderr(),
            "MCP Streamable HTTP listening on http://127.0.0.1:",
        );
        (server, port)
    }

    /// `serve` with the embedded broker on two free ports, started by a
    /// command `launch(v4, v5)` returns with a description of it (ssh, docker
    /// exec). Waits for the broker's listen line, retrying on other ports if
    /// the server lost a port race; `context` adds to the failure message
    /// (for example the sshd log), `what` ends the final panic.
    pub fn serve_on_free_ports(
        what: &str,
        timeout: Duration,
        launch: impl Fn(u16, u16) -> (String, Command),
        context: impl Fn() -> String,
    ) -> Server {
        let mut last = String::new();
        for _attempt in 0..3 {
            let (v4, v5) = free_port_pair();
            let (line, cmd) = launch(v4, v5);
            let mut server =
                Server::spawn_command(cmd).unwrap_or_else(|e| panic!("start {line}: {e}"));
            server.v4_port = v4;
            server.v5_port = v5;
            let marker = format!("embedded MQTT broker listening on mqtt://127.0.0.1:{v4}");
            let deadline = Instant::now() + timeout;
            loop {
                if server.stderr().contains(&marker) {
                    return server;
                }
                let exited = server.child.try_wait().ok().flatten();
                if exited.is_some() || Instant::now() > deadline {
                    last = format!(
                        "{line}: {} before the broker listened; stderr:\n{}{}",
                        exited.map_or("no start".to_string(), |s| s.to_string()),
                        server.stderr(),
                        context()
                    );
                    println!("retrying on other ports: {last}");
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("the server did not start {what}: {last}");
    }

    /// Like `embedded`, with environment variables.
    pub fn embedded_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        // The server picks free ports itself (retrying if it loses a race for
        // one) and logs them; we read them from its stderr.
        let mut args = vec!["serve".to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut s = Server::spawn(&args, env);
        let deadline = Instant::now() + Duration::from_secs(15);
        let marker = "embedded MQTT broker listening on mqtt://127.0.0.1:";
        loop {
            let err = s.stderr();
            if let Some(i) = err.find(marker) {
                let rest = &err[i + marker.len()..];
                let v4: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if let Some(j) = rest.find("and mqtt://127.0.0.1:") {
                    let v5: String = rest[j + "and mqtt://127.0.0.1:".len()..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    if let (Ok(a), Ok(b)) = (v4.parse(), v5.parse()) {
                        s.v4_port = a;
                        s.v5_port = b;
                        return s;
                    }
                }
            }
            if Instant::now() > deadline {
                panic!("the embedded broker did not report its ports (log level must be info or lower); stderr:\n{err}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts the binary with arbitrary args and environment.
    pub fn spawn(args: &[String], env: &[(&str, &str)]) -> Server {
        let mut cmd = command();
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Server::spawn_command(cmd).expect("spawn mqtt-mcp")
    }

    /// A [`Server`] speaking over the stdio of an arbitrary command (for
    /// example `ssh host mqtt-mcp serve`). Its stdout lines are the protocol,
    /// its stderr is kept; `v4_port`/`v5_port` are left for the caller to set.
    pub fn spawn_command(mut cmd: Command) -> std::io::Result<Server> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout_log = Arc::new(Mutex::new(Vec::new()));
        let log = stdout_log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_log = keep_output(stderr, usize::MAX);
        Ok(Server {
            stdin: child.stdin.take(),
            child,
            lines: rx,
            stdout_log,
            stderr_log,
            buffered: VecDeque::new(),
            next_id: 1000,
            v4_port: 0,
            v5_port: 0,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one raw line (a newline is appended).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    pub fn send(&mut self, v: &Value) {
        self.send_raw(v.to_string().as_bytes());
    }

    /// The next message from the server, or None after `timeout`.
    pub fn next_message(&mut self, timeout: Duration) -> Option<Value> {
        if let Some(v) = self.buffered.pop_front() {
            return Some(v);
        }
        self.lines.recv_timeout(timeout).ok().map(|l| {
            serde_json::from_str(&l).unwrap_or_else(|e| panic!("server wrote non-JSON {l:?}: {e}"))
        })
    }

    /// Waits for the response with `id`; other messages stay buffered.
    pub fn recv_id(&mut self, id: &Value, timeout: Duration) -> Value {
        if let Some(pos) = self.buffered.iter().position(|m| is_answer(m, id)) {
            return self.buffered.remove(pos).unwrap();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no response with id {id} within {timeout:?}; stderr:\n{}",
                    self.stderr()
                )
            });
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("server wrote non-JSON {line:?}: {e}"));
            if is_answer(&v, id) {
                return v;
            }
            self.buffered.push_back(v);
        }
    }

    /// Sends a request with a fresh id and returns the whole response.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = json!(self.next_id);
        self.send(&request(id.clone(), method, params));
        self.recv_id(&id, Duration::from_secs(20))
    }

    pub fn initialize(&mut self) -> Value {
        let r = self.request("initialize", initialize_params("test"));
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        r
    }

    /// Calls a tool and returns `result` (panics on a JSON-RPC error).
    pub fn call(&mut self, name: &str, args: Value) -> Value {
        let r = self.request("tools/call", json!({"name": name, "arguments": args}));
        match r.get("result") {
            Some(res) => res.clone(),
            None => panic!("tools/call {name} gave a JSON-RPC error: {r}"),
        }
    }

    /// The entry of `session` (None: the default session) in `list_active_connections`.
    pub fn session_info(&mut self, session: Option<&str>) -> Value {
        let list = self.call_ok("list_active_connections", json!({}));
        list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| match session {
                Some(id) => s["session_id"] == json!(id),
                None => s["is_default"] == json!(true),
            })
            .unwrap_or_else(|| panic!("no session {session:?} in {list}"))
            .clone()
    }

    /// Calls a tool that must succeed and returns its structuredContent.
    pub fn call_ok(&mut self, name: &str, args: Value) -> Value {
        let res = self.call(name, args);
        assert_eq!(res["isError"], json!(false), "{name} failed: {res}");
        res["structuredContent"].clone()
    }

    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Closes stdin and waits for exit.
    pub fn finish(&mut self, timeout: Duration) -> (ExitStatus, Vec<Value>) {
        self.close_stdin();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let mut rest: Vec<Value> = self.buffered.drain(..).collect();
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    rest.push(serde_json::from_str(&l).unwrap());
                }
                return (st, rest);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "server did not exit within {timeout:?} after stdin closed; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr_log.lock().unwrap()).into_owned()
    }

    pub fn stdout(&self) -> String {
        self.stdout_log.lock().unwrap().join("\n")
    }

    /// Peak resident set (VmHWM) in KiB.
    pub fn vm_hwm_kib(&self) -> u64 {
        vm_hwm_kib(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Peak resident set (VmHWM) of a process, in KiB.
pub fn vm_hwm_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// A field of `/proc/PID/status` in KiB (`VmRSS:` now, `VmHWM:` peak); 0 if unreadable.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Normalization of volatile fields.

/// Keys whose values change from run to run.
const VOLATILE_KEYS: &[&str] = &[
    "created_at",
    "last_used_at",
    "expires_in_s",
    "received_at",
    "last_seen",
    "latency_ms",
    "elapsed_ms",
    "rtt_ms",
    "first_seen",
    "rate_per_s",
    "duration_ms",
    "round_trip_ms",
    "puback_ms",
    "test_topic",
    "correlation_data_hex",
    "at",
];

/// Replaces each `prefix` followed by a run of bytes `in_run` accepts, when
/// `fits` the run's length, by `with`; other occurrences stay as they are.
fn replace_runs(
    s: &str,
    prefix: &str,
    in_run: fn(&u8) -> bool,
    fits: impl Fn(usize) -> bool,
    with: &str,
) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(prefix) {
        out.push_str(&rest[..i]);
        let after = &rest[i + prefix.len()..];
        let n = after.bytes().take_while(in_run).count();
        if fits(n) {
            out.push_str(with);
            rest = &after[n..];
        } else {
            out.push_str(prefix);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn replace_token(s: &str, prefix: &str, hex_len: usize, placeholder: &str) -> String {
    replace_runs(
        s,
        prefix,
        u8::is_ascii_hexdigit,
        |n| n == hex_len,
        placeholder,
    )
}

fn replace_ports(s: &str) -> String {
    replace_runs(
        s,
        "127.0.0.1:",
        u8::is_ascii_digit,
        |n| n > 0,
        "127.0.0.1:<port>",
    )
}

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && s.ends_with('Z')
        && b[..4].iter().all(u8::is_ascii_digit)
}

/// Replaces volatile values: session and client ids, ports, times.
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    // Only values: a schema that *describes* such a key stays as it is.
                    let scalar = v.is_number() || v.is_string();
                    let nv = if VOLATILE_KEYS.contains(&k.as_str()) && scalar {
                        json!("<redacted>")
                    } else {
                        normalize(v)
                    };
                    (k.clone(), nv)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::String(s) => {
            if let Ok(inner @ (Value::Object(_) | Value::Array(_))) =
                serde_json::from_str::<Value>(s)
            {
                return Value::String(normalize(&inner).to_string());
            }
            if is_timestamp(s) {
                return json!("<time>");
            }
            let s = replace_token(s, "s_", 32, "<session_id>");
            let s = replace_token(&s, "sub_", 16, "<subscription_id>");
            let s = replace_token(&s, "mqtt-mcp/reply/", 16, "<reply_id>");
            let s = replace_token(&s, "mqtt-mcp-", 12, "<client_id>");
            Value::String(replace_ports(&s))
        }
        other => other.clone(),
    }
}
