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

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "report.rs"]
mod report;

use common::brokers::Mosquitto;
use common::http::KeepAlive;
use common::stdio::Client;
use report::{mib, report_minute};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::PathBuf;
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

/// `serve` on the embedded broker, or on `broker` (a URL) without it; no audit log.
fn spawn(broker: Option<&str>, extra: &[&str]) -> Client {
    let mut args: Vec<String> = vec!["serve".into()];
    match broker {
        Some(url) => args.extend(["--broker".into(), url.into(), "--no-embedded".into()]),
        None => {
            let (v4, v5) = common::free_port_pair();
            args.extend([
                "--embedded-port".into(),
                v4.to_string(),
                "--embedded-port-v5".into(),
                v5.to_string(),
            ]);
        }
    }
    args.extend(["--audit-log".into(), "off".into()]);
    args.extend(extra.iter().map(|a| a.to_string()));
    Client::spawn(&args)
}

/// One POST of an MCP session over a keep-alive connection; the answer's
/// status, `Mcp-Session-Id` and body.
fn post(c: &mut KeepAlive, session: Option<&str>, body: &str) -> common::http::Resp {
    send(c, "POST", session, body)
}

fn send(c: &mut KeepAlive, method: &str, session: Option<&str>, body: &str) -> common::http::Resp {
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    if let Some(s) = session {
        headers.extend([
            ("Mcp-Session-Id", s),
            ("MCP-Protocol-Version", "2025-11-25"),
        ]);
    }
    c.send(method, &headers, body.as_bytes())
}

/// One request of a session; its answer, which must be a result that is not an `isError`.
fn rpc(c: &mut KeepAlive, session: &str, id: usize, method: &str, params: Value) -> Value {
    let body = common::request(id, method, params);
    let r = post(c, Some(session), &body.to_string());
    assert_eq!(
        r.status,
        200,
        "{method}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json();
    assert_ne!(v["result"]["isError"], json!(true), "{method}: {v}");
    v
}

/// One HTTP session of `CALLS_PER_SESSION` calls, ended by DELETE.
fn http_session(port: u16, n: usize, distinct: usize) -> usize {
    let mut c = KeepAlive::open(port);
    let init = common::request(0, "initialize", common::initialize_params("bench-memory"));
    let r = post(&mut c, None, &init.to_string());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let sid = r
        .header("mcp-session-id")
        .expect("Mcp-Session-Id")
        .to_string();
    let r = post(
        &mut c,
        Some(&sid),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(r.status, 202);
    let mut calls = 2;
    let tool = |name: &str, args: Value| json!({"name": name, "arguments": args});
    for i in 1..=17 {
        let v = match i {
            1 => rpc(&mut c, &sid, i, "tools/list", json!({})),
            2..=5 => rpc(
                &mut c,
                &sid,
                i,
                "tools/call",
                tool("list_active_connections", json!({})),
            ),
            6 | 12 => {
                let v = rpc(
                    &mut c,
                    &sid,
                    i,
                    "tools/call",
                    tool("subscribe", json!({"filter": filter(n, distinct)})),
                );
                let sub = v["result"]["structuredContent"]["subscription_id"].clone();
                calls += 1;
                rpc(
                    &mut c,
                    &sid,
                    i + 100,
                    "tools/call",
                    tool("unsubscribe", json!({"subscription_id": sub})),
                )
            }
            7 | 13 => continue,
            _ => rpc(&mut c, &sid, i, "ping", json!({})),
        };
        assert!(v.get("result").is_some());
        calls += 1;
    }
    assert_eq!(send(&mut c, "DELETE", Some(&sid), "").status, 204);
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
type Pass = Box<dyn FnMut(&mut Client, usize)>;

/// RSS after each pass and the peak, in KiB.
struct Measured {
    rss: Vec<u64>,
    hwm: u64,
}

/// Runs the passes of `w`: VmRSS 2 s after each (background session ends and
/// task exits settle), and VmHWM at the end.
fn measure(w: &Workload) -> Measured {
    let http = w.http_sessions.is_some();
    let mut p = spawn(
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
            p.initialize();
            let (cycles, distinct) = (w.cycles, w.distinct);
            Box::new(move |p, pass| {
                for n in pass * cycles..(pass + 1) * cycles {
                    let v = p.request(
                        "tools/call",
                        json!({"name": "subscribe", "arguments": {"filter": filter(n, distinct)}}),
                    );
                    let sub = v["result"]["structuredContent"]["subscription_id"].clone();
                    p.request(
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
        hwm: p.hwm_kib(),
    }
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
    let mosq = Mosquitto::start("bench-memory");
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
        Some(m) => plan.push(Workload {
            name: format!("stdio, Mosquitto: {PASSES} × {cycles} `subscribe` + `unsubscribe`, a new filter each time"),
            broker: Some(m.url()),
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
    drop(mosq);
    let section = render(
        &report_minute(&mqtt_mcp::session::rfc3339(std::time::SystemTime::now())),
        &cmd,
        &rows,
        &notes,
    );
    println!("{section}");
    if write {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
        report::write(&path, &section, &[HEADING]).expect("write BENCHMARKS.md");
        eprintln!("bench-memory: wrote {}", path.display());
    }
}
