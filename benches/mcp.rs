//! End-to-end benchmark of the `mqtt-mcp` binary, driven over stdio exactly
//! as an MCP client drives it (spawn, write request lines, read answer lines,
//! match by id), next to the floor: a bare rumqttc client doing the same MQTT
//! work on the same broker with no MCP in between.
//!
//! ```sh
//! cargo bench --bench mcp               # print the Markdown report
//! cargo bench --bench mcp -- --write    # ... and write its sections of BENCHMARKS.md (or BENCH_WRITE=1)
//! cargo bench --bench mcp -- --quick    # far fewer iterations, to try it out (or BENCH_QUICK=1)
//! ```
//!
//! Measured, on the embedded broker and on Mosquitto (skipped with a notice
//! when `mosquitto` is not installed):
//! - cold start: spawn to the `initialize` answer line (20 spawns per configuration);
//! - `tools/call` latency, request line written to answer line read, for
//!   `list_active_connections`, `publish_message` QoS 0 and QoS 1 (1,000 calls
//!   each after a warm-up), and the floor's QoS 0 write / QoS 1 PUBACK latency;
//! - collect: 100,000 small messages published by a separate bare client,
//!   taken in by `subscribe_and_collect` and by `subscribe` + `read_messages`,
//!   and by a bare subscriber (the floor); rate, loss, and the server's own
//!   dropped/lost counts;
//! - the server's peak RSS (VmHWM) after each phase.
//!
//! Only 127.0.0.1 and OS-chosen free ports are used.

#[path = "report.rs"]
mod report;

use rumqttc::v5 as r5;
use rumqttc::Outgoing;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use r5::mqttbytes::v5::Packet;
use r5::mqttbytes::QoS;

// ---------------------------------------------------------------------------
// Settings

/// How much work each phase does.
#[derive(Clone, Copy)]
struct Sizes {
    /// Spawns per cold-start configuration (after one discarded warm-up spawn).
    spawns: usize,
    /// Unmeasured calls before each latency series.
    warmup: usize,
    /// Measured calls per latency series.
    calls: usize,
    /// Messages per collect burst.
    burst: usize,
    /// `duration_ms` of `subscribe_and_collect`: must cover the burst.
    collect_window_ms: u64,
    /// Repetitions of each collect path (the median is reported).
    reps: usize,
}

const FULL: Sizes = Sizes {
    spawns: 20,
    warmup: 200,
    calls: 1_000,
    burst: 100_000,
    collect_window_ms: 5_000,
    reps: 3,
};

const QUICK: Sizes = Sizes {
    spawns: 5,
    warmup: 20,
    calls: 100,
    burst: 10_000,
    collect_window_ms: 3_000,
    reps: 1,
};

/// The targets stated in the task, checked at the end.
const TARGET_COLD_MS: f64 = 10.0;
const TARGET_PUB_Q1_MS: f64 = 0.3;
const TARGET_RSS_EXTERNAL_KIB: u64 = 10 * 1024;
const TARGET_RSS_EMBEDDED_KIB: u64 = 25 * 1024;
const TARGET_COLLECT_RATE: f64 = 100_000.0;

const COLLECT_PATH: &str = "MCP `subscribe_and_collect`";
const BACKGROUND_PATH: &str = "MCP `subscribe` + `read_messages`";
const FLOOR_PATH: &str = "floor: bare rumqttc subscriber";

/// The BENCHMARKS.md sections this bench writes (`--write` keeps the others).
const OWNED_SECTIONS: [&str; 7] = [
    "## Machine",
    "## Targets",
    "## Cold start",
    "## `tools/call` latency",
    "## Collect throughput",
    "## Server peak RSS",
    "## Notes",
];

/// Payload of every published message in the latency series (7 bytes).
const LAT_PAYLOAD: &[u8] = br#"{"n":1}"#;

// ---------------------------------------------------------------------------
// Process bookkeeping: everything we start is killed on the way out, also by
// the watchdog if something hangs.

static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn track(pid: u32) {
    if let Ok(mut p) = PIDS.lock() {
        p.push(pid);
    }
}

fn untrack(pid: u32) {
    if let Ok(mut p) = PIDS.lock() {
        p.retain(|x| *x != pid);
    }
}

fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!(
            "bench: watchdog: no result after {limit:?}; killing what I started and giving up"
        );
        let pids: Vec<u32> = PIDS.lock().map(|p| p.clone()).unwrap_or_default();
        for pid in pids {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        std::process::exit(2);
    });
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

fn two_free_ports() -> (u16, u16) {
    let a = free_port();
    let mut b = free_port();
    while b == a {
        b = free_port();
    }
    (a, b)
}

/// Peak resident set (VmHWM) of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The MCP client: synchronous, on the bench's main thread, as a client would.

struct Mcp {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
    stderr: Arc<Mutex<Vec<u8>>>,
    next_id: u64,
    line: String,
}

