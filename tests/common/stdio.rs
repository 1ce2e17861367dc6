//! A synchronous stdio client of `mqtt-mcp`, for the benchmarks: it reads
//! answer lines on the calling thread, so the clock that times a call stops
//! when the line is read, with no reader thread or channel in between (the
//! tests' [`super::Server`] has both, to buffer notifications).

use super::{command, default_connected, initialize_params, is_answer, keep_output, status_kib};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most of a server's stderr kept (1 MiB): enough for its warnings, bounded
/// under a benchmark's load.
const STDERR_CAP: usize = 1 << 20;

/// A running `mqtt-mcp` driven over stdio; killed on drop.
pub struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
    stderr: Arc<Mutex<Vec<u8>>>,
    next_id: u64,
    line: String,
}

impl Client {
    /// Starts `mqtt-mcp <args>` (see [`super::command`]).
    pub fn spawn(args: &[String]) -> Client {
        let mut child = command().args(args).spawn().expect("spawn mqtt-mcp");
        let stderr = keep_output(child.stderr.take().expect("stderr"), STDERR_CAP);
        Client {
            stdin: child.stdin.take(),
            out: BufReader::with_capacity(1 << 16, child.stdout.take().expect("stdout")),
            child,
            stderr,
            next_id: 1,
            line: String::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set (VmHWM) in KiB.
    pub fn hwm_kib(&self) -> u64 {
        status_kib(self.pid(), "VmHWM:")
    }

    /// Resident set now (VmRSS) in KiB.
    pub fn rss_kib(&self) -> u64 {
        status_kib(self.pid(), "VmRSS:")
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Waits for `marker` on stderr and returns the port number after it.
    pub fn port_after(&self, marker: &str) -> u16 {
        super::port_logged(|| self.stderr_text(), marker)
    }

    pub fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Writes one line (which must end in a newline) in a single write.
    pub fn write_line(&mut self, line: &[u8]) {
        self.stdin
            .as_mut()
            .expect("stdin open")
            .write_all(line)
            .expect("write to mqtt-mcp");
    }

    /// Reads lines until the answer with `id`; returns it and when its line was read.
    pub fn read_answer(&mut self, id: u64) -> (Value, Instant) {
        let want = json!(id);
        loop {
            self.line.clear();
            let n = self.out.read_line(&mut self.line).unwrap_or(0);
            let at = Instant::now();
            if n == 0 {
                panic!(
                    "mqtt-mcp closed stdout while we waited for id {id}; stderr:\n{}",
                    self.stderr_text()
                );
            }
            let v: Value = serde_json::from_str(self.line.trim_end())
                .unwrap_or_else(|e| panic!("non-JSON line from mqtt-mcp ({e}): {}", self.line));
            if is_answer(&v, &want) {
                return (v, at);
            }
        }
    }

    /// A request line, newline included, ready for [`Client::write_line`].
    pub fn request_line(id: u64, method: &str, params: Value) -> Vec<u8> {
        let mut l = serde_json::to_vec(&super::request(id, method, params)).expect("JSON");
        l.push(b'\n');
        l
    }

    pub fn call_line(id: u64, tool: &str, args: &Value) -> Vec<u8> {
        Self::request_line(id, "tools/call", json!({"name": tool, "arguments": args}))
    }

    pub fn init_line(id: u64) -> Vec<u8> {
        Self::request_line(id, "initialize", initialize_params("bench"))
    }

    /// One request with a fresh id; its whole answer, which must be a result
    /// (and, for a tool call, not an `isError` one).
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.fresh_id();
        let line = Self::request_line(id, method, params);
        self.write_line(&line);
        let (v, _) = self.read_answer(id);
        assert!(v.get("result").is_some(), "{method}: {v}");
        assert_ne!(v["result"]["isError"], json!(true), "{method}: {v}");
        v
    }

    pub fn initialize(&mut self) {
        self.request("initialize", initialize_params("bench"));
        self.write_line(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
    }

    /// Takes the structuredContent out of a tools/call answer, or panics with the error.
    pub fn structured(tool: &str, mut v: Value) -> Value {
        let Some(res) = v.get_mut("result") else {
            panic!("tools/call {tool} gave a JSON-RPC error: {v}");
        };
        if res.get("isError") == Some(&Value::Bool(true)) {
            panic!("tool {tool} failed: {res}");
        }
        res.get_mut("structuredContent")
            .map(Value::take)
            .unwrap_or(Value::Null)
    }

    /// One tools/call; returns its structuredContent and the time from writing
    /// the request line to reading the answer line.
    pub fn call(&mut self, tool: &str, args: &Value) -> (Value, Duration) {
        let id = self.fresh_id();
        let line = Self::call_line(id, tool, args);
        let t0 = Instant::now();
        self.write_line(&line);
        let (v, t1) = self.read_answer(id);
        (Self::structured(tool, v), t1 - t0)
    }

    /// Waits until the default session is connected.
    pub fn wait_default_connected(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (v, _) = self.call("list_active_connections", &json!({}));
            if default_connected(&v) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the default session did not connect: {v}; stderr:\n{}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Closes stdin and waits (briefly) for a clean exit; drop kills otherwise.
    pub fn finish(mut self) {
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
