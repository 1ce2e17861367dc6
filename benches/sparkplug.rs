//! Sparkplug B decode throughput (issue 15), against JSON with the same
//! values. `cargo bench --bench sparkplug` prints the tables that
//! BENCHMARKS.md's "Sparkplug decode throughput" section holds.
//!
//! - in-process: `tools::message_json` (the shape every tool shows) plus
//!   serialization, over 100,000 DDATA messages of 10 metrics each, and over
//!   100,000 JSON messages carrying the same 10 named values;
//! - end to end: the release binary on its embedded broker; a bare rumqttc
//!   client publishes the same 100,000-message bursts at QoS 0 while
//!   `subscribe_and_collect` (max_messages 10,000, duration_ms 4,000)
//!   listens; reported: intake, and the time the call took past its window
//!   (building, decoding and writing the 10,000 returned messages).

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports, unused_macros)]
mod common;

use mqtt_mcp::mqtt::client::Message;
use mqtt_mcp::sparkplug::proto::{Metric, MetricValue};
use mqtt_mcp::tools::{message_json, Seen};
use prost::Message as _;
use serde_json::json;
use std::time::{Duration, Instant, SystemTime};

const BURST: usize = 100_000;
const METRICS: usize = 10;
const WINDOW_MS: u64 = 4_000;
const RUNS: usize = 3;

/// Message `i` of a burst as Sparkplug DDATA: 10 named metrics of mixed types.
fn ddata(i: usize) -> Vec<u8> {
    let mut out = vec![0x08];
    prost::encoding::encode_varint(1_764_000_000_000 + i as u64, &mut out);
    out.push(0x18);
    prost::encoding::encode_varint((i % 256) as u64, &mut out);
    for k in 0..METRICS {
        let value = match k % 3 {
            0 => MetricValue::Double(i as f64 * 0.5 + k as f64),
            1 => MetricValue::Int((i + k) as u32),
            _ => MetricValue::Boolean(i % 2 == 0),
        };
        let m = Metric {
            name: Some(format!("machine/sensor{k}")),
            datatype: Some(match k % 3 {
                0 => 10,
                1 => 7,
                _ => 11,
            }),
            value: Some(value),
            ..Default::default()
        };
        let body = m.encode_to_vec();
        out.push(0x12);
        prost::encoding::encode_varint(body.len() as u64, &mut out);
        out.extend(body);
    }
    out
}

/// The same values as a JSON object.
fn json_payload(i: usize) -> Vec<u8> {
    let mut metrics = serde_json::Map::new();
    for k in 0..METRICS {
        let v = match k % 3 {
            0 => json!(i as f64 * 0.5 + k as f64),
            1 => json!(i + k),
            _ => json!(i % 2 == 0),
        };
        metrics.insert(format!("machine/sensor{k}"), v);
    }
    serde_json::to_vec(
        &json!({"timestamp": 1_764_000_000_000u64 + i as u64, "seq": i % 256, "metrics": metrics}),
    )
    .unwrap()
}

struct Kind {
    name: &'static str,
    /// The payload format every message must be shown with.
    format: &'static str,
    topic: &'static str,
    make: fn(usize) -> Vec<u8>,
}

const KINDS: [Kind; 2] = [
    Kind {
        name: "Sparkplug DDATA",
        format: "sparkplug",
        topic: "spBv1.0/bench/DDATA/node1/dev1",
        make: ddata,
    },
    Kind {
        name: "JSON",
        format: "json",
        topic: "bench/json/node1/dev1",
        make: json_payload,
    },
];

fn in_process(kind: &Kind) -> (f64, usize, usize) {
    let msgs: Vec<Message> = (0..BURST)
        .map(|i| Message {
            topic: kind.topic.into(),
            payload: bytes::Bytes::from((kind.make)(i)),
            qos: 0,
            retain: false,
            received_at: SystemTime::now(),
            props: None,
        })
        .collect();
    let in_bytes: usize = msgs.iter().map(|m| m.payload.len()).sum();
    let start = Instant::now();
    let mut out_bytes = 0;
    for m in &msgs {
        let shown = message_json(m, 4096, Seen::nothing());
        assert_eq!(shown.payload.format, kind.format, "{:?}", shown.payload);
        out_bytes += serde_json::to_string(&shown).unwrap().len();
    }
    let secs = start.elapsed().as_secs_f64();
    (BURST as f64 / secs, in_bytes, out_bytes)
}

fn end_to_end(server: &mut common::Server, kind: &Kind, run: usize) -> (u64, u64, f64, usize) {
    let topic = format!("{}{run}", kind.topic);
    let payloads: Vec<Vec<u8>> = (0..BURST).map(kind.make).collect();
    let id = server.send_call(
        "subscribe_and_collect",
        json!({"filter": topic, "duration_ms": WINDOW_MS, "max_messages": 10_000, "preview_bytes": 4096, "timeout_ms": 120_000}),
    );
    let called = Instant::now();
    std::thread::sleep(Duration::from_millis(400));
    let mut opts = rumqttc::MqttOptions::new(
        format!("bench-pub-{run}-{}", kind.name.len()),
        "127.0.0.1",
        server.v4_port,
    );
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut conn) = rumqttc::Client::new(opts, 1000);
    let pump = std::thread::spawn(move || {
        for ev in conn.iter() {
            if ev.is_err() {
                break;
            }
        }
    });
    for p in payloads {
        client
            .publish(topic.as_str(), rumqttc::QoS::AtMostOnce, false, p)
            .unwrap();
    }
    let answer = server.recv_id(&id, Duration::from_secs(120));
    let elapsed = called.elapsed().as_secs_f64();
    let _ = client.disconnect();
    let _ = pump.join();
    let line = answer.to_string().len();
    let r = common::Server::ok_of(&answer);
    let received = r["stats"]["received"].as_u64().unwrap_or(0);
    let returned = r["stats"]["returned"].as_u64().unwrap_or(0);
    let past = (elapsed - WINDOW_MS as f64 / 1000.0).max(0.0);
    (received, returned, past, line)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("## Sparkplug decode throughput\n");
    println!("In-process (`tools::message_json` + serialization, {BURST} messages of {METRICS} metrics, preview 4096):\n");
    println!("| payload | msg/s | payload bytes | shown JSON bytes |\n|---|---|---|---|");
    for kind in &KINDS {
        let mut rates = Vec::new();
        let mut sizes = (0, 0);
        for _ in 0..RUNS {
            let (rate, i, o) = in_process(kind);
            rates.push(rate);
            sizes = (i, o);
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "| {} | {:.0} (min {:.0}, max {:.0}) | {} | {} |",
            kind.name,
            rates[RUNS / 2],
            rates[0],
            rates[RUNS - 1],
            sizes.0,
            sizes.1
        );
    }
    println!("\nEnd to end (embedded broker, QoS 0 burst of {BURST}, `subscribe_and_collect` max_messages 10000, duration_ms {WINDOW_MS}):\n");
    println!("| payload | run | received | returned | s past the window | answer bytes |\n|---|---|---|---|---|---|");
    let mut server = common::Server::embedded(&[]);
    server.initialize();
    for run in 0..RUNS {
        for kind in &KINDS {
            let (received, returned, past, line) = end_to_end(&mut server, kind, run);
            println!(
                "| {} | {} | {received} | {returned} | {past:.2} | {line} |",
                kind.name,
                run + 1
            );
        }
    }
}