impl Mcp {
    fn spawn(args: &[String]) -> Mcp {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqtt-mcp"));
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG");
        for (k, _) in std::env::vars() {
            if k.starts_with("MQTT_MCP_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().expect("spawn mqtt-mcp");
        track(child.id());
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let log = stderr.clone();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut l) = log.lock() {
                    if l.len() < 1 << 20 {
                        l.extend_from_slice(&buf[..n]);
                    }
                }
            }
        });
        Mcp {
            stdin: child.stdin.take(),
            out: BufReader::with_capacity(1 << 16, child.stdout.take().unwrap()),
            child,
            stderr,
            next_id: 1,
            line: String::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn hwm_kib(&self) -> u64 {
        vm_hwm_kib(self.pid())
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Writes one line (which must end in a newline) in a single write.
    fn write_line(&mut self, line: &[u8]) {
        self.stdin
            .as_mut()
            .expect("stdin open")
            .write_all(line)
            .expect("write to mqtt-mcp");
    }

    /// Reads lines until the answer with `id`; returns it and when its line was read.
    fn read_answer(&mut self, id: u64) -> (Value, Instant) {
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
            if v.get("method").is_none() && v.get("id").and_then(Value::as_u64) == Some(id) {
                return (v, at);
            }
        }
    }

    fn request_line(id: u64, method: &str, params: &Value) -> Vec<u8> {
        let mut l = serde_json::to_vec(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        )
        .unwrap();
        l.push(b'\n');
        l
    }

    fn call_line(id: u64, tool: &str, args: &Value) -> Vec<u8> {
        Self::request_line(id, "tools/call", &json!({"name": tool, "arguments": args}))
    }

    fn init_line(id: u64) -> Vec<u8> {
        Self::request_line(
            id,
            "initialize",
            &json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}),
        )
    }

    fn initialize(&mut self) {
        let id = self.fresh_id();
        let l = Self::init_line(id);
        self.write_line(&l);
        let (v, _) = self.read_answer(id);
        assert!(v.get("result").is_some(), "initialize failed: {v}");
        self.write_line(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
    }

    /// Takes the structuredContent out of a tools/call answer, or panics with the error.
    fn structured(tool: &str, mut v: Value) -> Value {
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
    fn call(&mut self, tool: &str, args: &Value) -> (Value, Duration) {
        let id = self.fresh_id();
        let line = Self::call_line(id, tool, args);
        let t0 = Instant::now();
        self.write_line(&line);
        let (v, t1) = self.read_answer(id);
        (Self::structured(tool, v), t1 - t0)
    }

    /// Waits until the default session is connected.
    fn wait_default_connected(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (v, _) = self.call("list_active_connections", &json!({}));
            let ok = v["sessions"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|s| s["is_default"] == true && s["state"] == "connected")
            });
            if ok {
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

    /// Closes stdin and waits (briefly) for a clean exit; kills otherwise.
    fn finish(mut self) {
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

impl Drop for Mcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        untrack(self.child.id());
    }
}

// ---------------------------------------------------------------------------
// Mosquitto on a free loopback port.

struct Mosquitto {
    child: Child,
    port: u16,
    dir: PathBuf,
    log: Arc<Mutex<Vec<u8>>>,
    version: String,
}

fn find_mosquitto() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
}

impl Mosquitto {
    fn start() -> Option<Mosquitto> {
        let bin = find_mosquitto()?;
        let version = Command::new(&bin)
            .arg("-h")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(|l| l.trim().to_string())
            })
            .unwrap_or_else(|| "mosquitto".into());
        let dir = std::env::temp_dir().join(format!("mqtt-mcp-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        for _attempt in 0..5 {
            let port = free_port();
            let conf = dir.join("mosquitto.conf");
            std::fs::write(
                &conf,
                format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
            )
            .ok()?;
            let mut child = Command::new(&bin)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .ok()?;
            track(child.id());
            let log = Arc::new(Mutex::new(Vec::new()));
            let l2 = log.clone();
            let mut err = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut l) = l2.lock() {
                        if l.len() < 1 << 20 {
                            l.extend_from_slice(&buf[..n]);
                        }
                    }
                }
            });
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Mosquitto {
                        child,
                        port,
                        dir,
                        log,
                        version,
                    });
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // lost the port race: try another
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
            untrack(child.id());
        }
        None
    }

    /// Lines of its log that report dropped messages.
    fn drop_notices(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.log.lock().unwrap())
            .lines()
            .filter(|l| l.contains("dropped"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        untrack(self.child.id());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------
// Bare rumqttc clients (the floor, and the burst publisher).

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn client_id(role: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("bench-{role}-{}-{n}", std::process::id())
}

/// Connects a bare MQTT 5 client (like the server's: TCP_NODELAY, 30 s keep-alive).
async fn bare_connect(port: u16, role: &str) -> (r5::AsyncClient, r5::EventLoop) {
    let mut o = r5::MqttOptions::new(client_id(role), "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_clean_start(true)
        .set_max_packet_size(Some(1 << 20));
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    o.set_network_options(net);
    let (c, mut el) = r5::AsyncClient::new(o, 4096);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), el.poll()).await {
            Ok(Ok(r5::Event::Incoming(Packet::ConnAck(_)))) => return (c, el),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("bare client cannot connect to 127.0.0.1:{port}: {e}"),
            Err(_) => panic!("bare client: no CONNACK from 127.0.0.1:{port}"),
        }
        assert!(Instant::now() < deadline, "bare client: no CONNACK");
    }
}

