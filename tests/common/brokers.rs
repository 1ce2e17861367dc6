//! Brokers for the tool tests: a Mosquitto process on a free loopback port
//! (stopped on drop, restartable on the same port), the binary's own
//! `mqtt-mcp broker` as a separate process, and [`Target`], which names the
//! broker a test body runs against so that each body is written once and run
//! on the embedded broker and on Mosquitto (see [`on_both_brokers!`]).
//!
//! Without Mosquitto installed, Mosquitto runs print a notice and pass; with
//! the environment variable `CI` set they fail instead, because CI installs it.

use super::{free_port, Server};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::{SocketAddr, TcpStream};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// How long a broker may take to accept connections after its start.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// The `mosquitto` executable: on `PATH`, else `/usr/sbin/mosquitto`.
pub fn mosquitto_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("mosquitto"))
            .collect::<Vec<_>>()
    });
    on_path
        .chain([PathBuf::from("/usr/sbin/mosquitto")])
        .find(|p| p.is_file())
}

/// The Mosquitto binary, or None after a notice on stderr (the caller skips
/// its test). Panics under CI, where Mosquitto must be installed.
pub fn mosquitto_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(p) = mosquitto_binary() {
        return Some(p);
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: mosquitto is not installed; CI needs it (`apt-get install mosquitto`, as .ci/run does)");
    }
    eprintln!("NOTICE: {test} skipped: mosquitto is not installed (`apt-get install mosquitto` to run it)");
    None
}

/// True once something accepts TCP connections on 127.0.0.1:`port`.
pub fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(100),
    )
    .is_ok()
}

