//! The hostile-input suite: every case runs on a fresh server, then all of
//! them on one long-lived server. After each, a `ping` must be answered; at
//! the end peak memory is reported and bounded, and every accepted publish of
//! the 1,000-call burst must have reached the broker.

mod common;

use common::Server;
use serde_json::{json, Value};
use std::time::Duration;

const LINE_LIMIT: &str = "33554432"; // 32 MiB: a 100 MB line is refused, a 20 MB payload fits.

fn server() -> Server {
    Server::embedded(&["--max-line-bytes", LINE_LIMIT])
}

fn text(v: &Value) -> String {
    v["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn alive(s: &mut Server, case: &str) {
    let r = s.request("ping", json!({}));
    assert_eq!(
        r["result"],
        json!({}),
        "server unresponsive after {case}: {r}"
    );
}

/// Expects a JSON-RPC error with `code` for the next null-id answer.
fn expect_null_error(s: &mut Server, code: i64, case: &str) {
    loop {
        let m = s
            .next_message(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{case}: no answer"));
        if m.get("method").is_some() {
            continue;
        }
        assert_eq!(m["id"], Value::Null, "{case}: {m}");
        assert_eq!(m["error"]["code"], json!(code), "{case}: {m}");
        return;
    }
}

type Case = (&'static str, fn(&mut Server));

fn cases() -> Vec<Case> {
    vec![
        ("invalid JSON", |s| {
            s.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":");
            expect_null_error(s, -32700, "invalid JSON");
        }),
        ("invalid UTF-8", |s| {
            s.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\xc3\x28ng\"}");
            expect_null_error(s, -32700, "invalid UTF-8");
        }),
        ("100 MB line", |s| {
            let mut line =
                br#"{"jsonrpc":"2.0","id":"huge","method":"ping","params":{"pad":""#.to_vec();
            line.resize(100 * 1024 * 1024, b'a');
            line.extend_from_slice(b"\"}}");
            s.send_raw(&line);
            expect_null_error(s, -32600, "100 MB line");
        }),
        ("100,000 levels of nesting", |s| {
            let mut line = String::from(
                r#"{"jsonrpc":"2.0","id":"deep","method":"tools/call","params":{"name":"list_topics","arguments":{"prefix":"#,
            );
            line.push_str(&"[".repeat(100_000));
            line.push_str(&"]".repeat(100_000));
            line.push_str("}}}");
            s.send_raw(line.as_bytes());
            expect_null_error(s, -32700, "deep nesting");
        }),
        ("numbers out of JSON range", |s| {
            let r = s.request("tools/call", json!({"name": "subscribe_and_collect", "arguments": {"filter": "a", "duration_ms": 1e300}}));
            assert_eq!(r["result"]["isError"], json!(true), "{r}");
            s.send_raw(br#"{"jsonrpc":"2.0","id":"big","method":"tools/call","params":{"name":"subscribe_and_collect","arguments":{"filter":"a","duration_ms":1e400}}}"#);
            expect_null_error(s, -32700, "1e400");
            let r = s.request("tools/call", json!({"name": "read_messages", "arguments": {"subscription_id": "x", "since": u64::MAX}}));
            assert_eq!(
                r["result"]["isError"],
                json!(true),
                "since = u64::MAX names no subscription: {r}"
            );
        }),
        ("unknown fields", |s| {
            let r = s.call(
                "publish_message",
                json!({"topic": "a", "payload": "x", "colour": "red"}),
            );
            assert_eq!(r["isError"], json!(true));
            assert!(text(&r).contains("colour"), "{r}");
        }),
        ("topics: NUL, +, #, 70,000 bytes, empty", |s| {
            for (topic, want) in [
                ("a\u{0}b", "NUL"),
                ("a/+/b", "wildcard"),
                ("a/#", "wildcard"),
                ("", "shorter"),
            ] {
                let r = s.call("publish_message", json!({"topic": topic, "payload": "x"}));
                assert_eq!(r["isError"], json!(true), "{topic:?}: {r}");
                assert!(text(&r).contains(want), "{topic:?}: {r}");
            }
            let long = "t".repeat(70_000);
            let r = s.call("publish_message", json!({"topic": long, "payload": "x"}));
            assert!(text(&r).contains("65535"), "{r}");
            for filter in ["a/#/b", "a+/b", "a\u{0}", ""] {
                let r = s.call(
                    "subscribe_and_collect",
                    json!({"filter": filter, "duration_ms": 10}),
                );
                assert_eq!(r["isError"], json!(true), "{filter:?}: {r}");
            }
        }),
        ("payload of 0 bytes", |s| {
            let r = s.call_ok(
                "publish_message",
                json!({"topic": "hostile/empty", "retain": false}),
            );
            assert_eq!(r["payload_bytes"], json!(0));
        }),
        ("payload of 20 MB", |s| {
            use base64::Engine as _;
            let big = vec![0xA5u8; 20 * 1024 * 1024];
            let b64 = base64::engine::general_purpose::STANDARD.encode(&big);
            let r = s.call(
                "publish_message",
                json!({"topic": "hostile/big", "payload": {"base64": b64}}),
            );
            assert_eq!(
                r["isError"],
                json!(true),
                "20 MB is over the documented 16 MiB default"
            );
            assert!(
                text(&r).contains("16777216") && text(&r).contains("20971520"),
                "{r}"
            );
        }),
        ("cancel an unknown id", |s| {
            s.send(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"no-such-request"}}));
            s.send(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":{"odd":true}}}));
            s.send(&json!({"jsonrpc":"2.0","method":"notifications/cancelled"}));
        }),
        ("1,000 concurrent calls, no accepted publish lost", |s| {
            let sub = s.call_ok(
                "subscribe",
                json!({"filter": "hostile/burst/#", "buffer_messages": 5000, "qos": 1}),
            );
            let n = 1000;
            for i in 0..n {
                s.send(&json!({"jsonrpc":"2.0","id":format!("burst-{i}"),"method":"tools/call","params":{"name":"publish_message","arguments":{"topic":format!("hostile/burst/{}", i % 7),"payload":{"i":i},"qos":1}}}));
            }
            for i in 0..n {
                let r = s.recv_id(&json!(format!("burst-{i}")), Duration::from_secs(60));
                assert_eq!(
                    r["result"]["structuredContent"]["status"],
                    json!("acknowledged"),
                    "{r}"
                );
            }
            let mut seen = std::collections::HashSet::new();
            let mut since = 0;
            while seen.len() < n {
                let r = s.call_ok("read_messages", json!({"subscription_id": sub["subscription_id"], "since": since, "limit": 1000, "wait_ms": 5000}));
                let msgs = r["messages"].as_array().unwrap();
                assert!(
                    !msgs.is_empty(),
                    "acknowledged publishes missing: {} of {n} arrived",
                    seen.len()
                );
                assert_eq!(r["lost"], json!(0), "{r}");
                for m in msgs {
                    seen.insert(m["payload"]["json"]["i"].as_u64().unwrap());
                }
                since = r["next_cursor"].as_u64().unwrap();
            }
            assert_eq!(seen.len(), n);
            eprintln!(
                "after 1,000 concurrent publishes: peak RSS {:.1} MiB",
                s.vm_hwm_kib() as f64 / 1024.0
            );
            s.call_ok(
                "unsubscribe",
                json!({"subscription_id": sub["subscription_id"]}),
            );
        }),
    ]
}