async fn bare_disconnect(c: &r5::AsyncClient, el: &mut r5::EventLoop) {
    if c.try_disconnect().is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match el.poll().await {
                Ok(r5::Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// The floor's publish latency: QoS 0 from `try_publish` until rumqttc wrote
/// and flushed the packet (its `Outgoing::Publish` event), QoS 1 until PUBACK.
fn floor_publish_latency(port: u16, topic: &str, qos: u8, sizes: Sizes) -> Vec<Duration> {
    runtime().block_on(async {
        let (c, mut el) = bare_connect(port, "lat").await;
        let q = if qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let mut out = Vec::with_capacity(sizes.calls);
        for i in 0..sizes.warmup + sizes.calls {
            let t0 = Instant::now();
            c.try_publish(topic, q, false, LAT_PAYLOAD.to_vec())
                .expect("bare publish");
            loop {
                match el.poll().await.expect("bare event loop") {
                    r5::Event::Outgoing(Outgoing::Publish(_)) if qos == 0 => break,
                    r5::Event::Incoming(Packet::PubAck(_)) if qos == 1 => break,
                    _ => {}
                }
            }
            if i >= sizes.warmup {
                out.push(t0.elapsed());
            }
        }
        bare_disconnect(&c, &mut el).await;
        out
    })
}

/// What a burst publisher did.
struct Burst {
    start: Instant,
    /// `start` on the wall clock, for comparison with another process.
    start_wall: SystemTime,
    end: Instant,
    sent: usize,
}

impl Burst {
    fn secs(&self) -> f64 {
        (self.end - self.start).as_secs_f64()
    }
}

/// Publishes `n` small QoS 0 messages to `topic` as fast as a bare rumqttc
/// client can, on a thread of its own. Timing starts after CONNACK; it ends
/// when the last PUBLISH was written.
fn spawn_burst(port: u16, topic: String, n: usize) -> JoinHandle<Burst> {
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let (c, mut el) = bare_connect(port, "pub").await;
            let start = Instant::now();
            let start_wall = SystemTime::now();
            let producer = {
                let c = c.clone();
                tokio::spawn(async move {
                    for i in 0..n {
                        let payload = format!("{{\"n\":{i}}}").into_bytes();
                        if c.publish(topic.as_str(), QoS::AtMostOnce, false, payload)
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                })
            };
            let mut sent = 0usize;
            while sent < n {
                match el.poll().await {
                    Ok(r5::Event::Outgoing(Outgoing::Publish(_))) => sent += 1,
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("bench: burst publisher: {e}");
                        break;
                    }
                }
            }
            let end = Instant::now();
            let _ = producer.await;
            bare_disconnect(&c, &mut el).await;
            Burst {
                start,
                start_wall,
                end,
                sent,
            }
        })
    })
}

/// What the bare subscriber took in.
struct FloorCollect {
    burst: Burst,
    received: usize,
    /// Arrival of the first and last message, ns since the epoch (the
    /// subscriber is another process, so wall clock, not `Instant`).
    first_ns: u128,
    last_ns: u128,
}