/// Waits until `child` logged `marker` (it bound its ports: a listener that
/// accepts could also be someone else's that won the race for the port) and
/// every port accepts; false if it exits first or the deadline passes.
fn wait_ready(child: &mut Child, log: &Path, marker: &str, ports: &[u16]) -> bool {
    let deadline = Instant::now() + READY_WITHIN;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        let logged = std::fs::read_to_string(log).is_ok_and(|l| l.contains(marker));
        if logged && ports.iter().all(|p| accepts(*p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Tries `launch` for about 5 s: a restarted broker's ports may still be
/// held for a moment by the process it replaces.
fn relaunch(mut launch: impl FnMut() -> bool) -> bool {
    for _ in 0..50 {
        if launch() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn stop_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A Mosquitto broker on 127.0.0.1 (MQTT 5, 3.1.1 and 3.1 on one port),
/// anonymous, without persistence unless started with
/// [`Mosquitto::start_persistent`]. Killed on drop.
pub struct Mosquitto {
    binary: PathBuf,
    child: Option<Child>,
    /// The listener port.
    pub port: u16,
    dir: tempfile::TempDir,
    starts: usize,
    /// Keeps sessions and queued messages on disk across restarts.
    persistent: bool,
}

impl Mosquitto {
    /// Starts Mosquitto on a free port, or returns None (after a notice) when
    /// it is not installed. A lost race for the port is retried on another.
    pub fn start(test: &str) -> Option<Mosquitto> {
        Mosquitto::start_with(test, false)
    }

    /// Like [`Mosquitto::start`], with persistence in its scratch directory:
    /// sessions (subscriptions, messages queued or in flight to a client)
    /// survive a kill and restart as of the last autosave (about every 2 s;
    /// see [`Mosquitto::saved_since`]). What it acknowledged since and had
    /// not yet delivered dies with a killed broker. No limit on messages in
    /// flight or queued per client, so none is held back or dropped.
    pub fn start_persistent(test: &str) -> Option<Mosquitto> {
        Mosquitto::start_with(test, true)
    }

    fn start_with(test: &str, persistent: bool) -> Option<Mosquitto> {
        let binary = mosquitto_or_skip(test)?;
        let mut m = Mosquitto {
            binary,
            child: None,
            port: 0,
            dir: super::scratch_dir("mosquitto"),
            starts: 0,
            persistent,
        };
        for _ in 0..5 {
            m.port = free_port();
            if m.launch() {
                return Some(m);
            }
        }
        panic!("mosquitto did not start; log:\n{}", m.log());
    }

    fn config(&self) -> PathBuf {
        let path = self.dir.path().join("mosquitto.conf");
        let persistence = if self.persistent {
            // `user root`: started as root, Mosquitto would drop to the
            // mosquitto user, which cannot write the scratch directory; it
            // has no effect when the starting user is not root.
            format!(
                "persistence true\npersistence_location {}/\nautosave_interval 1\nmax_inflight_messages 0\nmax_queued_messages 0\nuser root\n",
                self.persistence_dir().display()
            )
        } else {
            "persistence false\n".to_string()
        };
        let conf = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\n{persistence}sys_interval 1\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\nlog_timestamp false\n",
            self.port
        );
        std::fs::write(&path, conf).expect("write mosquitto.conf");
        path
    }

    fn persistence_dir(&self) -> PathBuf {
        let dir = self.dir.path().join("persistence");
        std::fs::create_dir_all(&dir).expect("create mosquitto persistence dir");
        dir
    }

    /// True once a persistent broker wrote its database after `t`: what it
    /// held at `t` survives a kill from now on.
    pub fn saved_since(&self, t: SystemTime) -> bool {
        std::fs::metadata(self.persistence_dir().join("mosquitto.db"))
            .and_then(|m| m.modified())
            .is_ok_and(|m| m > t)
    }

    fn log_path(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("mosquitto-{}.log", self.starts))
    }

    /// Starts the process on `self.port`; true once it accepts connections.
    fn launch(&mut self) -> bool {
        stop_child(&mut self.child);
        self.starts += 1;
        let config = self.config();
        let log = std::fs::File::create(self.log_path()).expect("create mosquitto log");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.binary.display()));
        let log = self.log_path();
        let child = self.child.insert(child);
        // "mosquitto version x running" follows a successful bind.
        wait_ready(child, &log, " running", &[self.port])
    }

    /// The running process's id, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The first line of `mosquitto -h` ("mosquitto version 2.0.x").
    pub fn version(&self) -> String {
        Command::new(&self.binary)
            .arg("-h")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(|l| l.trim().to_string())
            })
            .unwrap_or_else(|| "mosquitto".into())
    }

    /// `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Kills the broker (SIGKILL). Without persistence it forgets everything;
    /// with it, it keeps what it saved last.
    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }

    /// Starts it again on the same port (after [`Mosquitto::stop`] or while running).
    pub fn restart(&mut self) {
        let ok = relaunch(|| self.launch());
        assert!(
            ok,
            "mosquitto did not restart on port {}; log:\n{}",
            self.port,
            self.log()
        );
    }

    /// What the broker logged since its last start.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A server whose `default` session is this broker (`serve --broker`).
    pub fn serve(&self, extra: &[&str]) -> Server {
        let mut args = vec!["serve".to_string(), "--broker".into(), self.url()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Server::spawn(&args, &[])
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// The binary's own broker (`mqtt-mcp broker --port P --port-v5 Q`) as a
/// separate process that can be killed and restarted on the same ports.
pub struct BrokerProcess {
    child: Option<Child>,
    /// MQTT 3.1.1 listener.
    pub v4_port: u16,
    /// MQTT 5 listener.
    pub v5_port: u16,
    dir: tempfile::TempDir,
    starts: usize,
}

impl BrokerProcess {
    /// Starts on two free ports (retrying a lost race on others).
    pub fn start() -> BrokerProcess {
        let mut b = BrokerProcess {
            child: None,
            v4_port: 0,
            v5_port: 0,
            dir: super::scratch_dir("broker"),
            starts: 0,
        };
        for _ in 0..5 {
            b.v4_port = free_port();
            b.v5_port = free_port();
            if b.v4_port != b.v5_port && b.launch() {
                return b;
            }
        }
        panic!("mqtt-mcp broker did not start; log:\n{}", b.log());
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("broker-{}.log", self.starts))
    }

    fn launch(&mut self) -> bool {
        stop_child(&mut self.child);
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).expect("create broker log");
        let child = Command::new(super::bin())
            .args(["broker", "--port"])
            .arg(self.v4_port.to_string())
            .arg("--port-v5")
            .arg(self.v5_port.to_string())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn mqtt-mcp broker");
        let log = self.log_path();
        let child = self.child.insert(child);
        // Printed once both listeners are up.
        wait_ready(
            child,
            &log,
            "embedded broker: mqtt://",
            &[self.v4_port, self.v5_port],
        )
    }

    /// Kills the broker.
    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }

    /// Starts it again on the same ports.
    pub fn restart(&mut self) {
        let ok = relaunch(|| self.launch());
        let ports = format!("{}/{}", self.v4_port, self.v5_port);
        assert!(
            ok,
            "mqtt-mcp broker did not restart on ports {ports}; log:\n{}",
            self.log()
        );
    }

    /// What the broker logged since its last start.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// A server with `--broker mqtt://127.0.0.1:<port>` and `extra` args.
