//! Property: whatever arrives on a line, the server answers with valid
//! JSON-RPC (or, for notifications, nothing), never crashes, and still
//! answers the `ping` that follows.

mod common;
#[path = "common/inproc.rs"]
mod inproc;

use inproc::{check_wire, exchange};
use mqtt_mcp::config::ServerConfig;
use proptest::prelude::*;
use serde_json::{json, Value};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::hash_map("[a-z_]{0,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_request() -> impl Strategy<Value = Value> {
    let method = prop_oneof![
        Just("initialize"),
        Just("ping"),
        Just("tools/list"),
        Just("tools/call"),
        Just("logging/setLevel"),
        Just("notifications/cancelled"),
        Just("notifications/initialized"),
        Just("server/discover"),
        Just("resources/list"),
        Just("x"),
    ];
    let tool = prop_oneof![
        Just("list_active_connections"),
        Just("close_connection"),
        Just("nope"),
        Just("")
    ];
    let id = prop_oneof![
        Just(None),
        any::<i32>().prop_map(|i| Some(json!(i))),
        "[a-z0-9]{0,8}".prop_map(|s| Some(json!(s))),
        Just(Some(Value::Null)),
        Just(Some(json!([1])))
    ];
    (method, tool, id, arb_json(), arb_json()).prop_map(|(m, t, id, p, a)| {
        let params = if m == "tools/call" {
            json!({"name": t, "arguments": a})
        } else {
            p
        };
        let mut o = json!({"jsonrpc": "2.0", "method": m, "params": params});
        if let Some(id) = id {
            o["id"] = id;
        }
        o
    })
}

fn run(input: Vec<u8>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut bytes = br#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{}}}"#.to_vec();
    bytes.push(b'\n');
    bytes.extend_from_slice(&input);
    bytes.extend_from_slice(b"\n{\"jsonrpc\":\"2.0\",\"id\":\"final-ping\",\"method\":\"ping\"}\n");
    let config = ServerConfig {
        max_line_bytes: 4096,
        ..Default::default()
    };
    let out = rt.block_on(exchange(&bytes, config));
    let mut saw_ping = false;
    for line in &out {
        let v = check_wire(line).map_err(TestCaseError::fail)?;
        if v["id"] == json!("final-ping") {
            prop_assert_eq!(&v["result"], &json!({}));
            saw_ping = true;
        }
    }
    prop_assert!(saw_ping, "no answer to the final ping; output: {:?}", out);
    Ok(())
}

proptest! {
    // PROPTEST_CASES raises the count for long fuzzing runs (see README).
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128), .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..6000)) {
        run(bytes)?;
    }

    #[test]
    fn arbitrary_json(v in arb_json()) {
        run(v.to_string().into_bytes())?;
    }

    #[test]
    fn arbitrary_requests(reqs in prop::collection::vec(arb_request(), 1..8)) {
        let mut b = Vec::new();
        for r in reqs {
            b.extend_from_slice(r.to_string().as_bytes());
            b.push(b'\n');
        }
        run(b)?;
    }
}