fn epoch_ns(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// The bare subscriber, run as a process of its own (this bench binary with
/// `--floor-subscriber PORT TOPIC N`), like the server is one: prints `READY`
/// after SUBACK, then `received first_ns last_ns` when done.
fn floor_subscriber_main(port: u16, topic: &str, n: usize) {
    let (received, first, last) = runtime().block_on(async move {
        let (c, mut el) = bare_connect(port, "sub").await;
        c.try_subscribe(topic, QoS::AtMostOnce)
            .expect("bare subscribe");
        loop {
            if let r5::Event::Incoming(Packet::SubAck(_)) =
                el.poll().await.expect("bare subscriber")
            {
                break;
            }
        }
        println!("READY");
        let _ = std::io::stdout().flush();
        let (mut received, mut first, mut last) = (0usize, 0u128, 0u128);
        while received < n {
            match tokio::time::timeout(Duration::from_secs(3), el.poll()).await {
                Ok(Ok(r5::Event::Incoming(Packet::Publish(_)))) => {
                    let now = epoch_ns(SystemTime::now());
                    if received == 0 {
                        first = now;
                    }
                    last = now;
                    received += 1;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    eprintln!("bench: bare subscriber: {e}");
                    break;
                }
                Err(_) => break, // 3 s without a message: the rest is lost
            }
        }
        bare_disconnect(&c, &mut el).await;
        (received, first, last)
    });
    println!("{received} {first} {last}");
}

/// The floor of collect: a bare subscriber (another process) takes in a burst.
fn floor_collect(port: u16, topic: &str, n: usize) -> FloorCollect {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([
            "--floor-subscriber".to_string(),
            port.to_string(),
            topic.to_string(),
            n.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the floor subscriber");
    track(child.id());
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("floor subscriber output");
    assert_eq!(line.trim(), "READY", "floor subscriber did not start");
    let burst = spawn_burst(port, topic.to_string(), n)
        .join()
        .expect("burst thread");
    line.clear();
    out.read_line(&mut line).expect("floor subscriber result");
    let _ = child.wait();
    untrack(child.id());
    let f: Vec<u128> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(f.len(), 3, "floor subscriber result: {line:?}");
    FloorCollect {
        burst,
        received: f[0] as usize,
        first_ns: f[1],
        last_ns: f[2],
    }
}

// ---------------------------------------------------------------------------
// Statistics and time helpers

#[derive(Clone, Copy, Default)]
struct Dist {
    min: f64,
    median: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

/// Nearest-rank percentiles of durations, in milliseconds.
fn dist(samples: &[Duration]) -> Dist {
    dist_f64(samples.iter().map(|d| d.as_secs_f64() * 1e3).collect())
}

/// Nearest-rank percentiles (the median averages the middle two).
fn dist_f64(mut v: Vec<f64>) -> Dist {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return Dist::default();
    }
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    let median = if v.len() % 2 == 0 {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    } else {
        v[v.len() / 2]
    };
    Dist {
        min: v[0],
        median,
        p95: rank(0.95),
        p99: rank(0.99),
        max: v[v.len() - 1],
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds since the epoch of the server's `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let n = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let days = days_from_civil(n(0, 4)?, n(5, 7)?, n(8, 10)?);
    let secs = days * 86_400 + n(11, 13)? * 3600 + n(14, 16)? * 60 + n(17, 19)?;
    let frac = s.get(20..s.len() - 1).unwrap_or("0");
    let ms = format!("{frac:0<3}").get(..3)?.parse::<i64>().ok()?;
    Some(secs * 1000 + ms)
}

fn utc_now() -> String {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem / 60) % 60
    )
}

fn rate(n: usize, secs: f64) -> Option<f64> {
    (secs > 0.0 && n > 1).then(|| (n - 1) as f64 / secs)
}

// ---------------------------------------------------------------------------
// Results

struct Cold {
    label: String,
    dist: Dist,
    hwm_kib: Dist,
}

/// One way of taking in the burst.
struct CollectRow {
    path: &'static str,
    /// Repetition (1-based).
    rep: usize,
    published: usize,
    publish_secs: f64,
    received: usize,
    /// What the server itself reported as dropped/lost (None for the floor).
    server_counted: Option<u64>,
    /// Rate at the receiver, first to last message (server clock for MCP).
    intake_rate: Option<f64>,
    /// Publish start to the last message in the client's hands.
    end_to_end_rate: Option<f64>,
    note: String,
}

impl CollectRow {
    fn uncounted(&self) -> i64 {
        self.published as i64 - self.received as i64 - self.server_counted.unwrap_or(0) as i64
    }
}

struct LatRow {
    call: &'static str,
    mcp: Dist,
    floor: Option<Dist>,
}

struct BrokerRun {
    name: String,
    external: bool,
    lat: Vec<LatRow>,
    collect: Vec<CollectRow>,
    rss: Vec<(String, u64)>,
    /// Peak over the MCP phases (before the floor runs).
    mcp_peak_kib: u64,
    notes: Vec<String>,
}

// ---------------------------------------------------------------------------
// Phases

fn cold_start(label: &str, args: &[String], sizes: Sizes) -> Cold {
    let once = || {
        let line = Mcp::init_line(1);
        let t0 = Instant::now();
        let mut m = Mcp::spawn(args);
        m.write_line(&line);
        let (v, t1) = m.read_answer(1);
        assert!(v.get("result").is_some(), "initialize failed: {v}");
        let hwm = m.hwm_kib();
        drop(m);
        (t1 - t0, hwm)
    };
    once(); // warm-up: page cache, first-exec costs
    let mut times = Vec::new();
    let mut hwm = Vec::new();
    for _ in 0..sizes.spawns {
        let (d, h) = once();
        times.push(d);
        hwm.push(h as f64);
    }
    Cold {
        label: label.into(),
        dist: dist(&times),
        hwm_kib: dist_f64(hwm),
    }
}

fn latency_series(
    m: &mut Mcp,
    tool: &str,
    args: &Value,
    check: Option<&str>,
    sizes: Sizes,
) -> Dist {
    let mut out = Vec::with_capacity(sizes.calls);
    for i in 0..sizes.warmup + sizes.calls {
        let (v, d) = m.call(tool, args);
        if let Some(status) = check {
            assert_eq!(v["status"], status, "{tool}: unexpected result {v}");
        }
        if i >= sizes.warmup {
            out.push(d);
        }
    }
    dist(&out)
}

fn mcp_collect(m: &mut Mcp, port: u16, topic: &str, sizes: Sizes) -> CollectRow {
    let n = sizes.burst;
    let window = sizes.collect_window_ms;
    let id = m.fresh_id();
    let line = Mcp::call_line(
        id,
        "subscribe_and_collect",
        &json!({"filter": topic, "max_messages": 10_000, "duration_ms": window}),
    );
    let t0 = Instant::now();
    m.write_line(&line);
    // The call answers only at the end of its window; give it time to SUBACK.
    std::thread::sleep(Duration::from_millis(400));
    let burst = spawn_burst(port, topic.to_string(), n)
        .join()
        .expect("burst thread");
    let (v, _) = m.read_answer(id);
    let r = Mcp::structured("subscribe_and_collect", v);
    let stats = &r["stats"];
    let received = stats["received"].as_u64().unwrap_or(0) as usize;
    let dropped = stats["dropped"].as_u64().unwrap_or(0);
    let msgs = r["messages"].as_array().cloned().unwrap_or_default();
    let ts = |m: Option<&Value>| {
        m.and_then(|m| m["received_at"].as_str())
            .and_then(parse_rfc3339_ms)
    };
    let span_ms = match (ts(msgs.first()), ts(msgs.last())) {
        (Some(a), Some(b)) => Some((b - a) as f64),
        _ => None,
    };
    let mut note = format!(
        "returned {} (sampled: {}), stopped_by {}",
        stats["returned"], stats["sampled"], stats["stopped_by"]
    );
    let covered = burst.end + Duration::from_millis(500) < t0 + Duration::from_millis(window);
    if !covered {
        note.push_str("; WARNING: the burst did not end 0.5 s before the window closed");
    }
    CollectRow {
        path: COLLECT_PATH,
        rep: 0,
        published: burst.sent,
        publish_secs: burst.secs(),
        received,
        server_counted: Some(dropped),
        intake_rate: span_ms.and_then(|s| rate(received, s / 1e3)),
        end_to_end_rate: None,
        note,
    }
}

fn mcp_background(m: &mut Mcp, port: u16, topic: &str, sizes: Sizes) -> CollectRow {
    let n = sizes.burst;
    let (sub, _) = m.call(
        "subscribe",
        &json!({"filter": topic, "buffer_messages": 100_000, "buffer_bytes": 67_108_864}),
    );
    let sub_id = sub["subscription_id"]
        .as_str()
        .expect("subscription_id")
        .to_string();
    let publisher = spawn_burst(port, topic.to_string(), n);
    let (mut cursor, mut read, mut lost, mut reads) = (0u64, 0usize, 0u64, 0usize);
    let (mut first_ms, mut last_ms, mut last_read) = (None, None, None);
    let mut idle = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (r, _) = m.call(
            "read_messages",
            &json!({"subscription_id": sub_id, "since": cursor, "limit": 1000, "wait_ms": 250}),
        );
        reads += 1;
        let msgs = r["messages"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        lost += r["lost"].as_u64().unwrap_or(0);
        cursor = r["next_cursor"].as_u64().unwrap_or(cursor);
        if msgs.is_empty() {
            idle += 1;
        } else {
            idle = 0;
            read += msgs.len();
            last_read = Some(Instant::now());
            let ts = |m: &Value| m["received_at"].as_str().and_then(parse_rfc3339_ms);
            if first_ms.is_none() {
                first_ms = ts(&msgs[0]);
            }
            last_ms = ts(&msgs[msgs.len() - 1]);
        }
        if read as u64 + lost >= n as u64
            || (publisher.is_finished() && idle >= 8)
            || Instant::now() > deadline
        {
            break;
        }
    }
    let burst = publisher.join().expect("burst thread");
    let (u, _) = m.call("unsubscribe", &json!({"subscription_id": sub_id}));
    let span = match (first_ms, last_ms) {
        (Some(a), Some(b)) => Some((b - a) as f64 / 1e3),
        _ => None,
    };
    CollectRow {
        path: BACKGROUND_PATH,
        rep: 0,
        published: burst.sent,
        publish_secs: burst.secs(),
        received: read,
        server_counted: Some(lost),
        intake_rate: span.and_then(|s| rate(read, s)),
        end_to_end_rate: last_read.and_then(|t| rate(read, (t - burst.start).as_secs_f64())),
        note: format!(
            "{reads} read_messages calls (limit 1000, wait_ms 250); server total_received {}",
            u["total_received"]
        ),
    }
}

fn run_broker(name: &str, args: Vec<String>, port: u16, external: bool, sizes: Sizes) -> BrokerRun {
    eprintln!("bench: {name}: MCP phases");
    let tag = format!(
        "bench/{}/{}",
        std::process::id(),
        if external { "ext" } else { "emb" }
    );
    let mut run = BrokerRun {
        name: name.into(),
        external,
        lat: Vec::new(),
        collect: Vec::new(),
        rss: Vec::new(),
        mcp_peak_kib: 0,
        notes: Vec::new(),
    };
    let mut m = Mcp::spawn(&args);
    m.initialize();
    m.wait_default_connected();
    std::thread::sleep(Duration::from_millis(100));
    run.rss
        .push(("initialized, default session connected".into(), m.hwm_kib()));

    let lat_topic = format!("{tag}/lat");
    let series: [(&'static str, &str, Value, Option<&str>); 3] = [
        (
            "list_active_connections",
            "list_active_connections",
            json!({}),
            None,
        ),
        (
            "publish_message QoS 0",
            "publish_message",
            json!({"topic": lat_topic, "payload": {"n": 1}, "qos": 0}),
            Some("sent"),
        ),
        (
            "publish_message QoS 1",
            "publish_message",
            json!({"topic": lat_topic, "payload": {"n": 1}, "qos": 1}),
            Some("acknowledged"),
        ),
    ];
    for (label, tool, args, check) in series {
        let d = latency_series(&mut m, tool, &args, check, sizes);
        run.lat.push(LatRow {
            call: label,
            mcp: d,
            floor: None,
        });
        run.rss.push((
            format!("after {label} ×{}", sizes.warmup + sizes.calls),
            m.hwm_kib(),
        ));
    }

    for rep in 1..=sizes.reps {
        let mut c = mcp_collect(&mut m, port, &format!("{tag}/collect"), sizes);
        c.rep = rep;
        run.collect.push(c);
        if rep == 1 {
            run.rss.push((
                format!("after subscribe_and_collect of {} messages", sizes.burst),
                m.hwm_kib(),
            ));
        }
        let mut b = mcp_background(&mut m, port, &format!("{tag}/bg"), sizes);
        b.rep = rep;
        run.collect.push(b);
        if rep == 1 {
            run.rss.push((
                format!(
                    "after subscribe (buffer_messages 100000) + read_messages of {} messages",
                    sizes.burst
                ),
                m.hwm_kib(),
            ));
        }
    }
    if sizes.reps > 1 {
        run.rss.push((
            format!("after all {} repetitions of both", sizes.reps),
            m.hwm_kib(),
        ));
    }
    run.mcp_peak_kib = m.hwm_kib();

    eprintln!("bench: {name}: floor (bare rumqttc)");
    let q0 = dist(&floor_publish_latency(port, &lat_topic, 0, sizes));
    let q1 = dist(&floor_publish_latency(port, &lat_topic, 1, sizes));
    run.lat[1].floor = Some(q0);
    run.lat[2].floor = Some(q1);
    for rep in 1..=sizes.reps {
        let f = floor_collect(port, &format!("{tag}/floor"), sizes.burst);
        let span = f.last_ns.saturating_sub(f.first_ns) as f64 / 1e9;
        let e2e = f.last_ns.saturating_sub(epoch_ns(f.burst.start_wall)) as f64 / 1e9;
        run.collect.push(CollectRow {
            path: FLOOR_PATH,
            rep,
            published: f.burst.sent,
            publish_secs: f.burst.secs(),
            received: f.received,
            server_counted: None,
            intake_rate: rate(f.received, span),
            end_to_end_rate: rate(f.received, e2e),
            note: String::new(),
        });
    }
    if !external {
        run.rss.push((
            "after the floor runs (the embedded broker served the bare clients)".into(),
            m.hwm_kib(),
        ));
    }
    let errors: Vec<String> = m
        .stderr_text()
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .take(5)
        .map(str::to_string)
        .collect();
    for e in errors {
        run.notes.push(format!("server stderr: `{e}`"));
    }
    m.finish();
    run
}

// ---------------------------------------------------------------------------
// Report

fn sh(cmd: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(cmd).args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The 1/5/15-minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn machine() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "?".into());
    let kernel = sh("uname", &["-srm"]).unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string()
    });
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<u64>().ok())
        .map(|k| format!("{:.1} GiB", k as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into());
    let rustc = sh("rustc", &["--version"]).unwrap_or_else(|| "unknown".into());
    let commit = sh(
        "git",
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
        ],
    )
    .unwrap_or_else(|| "unknown".into());
    vec![
        ("CPU".into(), format!("{model} (nproc {nproc})")),
        ("memory".into(), mem),
        ("kernel".into(), kernel),
        ("rustc".into(), rustc),
        ("source".into(), format!("git {commit}")),
    ]
}