pub fn serve_external(port: u16, extra: &[&str]) -> Server {
    let mut args = vec![
        "serve".to_string(),
        "--broker".into(),
        format!("mqtt://127.0.0.1:{port}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Server::spawn(&args, &[])
}

/// Which broker a test body runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The binary's default: its embedded rumqttd (3.1.1 and 5 on two ports).
    Embedded,
    /// A Mosquitto process, given to the server with `--broker`.
    Mosquitto,
}

impl Target {
    /// Starts the broker and an initialized server on it; None when the
    /// target is not available here (the test then passes after a notice).
    pub fn start(self, test: &str) -> Option<Bench> {
        self.start_with(test, &[])
    }

    /// Like [`Target::start`], with extra `serve` arguments.
    pub fn start_with(self, test: &str, extra: &[&str]) -> Option<Bench> {
        let mut bench = match self {
            Target::Embedded => {
                let server = Server::embedded(extra);
                Bench {
                    target: self,
                    v4_port: server.v4_port,
                    v5_port: server.v5_port,
                    server,
                    mosquitto: None,
                }
            }
            Target::Mosquitto => {
                let m = Mosquitto::start(test)?;
                Bench {
                    target: self,
                    v4_port: m.port,
                    v5_port: m.port,
                    server: m.serve(extra),
                    mosquitto: Some(m),
                }
            }
        };
        bench.initialize();
        Some(bench)
    }
}

/// A running server and its broker. Derefs to the [`Server`].
pub struct Bench {
    /// Which broker.
    pub target: Target,
    /// The server under test (dropped before the broker).
    pub server: Server,
    /// Where MQTT 3.1.1 sessions connect.
    pub v4_port: u16,
    /// Where MQTT 5 sessions connect (the default session's broker).
    pub v5_port: u16,
    /// The Mosquitto process, for the Mosquitto target.
    pub mosquitto: Option<Mosquitto>,
}

impl Deref for Bench {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl DerefMut for Bench {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}

impl Bench {
    /// True on the embedded rumqttd.
    pub fn embedded(&self) -> bool {
        self.target == Target::Embedded
    }

    /// Opens an extra session with `protocol_version` "5" or "3.1.1" and returns its id.
    pub fn session(&mut self, protocol: &str) -> String {
        let port = if protocol == "5" {
            self.v5_port
        } else {
            self.v4_port
        };
        let r = self.call_ok(
            "establish_connection",
            json!({"host": "127.0.0.1", "port": port, "protocol_version": protocol}),
        );
        assert_eq!(r["protocol_version"], json!(protocol), "{r}");
        assert_eq!(r["fell_back_to_3_1_1"], json!(false), "{r}");
        r["session_id"].as_str().expect("session_id").to_string()
    }

    /// The default session and one extra session per protocol: `[(label, session_id or None)]`.
    pub fn sessions(&mut self) -> Vec<(&'static str, Option<String>)> {
        let v5 = self.session("5");
        let v4 = self.session("3.1.1");
        vec![("default", None), ("5", Some(v5)), ("3.1.1", Some(v4))]
    }

    /// The protocol a session (None = default) speaks, from list_active_connections.
    pub fn protocol_of(&mut self, session: Option<&str>) -> String {
        let s = self.session_info(session);
        s["protocol_version"].as_str().unwrap().to_string()
    }

    /// The log of the broker (Mosquitto only; empty otherwise).
    pub fn broker_log(&self) -> String {
        self.mosquitto
            .as_ref()
            .map(Mosquitto::log)
            .unwrap_or_default()
    }
}

/// Adds `session_id` to `args` when `session` is Some.
pub fn with_session(mut args: Value, session: Option<&str>) -> Value {
    if let Some(s) = session {
        args["session_id"] = json!(s);
    }
    args
}

/// Text of an `isError` result (panics if the result is not an error).
pub fn error_text(res: &Value) -> String {
    assert_eq!(res["isError"], json!(true), "expected isError: {res}");
    res["content"][0]["text"]
        .as_str()
        .expect("error text")
        .to_string()
}

/// A unique topic prefix per call, so tests sharing a broker never meet.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A plain MQTT 3.1.1 client (rumqttc), independent of the server under
/// test: publishes raw bytes and receives what it subscribed to.
pub struct RawClient {
    client: rumqttc::Client,
    events: mpsc::Receiver<rumqttc::Event>,
    /// Messages that arrived while waiting for an acknowledgement.
    received: VecDeque<rumqttc::Publish>,
}

impl RawClient {
    /// Connects to 127.0.0.1:`port` (MQTT 3.1.1) and waits for CONNACK.
    pub fn connect(port: u16) -> RawClient {
        let mut opts = rumqttc::MqttOptions::new(unique("raw"), "127.0.0.1", port);
        opts.set_max_packet_size(64 * 1024 * 1024, 64 * 1024 * 1024)
            .set_keep_alive(Duration::from_secs(30));
        let (client, mut conn) = rumqttc::Client::new(opts, 64);
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(ev) => {
                        if tx.send(ev).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        let mut raw = RawClient {
            client,
            events,
            received: VecDeque::new(),
        };
        raw.wait_for("CONNACK", |e| {
            matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))
        });
        raw
    }

    fn wait_for(&mut self, what: &str, mut pred: impl FnMut(&rumqttc::Event) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) if pred(&e) => return,
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    self.received.push_back(p)
                }
                Ok(_) => {}
                Err(_) => panic!("raw MQTT client: no {what} within 20 s"),
            }
        }
    }

    /// Publishes with QoS 1 and waits for PUBACK.
    pub fn publish(&mut self, topic: &str, payload: &[u8], retain: bool) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload.to_vec())
            .expect("raw publish");
        self.wait_for("PUBACK", |e| {
            matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))
        });
    }

    /// Subscribes with QoS 1 and waits for SUBACK.
    pub fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, rumqttc::QoS::AtLeastOnce)
            .expect("raw subscribe");
        self.wait_for("SUBACK", |e| {
            matches!(e, rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)))
        });
    }

    /// The next message received, if one arrives within `timeout`.
    pub fn next_publish(&mut self, timeout: Duration) -> Option<rumqttc::Publish> {
        if let Some(p) = self.received.pop_front() {
            return Some(p);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => return Some(p),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for RawClient {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

/// Polls `check` every 50 ms until it returns Some, at most `tries` times.
pub fn poll<T>(what: &str, tries: usize, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..tries {
        if let Some(v) = check() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("gave up waiting for {what} after {tries} tries");
}

/// Runs a test body `fn name(target: Target)` once per broker: generates
/// `mod name { #[test] fn embedded(); #[test] fn mosquitto(); }`.
#[macro_export]
macro_rules! on_both_brokers {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn embedded() {
                super::$name($crate::common::brokers::Target::Embedded)
            }
            #[test]
            fn mosquitto() {
                super::$name($crate::common::brokers::Target::Mosquitto)
            }
        }
    )+};
}

impl Server {
    /// Sends a `tools/call` without waiting and returns its id (for
    /// [`Server::recv_id`], [`Server::try_recv_id`] or a cancellation).
    pub fn send_call(&mut self, name: &str, args: Value) -> Value {
        self.next_id += 1;
        let id = json!(format!("call-{}", self.next_id));
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": args}}));
        id
    }

    /// The response with `id` if it arrives within `timeout`; other messages stay buffered.
    pub fn try_recv_id(&mut self, id: &Value, timeout: Duration) -> Option<Value> {
        let is_it = |m: &Value| m.get("id") == Some(id) && m.get("method").is_none();
        if let Some(pos) = self.buffered.iter().position(is_it) {
            return self.buffered.remove(pos);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("server wrote non-JSON {line:?}: {e}"));
            if is_it(&v) {
                return Some(v);
            }
            self.buffered.push_back(v);
        }
    }

    /// The structuredContent of a successful `tools/call` response.
    pub fn ok_of(resp: &Value) -> Value {
        let res = &resp["result"];
        assert_eq!(res["isError"], json!(false), "call failed: {resp}");
        res["structuredContent"].clone()
    }
}

