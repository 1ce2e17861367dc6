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
//! The server process, its stdio client and Mosquitto are the tests' own
//! (`tests/common/`: `stdio.rs`, `brokers.rs`); this file holds the settings,
//! the results and the order of the phases; `mcp/phases.rs` the phases over
//! MCP, `mcp/floor.rs` the bare rumqttc clients, `mcp/stats.rs` the
//! statistics, `mcp/render.rs` the report.
//!
//! Only 127.0.0.1 and OS-chosen free ports are used.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "mcp/floor.rs"]
mod floor;
#[path = "mcp/phases.rs"]
mod phases;
#[path = "mcp/render.rs"]
mod render;
#[path = "report.rs"]
mod report;
#[path = "mcp/stats.rs"]
mod stats;

use common::brokers::Mosquitto;
use common::stdio::Client;
use floor::*;
use phases::*;
use render::*;
use rumqttc::v5 as r5;
use rumqttc::Outgoing;
use serde_json::{json, Value};
use stats::*;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
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
    PIDS.lock().unwrap_or_else(|p| p.into_inner()).push(pid);
}

fn untrack(pid: u32) {
    PIDS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|x| *x != pid);
}

/// Keeps a process on the watchdog's list while it lives.
struct Tracked(u32);

impl Tracked {
    fn new(pid: u32) -> Tracked {
        track(pid);
        Tracked(pid)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        untrack(self.0);
    }
}

/// The MCP client the phases drive (`tests/common/stdio.rs`), on the
/// watchdog's list.
struct Mcp {
    client: Client,
    /// After `client`, so the process is killed before it leaves the list.
    _tracked: Tracked,
}

impl Mcp {
    fn spawn(args: &[String]) -> Mcp {
        let client = Client::spawn(args);
        let _tracked = Tracked::new(client.pid());
        Mcp { client, _tracked }
    }

    fn finish(self) {
        let Mcp { client, _tracked } = self;
        client.finish();
    }
}

impl std::ops::Deref for Mcp {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Mcp {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!(
            "bench: watchdog: no result after {limit:?}; killing what I started and giving up"
        );
        let pids: Vec<u32> = PIDS.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for pid in pids {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        std::process::exit(2);
    });
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

    let mosq = Mosquitto::start("bench");
    let _mosq_tracked = mosq.as_ref().and_then(Mosquitto::pid).map(Tracked::new);
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
    let (v4, v5) = common::free_port_pair();
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
        let log = mq.log();
        for l in log.lines().filter(|l| l.contains("dropped")).take(5) {
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
        date: report::report_minute(&mqtt_mcp::session::rfc3339(SystemTime::now())),
        mosquitto: mosq.as_ref().map(Mosquitto::version),
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