fn ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn msgs_per_s(r: Option<f64>) -> String {
    match r {
        Some(r) => format!("{:.0}", r),
        None => "—".into(),
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "**met**"
    } else {
        "**not met**"
    }
}

/// One collect path over its repetitions.
struct Summary {
    path: &'static str,
    runs: usize,
    intake: Option<f64>,
    intake_min: Option<f64>,
    intake_max: Option<f64>,
    end_to_end: Option<f64>,
    published: usize,
    received: usize,
    counted: u64,
    uncounted: i64,
}

fn median_of(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    (!v.is_empty()).then(|| v[v.len() / 2])
}

fn summaries(run: &BrokerRun) -> Vec<Summary> {
    let mut out = Vec::new();
    for path in [COLLECT_PATH, BACKGROUND_PATH, FLOOR_PATH] {
        let rows: Vec<&CollectRow> = run.collect.iter().filter(|c| c.path == path).collect();
        if rows.is_empty() {
            continue;
        }
        let intakes: Vec<f64> = rows.iter().filter_map(|c| c.intake_rate).collect();
        out.push(Summary {
            path,
            runs: rows.len(),
            intake: median_of(intakes.clone()),
            intake_min: intakes.iter().copied().reduce(f64::min),
            intake_max: intakes.iter().copied().reduce(f64::max),
            end_to_end: median_of(rows.iter().filter_map(|c| c.end_to_end_rate).collect()),
            published: rows.iter().map(|c| c.published).sum(),
            received: rows.iter().map(|c| c.received).sum(),
            counted: rows.iter().filter_map(|c| c.server_counted).sum(),
            uncounted: rows.iter().map(|c| c.uncounted()).sum(),
        });
    }
    out
}