impl Bench {
    /// Runs a listening call (subscribe_and_collect, list_topics,
    /// get_topic_schema, debug_device ...) and publishes while it listens:
    /// sends the call, publishes to `ready_topic` (which the call's filters
    /// must cover) until `topic_history` of `session` shows it, which proves
    /// the call's subscription is live, then runs `publish` and returns the
    /// call's response. The call's window must leave room for both.
    pub fn while_listening(
        &mut self,
        session: Option<&str>,
        tool: &str,
        args: Value,
        ready_topic: &str,
        publish: impl FnOnce(&mut Bench),
    ) -> Value {
        let id = self.send_call(tool, with_session(args, session));
        poll("the listening call's subscription", 200, || {
            self.call_ok(
                "publish_message",
                with_session(
                    json!({"topic": ready_topic, "payload": "ready", "qos": 1}),
                    session,
                ),
            );
            let h = self.call_ok(
                "topic_history",
                with_session(json!({"topic": ready_topic}), session),
            );
            (!h["messages"].as_array().unwrap().is_empty()).then_some(())
        });
        publish(self);
        self.recv_id(&id, Duration::from_secs(60))
    }

    /// Reads a background subscription from `since` until `n` messages
    /// arrived (waiting for each batch); returns them and the last answer.
    pub fn read_n(
        &mut self,
        session: Option<&str>,
        sub: &str,
        since: u64,
        n: usize,
    ) -> (Vec<Value>, Value) {
        let mut got = Vec::new();
        let mut cursor = since;
        let mut last = Value::Null;
        for _ in 0..10 {
            if got.len() >= n {
                break;
            }
            last = self.call_ok(
                "read_messages",
                with_session(
                    json!({"subscription_id": sub, "since": cursor, "wait_ms": 2000, "limit": 1000}),
                    session,
                ),
            );
            got.extend(last["messages"].as_array().unwrap().iter().cloned());
            cursor = last["next_cursor"].as_u64().unwrap();
        }
        assert_eq!(got.len(), n, "expected {n} messages, got {got:#?}");
        (got, last)
    }
}