/// Wrong types and out-of-range numbers for every field of every tool,
/// generated from the schemas.
fn schema_cases() -> Vec<(String, String, Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        // schema/defs/ holds shared definitions, not tools.
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for f in files {
        let tool: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let name = tool["name"].as_str().unwrap().to_string();
        for (field, prop) in tool["inputSchema"]["properties"].as_object().unwrap() {
            let wrong = match prop["type"].as_str() {
                Some("string") => Some(json!(12345)),
                Some("integer") => Some(json!("12")),
                Some("number") => Some(json!("x")),
                Some("boolean") => Some(json!("yes")),
                Some("array") => Some(json!({"a": 1})),
                Some("object") => Some(json!([1])),
                _ => None,
            };
            if let Some(w) = wrong {
                out.push((name.clone(), field.clone(), w));
            }
            if prop["type"] == "integer" {
                if let Some(min) = prop["minimum"].as_i64() {
                    out.push((name.clone(), field.clone(), json!(min - 1)));
                }
                if let Some(max) = prop["maximum"].as_i64() {
                    out.push((name.clone(), field.clone(), json!(max + 1)));
                }
                out.push((name.clone(), field.clone(), json!(1.5)));
                out.push((name.clone(), field.clone(), json!(1e30)));
            }
        }
    }
    out
}