struct Results {
    load_start: String,
    load_end: String,
    sizes: Sizes,
    quick: bool,
    machine: Vec<(String, String)>,
    date: String,
    mosquitto: Option<String>,
    cold: Vec<Cold>,
    runs: Vec<BrokerRun>,
    notes: Vec<String>,
    wall: Duration,
}

fn render(r: &Results) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(
        w,
        "Generated by `cargo bench --bench mcp -- --write` (source: `benches/mcp.rs`) on {}; the run took {:.0} s.",
        r.date,
        r.wall.as_secs_f64()
    );
    if r.quick {
        let _ = writeln!(
            w,
            "\n**QUICK MODE: reduced iteration counts; not for the record.**"
        );
    }
    let _ = writeln!(w, "\n## Machine\n");
    for (k, v) in &r.machine {
        let _ = writeln!(w, "- {k}: {v}");
    }
    let _ = writeln!(
        w,
        "- brokers: the embedded rumqttd (in the server process; the default session speaks MQTT 5 to its v5 listener){}",
        match &r.mosquitto {
            Some(v) => format!("; {v} (`listener PORT 127.0.0.1`, `allow_anonymous true`, `persistence false`), server started with `--broker mqtt://127.0.0.1:PORT`"),
            None => "; Mosquitto: **not installed, skipped**".into(),
        }
    );
    let _ = writeln!(
        w,
        "- load average (1/5/15 min) at start: {}; at end: {} (other processes on the machine share its cores)",
        r.load_start, r.load_end
    );
    let _ = writeln!(
        w,
        "- binary: `mqtt-mcp` built by `cargo bench` (bench profile = release settings: opt-level 3, thin LTO, 4 codegen units)"
    );

    // Targets.
    let mut targets: Vec<(String, String, bool)> = Vec::new();
    for c in &r.cold {
        targets.push((
            format!(
                "cold start to `initialize` answer ≤ {TARGET_COLD_MS} ms median — {}",
                c.label
            ),
            format!("{} ms", ms(c.dist.median)),
            c.dist.median <= TARGET_COLD_MS,
        ));
    }
    for run in &r.runs {
        if let Some(row) = run.lat.iter().find(|l| l.call == "publish_message QoS 1") {
            targets.push((
                format!(
                    "`publish_message` QoS 1 ≤ {TARGET_PUB_Q1_MS} ms median — {}",
                    run.name
                ),
                format!("{} ms", ms(row.mcp.median)),
                row.mcp.median <= TARGET_PUB_Q1_MS,
            ));
        }
    }
    for run in &r.runs {
        let (limit, what) = if run.external {
            (TARGET_RSS_EXTERNAL_KIB, "an external broker")
        } else {
            (TARGET_RSS_EMBEDDED_KIB, "the embedded broker")
        };
        let idle = run.rss.first().map(|x| x.1).unwrap_or(0);
        targets.push((
            format!(
                "peak RSS ≤ {} with {what} ({}) — idle: after `initialize`, default session connected",
                mib(limit),
                run.name
            ),
            mib(idle),
            idle <= limit,
        ));
        let small = run
            .rss
            .iter()
            .take_while(|(phase, _)| !phase.contains("subscribe"))
            .map(|x| x.1)
            .max()
            .unwrap_or(0);
        targets.push((
            format!(
                "peak RSS ≤ {} with {what} ({}) — after the {} latency calls (no collect yet)",
                mib(limit),
                run.name,
                3 * (r.sizes.warmup + r.sizes.calls)
            ),
            mib(small),
            small <= limit,
        ));
        targets.push((
            format!(
                "peak RSS ≤ {} with {what} ({}) — peak over all MCP phases ({} × {} collected messages)",
                mib(limit),
                run.name,
                2 * r.sizes.reps,
                r.sizes.burst
            ),
            mib(run.mcp_peak_kib),
            run.mcp_peak_kib <= limit,
        ));
    }
    for run in &r.runs {
        for c in summaries(run).iter().filter(|c| c.path != FLOOR_PATH) {
            let rate_ok = c.intake.is_some_and(|x| x >= TARGET_COLLECT_RATE);
            targets.push((
                format!(
                    "collect ≥ 100,000 msg/s, every loss counted — {}, {}",
                    run.name, c.path
                ),
                format!(
                    "{} msg/s (median of {}); server-counted drops {} of {}; uncounted loss {}",
                    msgs_per_s(c.intake),
                    c.runs,
                    c.counted,
                    c.published,
                    c.uncounted
                ),
                rate_ok && c.uncounted == 0,
            ));
        }
    }
    let _ = writeln!(w, "\n## Targets\n");
    let met = targets.iter().filter(|t| t.2).count();
    let _ = writeln!(
        w,
        "{met} of {} checks met.{}\n",
        targets.len(),
        if r.mosquitto.is_none() {
            " Mosquitto is not installed: nothing was measured with an external broker."
        } else {
            ""
        }
    );
    let _ = writeln!(w, "| target | measured | verdict |\n|---|---|---|");
    for (what, measured, ok) in &targets {
        let _ = writeln!(w, "| {what} | {measured} | {} |", yes(*ok));
    }
    let missed: Vec<&str> = targets
        .iter()
        .filter(|t| !t.2)
        .map(|t| t.0.as_str())
        .collect();
    if missed.is_empty() {
        let _ = writeln!(w, "\nEvery target is met.");
    } else {
        let _ = writeln!(w, "\nNot met:\n");
        for m in missed {
            let _ = writeln!(w, "- {m}");
        }
    }

    // Cold start.
    let _ = writeln!(
        w,
        "\n## Cold start\n\nSpawn to reading the `initialize` answer line ({} spawns per configuration after one discarded warm-up spawn; `initialize` written right after spawn).\n",
        r.sizes.spawns
    );
    let _ = writeln!(
        w,
        "| configuration | median ms | min ms | max ms | VmHWM at answer (median) |\n|---|---|---|---|---|"
    );
    for c in &r.cold {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} |",
            c.label,
            ms(c.dist.median),
            ms(c.dist.min),
            ms(c.dist.max),
            mib(c.hwm_kib.median as u64)
        );
    }

    // Latency.
    let _ = writeln!(
        w,
        "\n## `tools/call` latency\n\nRequest line written to answer line read, {} calls each after {} warm-up calls, one at a time. Floor: a bare rumqttc MQTT 5 client on the same broker — QoS 0: `try_publish` until rumqttc has written and flushed the PUBLISH; QoS 1: until the PUBACK arrives.\n",
        r.sizes.calls, r.sizes.warmup
    );
    let _ = writeln!(
        w,
        "| broker | call | median ms | p95 ms | p99 ms | max ms | floor median ms | floor p99 ms | MCP/floor (median) |\n|---|---|---|---|---|---|---|---|---|"
    );
    for run in &r.runs {
        for l in &run.lat {
            let (fm, fp, ratio) = match l.floor {
                Some(f) => (
                    ms(f.median),
                    ms(f.p99),
                    format!("{:.1}×", l.mcp.median / f.median.max(1e-9)),
                ),
                None => ("—".into(), "—".into(), "—".into()),
            };
            let _ = writeln!(
                w,
                "| {} | `{}` | {} | {} | {} | {} | {fm} | {fp} | {ratio} |",
                run.name,
                l.call,
                ms(l.mcp.median),
                ms(l.mcp.p95),
                ms(l.mcp.p99),
                ms(l.mcp.max)
            );
        }
    }

    // Collect.
    let _ = writeln!(
        w,
        "\n## Collect throughput\n\nA separate bare rumqttc client publishes {} small QoS 0 messages (`{{\"n\":i}}`, one topic) as fast as it can, while the server takes them in: `subscribe_and_collect` (max_messages 10000, duration_ms {}, burst starts 0.4 s after the call), or `subscribe` (buffer_messages 100000, buffer_bytes 64 MiB) read with `read_messages` (limit 1000) while the burst runs. The floor is a bare rumqttc MQTT 5 subscriber on the same broker, in a process of its own (this bench binary, re-executed) as the server is. The publisher runs in the bench process; on a 2-core machine, publisher, broker and subscriber compete for the same cores, so rates vary from run to run: each path runs {} times, interleaved (collect, background, collect, ...; the floor after the MCP runs), each path on one topic of its own for all its runs.\n",
        r.sizes.burst, r.sizes.collect_window_ms, r.sizes.reps
    );
    let _ = writeln!(
        w,
        "- *intake msg/s*: (received − 1) / (last − first arrival); for MCP from the server's `received_at` stamps (ms resolution), for the floor from the subscriber's wall clock (ns).\n- *end-to-end msg/s*: received / (burst start → last message in the client's hands; for `read_messages` that is the answer line that carried it).\n- *server-counted*: `stats.dropped` of `subscribe_and_collect`, or the sum of `lost` over all `read_messages`.\n- *uncounted loss*: published − received − server-counted: lost where the server could not see it — in the broker (rumqttd drops log segments that a lagging subscriber has not read yet, without telling it; Mosquitto drops when its queue for a client is full and logs it), or still in flight when the window closed. The floor's loss is always uncounted: a loss there is the broker's.\n"
    );
    let _ = writeln!(
        w,
        "Summary ({} runs of each path; median by intake rate):\n",
        r.sizes.reps
    );
    let _ = writeln!(
        w,
        "| broker | path | intake msg/s, median (min–max) | end-to-end msg/s, median | received / published | server-counted | uncounted loss | MCP/floor (median intake) |\n|---|---|---|---|---|---|---|---|"
    );
    for run in &r.runs {
        let sums = summaries(run);
        let floor = sums
            .iter()
            .find(|c| c.path == FLOOR_PATH)
            .and_then(|c| c.intake);
        for c in &sums {
            let ratio = match (c.path != FLOOR_PATH, c.intake, floor) {
                (true, Some(a), Some(b)) => format!("{:.2}", a / b),
                _ => "—".into(),
            };
            let _ = writeln!(
                w,
                "| {} | {} | {} ({}–{}) | {} | {} / {} | {} | {} | {ratio} |",
                run.name,
                c.path,
                msgs_per_s(c.intake),
                msgs_per_s(c.intake_min),
                msgs_per_s(c.intake_max),
                msgs_per_s(c.end_to_end),
                c.received,
                c.published,
                if c.path == FLOOR_PATH {
                    "—".to_string()
                } else {
                    c.counted.to_string()
                },
                c.uncounted
            );
        }
    }
    let _ = writeln!(w, "\nEvery run:\n");
    let _ = writeln!(
        w,
        "| broker | path | run | published | publish s | received | server-counted | uncounted loss | intake msg/s | end-to-end msg/s | notes |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for run in &r.runs {
        for c in &run.collect {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {} |",
                run.name,
                c.path,
                c.rep,
                c.published,
                c.publish_secs,
                c.received,
                c.server_counted
                    .map(|x| x.to_string())
                    .unwrap_or("—".into()),
                c.uncounted(),
                msgs_per_s(c.intake_rate),
                msgs_per_s(c.end_to_end_rate),
                c.note
            );
        }
    }

    // RSS.
    let _ = writeln!(
        w,
        "\n## Server peak RSS\n\nVmHWM of the server process (`/proc/PID/status`) after each phase, in order; it only grows. With the embedded broker, the broker's memory is part of the server process.\n"
    );
    let _ = writeln!(w, "| broker | after phase | VmHWM |\n|---|---|---|");
    for run in &r.runs {
        for (phase, kib) in &run.rss {
            let _ = writeln!(w, "| {} | {phase} | {} ({kib} KiB) |", run.name, mib(*kib));
        }
    }

    let mut auto_notes = Vec::new();
    for run in &r.runs {
        let lost: i64 = run
            .collect
            .iter()
            .filter(|c| c.path == FLOOR_PATH)
            .map(|c| c.uncounted())
            .sum();
        if lost > 0 {
            auto_notes.push(format!(
                "{}: the bare subscriber (floor) lost {lost} messages too, so that much loss happens in the broker, before any client sees it.",
                run.name
            ));
        }
    }
    let notes: Vec<&String> = auto_notes
        .iter()
        .chain(r.notes.iter())
        .chain(r.runs.iter().flat_map(|x| x.notes.iter()))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(w, "\n## Notes\n");
        for n in notes {
            let _ = writeln!(w, "- {n}");
        }
    }
    s
}

