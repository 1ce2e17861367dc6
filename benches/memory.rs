//! Does memory return to its level? (issue 11) The resident set (VmRSS) of
//! the `mqtt-mcp` binary, with its embedded broker, after each of several
//! equal passes of work that leaves nothing behind:
//!
//! - HTTP: 6 passes of 20,000 calls over `serve --http`: 1,000 sessions per
//!   pass from 4 client threads, each session on one keep-alive connection:
//!   `initialize`, `notifications/initialized`, 17 requests (`tools/list`,
//!   `ping`, `list_active_connections`, `subscribe` + `unsubscribe`), and
//!   `DELETE`.
//! - stdio: 6 passes of 2,500 `subscribe` + `unsubscribe` cycles (15,000 in
//!   all) on the default session.
//!
//! The target: after the first pass (which grows pools, caches and arenas to
//! their working size), RSS stays within 2 MiB of its level.
//!
//! ```sh
//! cargo bench --bench memory               # print the Markdown section
//! cargo bench --bench memory -- --write    # ... and put it into BENCHMARKS.md
//! cargo bench --bench memory -- --quick    # a tenth of the work, to try it out
//! ```
//!
//! `--write` replaces only the section `## Memory over repeated passes` of
//! BENCHMARKS.md (appending it if missing; `benches/report.rs`); the rest is
//! `benches/mcp.rs`'s and hand-written. Only 127.0.0.1 and OS-chosen ports are used.

#[path = "report.rs"]
mod report;

use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The section this bench owns in BENCHMARKS.md.
const HEADING: &str = "## Memory over repeated passes";
/// Passes of each workload.
const PASSES: usize = 6;
/// Allowed growth after the first pass, KiB.
const FLAT_KIB: u64 = 2 * 1024;
/// Client threads of the HTTP workload.
const THREADS: usize = 4;
/// Calls per HTTP session: initialize, initialized, 17 requests, DELETE.
const CALLS_PER_SESSION: usize = 20;