fn run_schema_cases(s: &mut Server, cases: &[(String, String, Value)]) {
    for (tool, field, value) in cases {
        let r = s.call(tool, json!({ field.as_str(): value }));
        assert_eq!(
            r["isError"],
            json!(true),
            "{tool}.{field} = {value} was accepted: {r}"
        );
        assert!(
            text(&r).contains(&format!("/{field}")),
            "{tool}.{field} = {value}: the error must name the field: {r}"
        );
    }
}

#[test]
fn each_case_on_a_fresh_server() {
    let mut peak = 0;
    for (name, case) in cases() {
        let mut s = server();
        s.initialize();
        case(&mut s);
        alive(&mut s, name);
        peak = peak.max(s.vm_hwm_kib());
        let (st, _) = s.finish(Duration::from_secs(10));
        assert!(st.success(), "{name}: exit {st}");
    }
    let generated = schema_cases();
    let mut by_tool: std::collections::BTreeMap<&str, Vec<(String, String, Value)>> =
        Default::default();
    for c in &generated {
        by_tool.entry(c.0.as_str()).or_default().push(c.clone());
    }
    for (tool, cs) in by_tool {
        let mut s = Server::spawn(&["serve".into(), "--no-embedded".into()], &[]);
        s.initialize();
        run_schema_cases(&mut s, &cs);
        alive(&mut s, tool);
        let (st, _) = s.finish(Duration::from_secs(10));
        assert!(st.success());
    }
    eprintln!(
        "hostile inputs on fresh servers: {} cases + {} generated field cases; peak RSS {:.1} MiB",
        cases().len(),
        generated.len(),
        peak as f64 / 1024.0
    );
}

#[test]
fn all_cases_on_one_long_lived_server() {
    let mut s = server();
    s.initialize();
    let generated = schema_cases();
    for (name, case) in cases() {
        case(&mut s);
        alive(&mut s, name);
    }
    run_schema_cases(&mut s, &generated);
    alive(&mut s, "schema cases");
    let peak = s.vm_hwm_kib();
    eprintln!(
        "hostile inputs on one server: {} cases + {} generated; peak RSS {:.1} MiB",
        cases().len(),
        generated.len(),
        peak as f64 / 1024.0
    );
    assert!(peak < 1024 * 1024, "peak RSS {peak} KiB is not bounded");
    let (st, _) = s.finish(Duration::from_secs(10));
    assert!(st.success());
}

#[test]
fn stdin_closed_mid_call() {
    let mut s = server();
    s.initialize();
    s.send(&json!({"jsonrpc":"2.0","id":"long","method":"tools/call","params":{"name":"subscribe_and_collect","arguments":{"filter":"#","duration_ms":60000}}}));
    alive(&mut s, "long call started");
    let (st, rest) = s.finish(Duration::from_secs(5));
    assert!(st.success(), "exit {st}");
    assert!(rest.iter().all(|m| m["id"] != json!("long")));
}
