//! The server in-process over an in-memory pipe: no broker, no subprocess;
//! for property tests and snapshots of protocol shapes.
#![allow(dead_code)]

use mqtt_mcp::app::App;
use mqtt_mcp::config::ServerConfig;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Feeds `input` (raw bytes, already newline-separated) to a fresh server,
/// closes the input, and returns every line the server wrote.
pub async fn exchange(input: &[u8], config: ServerConfig) -> Vec<String> {
    let app = App::new(config).expect("vault");
    let (client, server) = tokio::io::duplex(1 << 16);
    let (server_r, server_w) = tokio::io::split(server);
    let (client_r, mut client_w) = tokio::io::split(client);
    let srv = tokio::spawn(mqtt_mcp::transport::stdio::run(
        server_r,
        server_w,
        app.clone(),
        std::future::pending(),
    ));
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(client_r).lines();
        let mut out = Vec::new();
        while let Ok(Some(l)) = lines.next_line().await {
            out.push(l);
        }
        out
    });
    client_w.write_all(input).await.expect("write");
    client_w.shutdown().await.expect("close");
    drop(client_w);
    srv.await.expect("server task").expect("server io");
    app.shutdown().await;
    reader.await.expect("reader")
}

/// Requests as lines, after an initialize.
pub fn script(lines: &[Value]) -> Vec<u8> {
    let mut out = serde_json::json!({"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}).to_string();
    out.push('\n');
    for l in lines {
        out.push_str(&l.to_string());
        out.push('\n');
    }
    out.into_bytes()
}

/// Checks that `line` is one well-formed JSON-RPC 2.0 response or notification.
pub fn check_wire(line: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}: {line}"))?;
    let o = v.as_object().ok_or("not an object")?;
    if o.get("jsonrpc") != Some(&Value::from("2.0")) {
        return Err(format!("jsonrpc != 2.0: {line}"));
    }
    if o.contains_key("method") {
        return if o.contains_key("id") {
            Err(format!("server sent a request: {line}"))
        } else {
            Ok(v)
        };
    }
    match o.get("id") {
        Some(Value::Null | Value::Number(_) | Value::String(_)) => {}
        _ => return Err(format!("bad id: {line}")),
    }
    match (o.get("result"), o.get("error")) {
        (Some(_), None) => {}
        (None, Some(e)) => {
            if !e["code"].is_i64() || !e["message"].is_string() {
                return Err(format!("bad error object: {line}"));
            }
        }
        _ => return Err(format!("need exactly one of result/error: {line}")),
    }
    if o.len() != 3 {
        return Err(format!("unexpected members: {line}"));
    }
    Ok(v)
}