/// The filter of the `n`th subscription: one of `distinct` recurring
/// filters, or a new one every time when `distinct` is 0.
fn filter(n: usize, distinct: usize) -> String {
    match distinct {
        0 => format!("bench/mem/{n}/#"),
        d => format!("bench/mem/{}/#", n % d),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// A field of `/proc/PID/status` in KiB (VmRSS: now; VmHWM: peak).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The server process; killed when dropped.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Option<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    /// `serve` on the embedded broker, or on `broker` (a URL) without it.
    fn spawn(broker: Option<&str>, extra: &[&str]) -> Proc {
        let (v4, mut v5) = (free_port(), free_port());
        while v5 == v4 {
            v5 = free_port();
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqtt-mcp"));
        cmd.arg("serve");
        match broker {
            Some(url) => cmd.args(["--broker", url, "--no-embedded"]),
            None => cmd
                .args(["--embedded-port", &v4.to_string()])
                .args(["--embedded-port-v5", &v5.to_string()]),
        };
        cmd.args(["--audit-log", "off"])
            .args(extra)
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
        let stderr = Arc::new(Mutex::new(String::new()));
        let log = stderr.clone();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Ok(mut l) = log.lock() {
                    if l.len() < 1 << 20 {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            }
        });
        Proc {
            stdin: child.stdin.take(),
            out: child.stdout.take().map(BufReader::new),
            child,
            stderr,
        }
    }

    fn rss_kib(&self) -> u64 {
        status_kib(self.child.id(), "VmRSS:")
    }

    fn log(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits for `marker` on stderr and returns the port number after it.
    fn port_after(&self, marker: &str) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log();
            if let Some(i) = log.find(marker) {
                let digits: String = log[i + marker.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                return digits.parse().expect("a port number");
            }
            assert!(Instant::now() < deadline, "no {marker:?} on stderr:\n{log}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// One stdio request; panics on a JSON-RPC error or a tool error.
    fn call(&mut self, id: u64, method: &str, params: Value) -> Value {
        let mut line =
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        line.push('\n');
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(line.as_bytes()).expect("write");
        let out = self.out.as_mut().expect("stdout");
        let mut answer = String::new();
        loop {
            answer.clear();
            assert!(out.read_line(&mut answer).expect("read") > 0, "EOF");
            let v: Value = serde_json::from_str(&answer).expect("JSON");
            if v.get("method").is_none() && v["id"] == json!(id) {
                assert!(v.get("result").is_some(), "{method}: {v}");
                assert_ne!(v["result"]["isError"], json!(true), "{method}: {v}");
                return v;
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 keep-alive connection.
struct Conn {
    port: u16,
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).ok();
        s.set_read_timeout(Some(Duration::from_secs(60))).ok();
        Conn {
            port,
            r: BufReader::new(s),
        }
    }

    /// Sends one request and reads its answer: status, session header, body.
    fn send(
        &mut self,
        method: &str,
        session: Option<&str>,
        body: &str,
    ) -> (u16, Option<String>, Vec<u8>) {
        let mut head = format!(
            "{method} /mcp HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        if let Some(s) = session {
            let _ = write!(
                head,
                "Mcp-Session-Id: {s}\r\nMCP-Protocol-Version: 2025-11-25\r\n"
            );
        }
        head.push_str("\r\n");
        head.push_str(body);
        self.r.get_mut().write_all(head.as_bytes()).expect("write");
        let mut line = String::new();
        self.r.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let (mut length, mut sid) = (0usize, None);
        loop {
            line.clear();
            self.r.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().expect("Content-Length");
                } else if k.eq_ignore_ascii_case("mcp-session-id") {
                    sid = Some(v.trim().to_string());
                }
            }
        }
        let mut body = vec![0; length];
        self.r.read_exact(&mut body).expect("body");
        (status, sid, body)
    }

    fn rpc(&mut self, session: &str, id: usize, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let (status, _, b) = self.send("POST", Some(session), &body.to_string());
        assert_eq!(status, 200, "{method}: {}", String::from_utf8_lossy(&b));
        let v: Value = serde_json::from_slice(&b).expect("JSON answer");
        assert_ne!(v["result"]["isError"], json!(true), "{method}: {v}");
        v
    }
}

/// One HTTP session of `CALLS_PER_SESSION` calls, ended by DELETE.
fn http_session(port: u16, n: usize, distinct: usize) -> usize {
    let mut c = Conn::open(port);
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench-memory", "version": "0"}}});
    let (status, sid, body) = c.send("POST", None, &init.to_string());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let sid = sid.expect("Mcp-Session-Id");
    let (status, _, _) = c.send(
        "POST",
        Some(&sid),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(status, 202);
    let mut calls = 2;
    let tool = |name: &str, args: Value| json!({"name": name, "arguments": args});
    for i in 1..=17 {
        let v = match i {
            1 => c.rpc(&sid, i, "tools/list", json!({})),
            2..=5 => c.rpc(
                &sid,
                i,
                "tools/call",
                tool("list_active_connections", json!({})),
            ),
            6 | 12 => {
                let v = c.rpc(
                    &sid,
                    i,
                    "tools/call",
                    tool("subscribe", json!({"filter": filter(n, distinct)})),
                );
                let sub = v["result"]["structuredContent"]["subscription_id"].clone();
                calls += 1;
                c.rpc(
                    &sid,
                    i + 100,
                    "tools/call",
                    tool("unsubscribe", json!({"subscription_id": sub})),
                )
            }
            7 | 13 => continue,
            _ => c.rpc(&sid, i, "ping", json!({})),
        };
        assert!(v.get("result").is_some());
        calls += 1;
    }
    let (status, _, _) = c.send("DELETE", Some(&sid), "");
    assert_eq!(status, 204);
    calls + 1
}

/// Which server, and what work it repeats.
struct Workload {
    /// The row's name in the report.
    name: String,
    /// `None`: the embedded broker; else a broker URL (Mosquitto).
    broker: Option<String>,
    /// HTTP sessions (`Some(sessions per pass)`) or stdio cycles (`None`).
    http_sessions: Option<usize>,
    /// stdio cycles per pass.
    cycles: usize,
    /// Distinct filters subscribed (0: a new one every time).
    distinct: usize,
}

/// One pass of a workload, given the server and the pass number.
type Pass = Box<dyn FnMut(&mut Proc, usize)>;

/// RSS after each pass and the peak, in KiB.
struct Measured {
    rss: Vec<u64>,
    hwm: u64,
}

/// Runs the passes of `w`: VmRSS 2 s after each (background session ends and
/// task exits settle), and VmHWM at the end.
fn measure(w: &Workload) -> Measured {
    let http = w.http_sessions.is_some();
    let mut p = Proc::spawn(
        w.broker.as_deref(),
        if http {
            &["--http", "127.0.0.1:0"]
        } else {
            &[]
        },
    );
    let mut work: Pass = match w.http_sessions {
        Some(sessions) => {
            let port = p.port_after("MCP Streamable HTTP listening on http://127.0.0.1:");
            let distinct = w.distinct;
            Box::new(move |_, pass| {
                let per = sessions / THREADS;
                let clients: Vec<_> = (0..THREADS)
                    .map(|t| {
                        std::thread::spawn(move || {
                            for i in 0..per {
                                http_session(port, (pass * THREADS + t) * per + i, distinct);
                            }
                        })
                    })
                    .collect();
                for c in clients {
                    c.join().expect("client thread");
                }
            })
        }
        None => {
            p.call(1, "initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench-memory", "version": "0"}}));
            let (cycles, distinct) = (w.cycles, w.distinct);
            let mut id = 10;
            Box::new(move |p, pass| {
                for n in pass * cycles..(pass + 1) * cycles {
                    id += 2;
                    let v = p.call(
                        id,
                        "tools/call",
                        json!({"name": "subscribe", "arguments": {"filter": filter(n, distinct)}}),
                    );
                    let sub = v["result"]["structuredContent"]["subscription_id"].clone();
                    p.call(
                        id + 1,
                        "tools/call",
                        json!({"name": "unsubscribe", "arguments": {"subscription_id": sub}}),
                    );
                }
            })
        }
    };
    let mut rss = Vec::new();
    for pass in 0..PASSES {
        let t0 = Instant::now();
        work(&mut p, pass);
        std::thread::sleep(Duration::from_secs(2));
        let now = p.rss_kib();
        rss.push(now);
        eprintln!(
            "bench-memory: {}: pass {} ({:.1} s): VmRSS {}",
            w.name,
            pass + 1,
            t0.elapsed().as_secs_f64(),
            mib(now)
        );
    }
    Measured {
        rss,
        hwm: status_kib(p.child.id(), "VmHWM:"),
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Growth after the first pass: the highest later RSS minus the first pass's.
fn growth(rss: &[u64]) -> i64 {
    let first = rss.first().copied().unwrap_or(0) as i64;
    rss.iter()
        .skip(1)
        .map(|&r| r as i64 - first)
        .max()
        .unwrap_or(0)
}

fn render(date: &str, cmd: &str, rows: &[(Workload, Measured)], notes: &[String]) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "{HEADING}\n");
    let _ = writeln!(w, "Generated by `{cmd}` (source: `benches/memory.rs`) on {date}, on the machine above, with the `mqtt-mcp` that `cargo bench` builds. VmRSS of the server process (the embedded broker, when used, is part of it) 2 s after each pass; a pass leaves nothing behind (HTTP sessions deleted, subscriptions removed). Target: after the first pass (which grows pools and allocator arenas to their working size), RSS stays within {} of its level.\n", mib(FLAT_KIB));
    let _ = writeln!(
        w,
        "| workload | pass 1 | 2 | 3 | 4 | 5 | 6 | growth after pass 1 | peak (VmHWM) | verdict |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|");
    for (wl, m) in rows {
        let cells: Vec<String> = m.rss.iter().map(|&r| mib(r)).collect();
        let g = growth(&m.rss);
        let verdict = if g <= FLAT_KIB as i64 {
            "**met**"
        } else {
            "**not met**"
        };
        let _ = writeln!(
            w,
            "| {} | {} | {:+.1} MiB | {} | {verdict} |",
            wl.name,
            cells.join(" | "),
            g as f64 / 1024.0,
            mib(m.hwm)
        );
    }
    if !notes.is_empty() {
        let _ = writeln!(w);
        for n in notes {
            let _ = writeln!(w, "- {n}");
        }
    }
    s
}
fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Starts Mosquitto (PATH or /usr/sbin) on a free port, if installed.
fn mosquitto() -> Option<(Child, String)> {
    let bin = ["mosquitto", "/usr/sbin/mosquitto"].into_iter().find(|b| {
        Command::new(b)
            .arg("-h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    })?;
    let port = free_port();
    let conf = std::env::temp_dir().join(format!(
        "bench-memory-mosquitto-{}.conf",
        std::process::id()
    ));
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_connections -1\n")).ok()?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((child, format!("mqtt://127.0.0.1:{port}")))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    if flag("--list") {
        return;
    }
    let (write, quick) = (flag("--write"), flag("--quick"));
    let (sessions, cycles) = if quick { (100, 250) } else { (1_000, 2_500) };
    let cmd = format!(
        "cargo bench --bench memory --{}",
        if quick {
            " --quick --write"
        } else {
            " --write"
        }
    );
    let mut mosq = mosquitto();
    let mut notes = Vec::new();
    let mut plan = vec![
        Workload {
            name: format!("HTTP, embedded broker: {PASSES} × {} calls ({sessions} sessions of {CALLS_PER_SESSION} calls from {THREADS} clients; 64 filters)", sessions * CALLS_PER_SESSION),
            broker: None,
            http_sessions: Some(sessions),
            cycles: 0,
            distinct: 64,
        },
        Workload {
            name: format!("stdio, embedded broker: {PASSES} × {cycles} `subscribe` + `unsubscribe` (64 filters)"),
            broker: None,
            http_sessions: None,
            cycles,
            distinct: 64,
        },
        Workload {
            name: format!("stdio, embedded broker: {PASSES} × {cycles} `subscribe` + `unsubscribe`, a new filter each time"),
            broker: None,
            http_sessions: None,
            cycles,
            distinct: 0,
        },
    ];
    match &mosq {
        Some((_, url)) => plan.push(Workload {
            name: format!("stdio, Mosquitto: {PASSES} × {cycles} `subscribe` + `unsubscribe`, a new filter each time"),
            broker: Some(url.clone()),
            http_sessions: None,
            cycles,
            distinct: 0,
        }),
        None => notes.push("mosquitto not found (PATH, /usr/sbin): its row is skipped".to_string()),
    }
    let rows: Vec<(Workload, Measured)> = plan
        .into_iter()
        .map(|w| {
            let m = measure(&w);
            (w, m)
        })
        .collect();
    // Per distinct filter, from the passes after the first.
    let per_filter_kib = rows
        .iter()
        .find(|(w, _)| w.broker.is_none() && w.distinct == 0)
        .map(|(w, m)| growth(&m.rss) as f64 / (w.cycles * (PASSES - 1)) as f64)
        .filter(|&g| g * ((PASSES - 1) * cycles) as f64 > FLAT_KIB as f64);
    if let Some(kib) = per_filter_kib {
        notes.push(format!("A new filter each time grows with the embedded broker only, by {:.1} KiB per filter: rumqttd 0.20 keeps a commit log (`Data`: a segment whose 1,024-message buffer is allocated up front, waiters, meter; `DataLog::native` and `filter_indexes` in rumqttd's `src/router/logs.rs`) for every distinct filter ever subscribed, and never removes it. With Mosquitto the same workload is flat, so the server itself keeps nothing per subscription. The growth is bounded by the number of distinct filters, not by the number of subscriptions.", kib));
    }
    if let Some((child, _)) = &mut mosq {
        let _ = child.kill();
        let _ = child.wait();
    }
    let section = render(&utc_now(), &cmd, &rows, &notes);
    println!("{section}");
    if write {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
        report::write(&path, &section, &[HEADING]).expect("write BENCHMARKS.md");
        eprintln!("bench-memory: wrote {}", path.display());
    }
}