// ---------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--floor-subscriber") {
        let port = args[1].parse().expect("port");
        let n = args[3].parse().expect("count");
        floor_subscriber_main(port, &args[2], n);
        return;
    }
    let flag = |f: &str, env: &str| {
        args.iter().any(|a| a == f) || std::env::var(env).is_ok_and(|v| v != "0" && !v.is_empty())
    };
    let write = flag("--write", "BENCH_WRITE");
    let quick = flag("--quick", "BENCH_QUICK");
    let sizes = if quick { QUICK } else { FULL };
    watchdog(Duration::from_secs(15 * 60));
    let started = Instant::now();
    let load_start = loadavg();
    let s = |x: &str| x.to_string();

    let mosq = Mosquitto::start();
    let mut notes = Vec::new();
    if mosq.is_none() {
        let n = "mosquitto not found (PATH, /usr/sbin): the Mosquitto part is skipped";
        eprintln!("bench: NOTICE: {n}");
        notes.push(n.to_string());
    }

    eprintln!("bench: cold start");
    let mut cold = vec![
        cold_start("embedded broker (`serve`)", &[s("serve")], sizes),
        cold_start(
            "`serve --no-embedded`",
            &[s("serve"), s("--no-embedded")],
            sizes,
        ),
    ];
    if let Some(mq) = &mosq {
        cold.push(cold_start(
            "`serve --broker` (Mosquitto)",
            &[
                s("serve"),
                s("--broker"),
                format!("mqtt://127.0.0.1:{}", mq.port),
            ],
            sizes,
        ));
    }

    let mut runs = Vec::new();
    let (v4, v5) = two_free_ports();
    runs.push(run_broker(
        "embedded rumqttd",
        vec![
            s("serve"),
            s("--embedded-port"),
            v4.to_string(),
            s("--embedded-port-v5"),
            v5.to_string(),
        ],
        v5,
        false,
        sizes,
    ));
    if let Some(mq) = &mosq {
        let mut run = run_broker(
            "Mosquitto",
            vec![
                s("serve"),
                s("--broker"),
                format!("mqtt://127.0.0.1:{}", mq.port),
            ],
            mq.port,
            true,
            sizes,
        );
        for l in mq.drop_notices().into_iter().take(5) {
            run.notes.push(format!("mosquitto log: `{l}`"));
        }
        runs.push(run);
    }

    let results = Results {
        load_start,
        load_end: loadavg(),
        sizes,
        quick,
        machine: machine(),
        date: utc_now(),
        mosquitto: mosq.as_ref().map(|m| m.version.clone()),
        cold,
        runs,
        notes,
        wall: started.elapsed(),
    };
    drop(mosq);
    let md = render(&results);
    println!("{md}");
    if write {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
        // Hand-written sections and benches/memory.rs's are kept.
        report::write(&path, &md, &OWNED_SECTIONS).expect("write BENCHMARKS.md");
        eprintln!("bench: wrote {}", path.display());
    }
}
