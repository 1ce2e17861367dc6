//! `initialize` (version negotiation, capabilities, instructions) and
//! `tools/list` (pagination over the schema table).

use crate::jsonrpc::{code, RpcError};
use crate::tools::TOOLS;
use serde_json::{json, Value};

/// Protocol revisions of the handshake era we speak, newest first.
pub const SUPPORTED_PROTOCOL_VERSIONS: [&str; 4] =
    ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// What we answer to a client asking for a version we do not know.
pub const LATEST_PROTOCOL_VERSION: &str = SUPPORTED_PROTOCOL_VERSIONS[0];

const INSTRUCTIONS: &str = "This server gives you an MQTT broker. A session named \"default\" is usually open already, so tools work without session_id; call list_active_connections to see sessions, establish_connection to open another broker (then pass its session_id), close_connection when done. Topic names never contain + or #; filters may (+ one level, # the rest). Tool errors come back as results with isError and say how to fix the call.";

/// Answers `initialize`: returns the negotiated version and the result.
pub fn initialize(params: Option<&Value>) -> Result<(&'static str, Value), RpcError> {
    let requested = params
        .and_then(|p| p.get("protocolVersion"))
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::new(code::INVALID_PARAMS, "Invalid params: initialize needs params.protocolVersion (for example \"2025-11-25\")"))?;
    let version = SUPPORTED_PROTOCOL_VERSIONS
        .iter()
        .copied()
        .find(|v| *v == requested)
        .unwrap_or(LATEST_PROTOCOL_VERSION);
    let result = json!({
        "protocolVersion": version,
        "capabilities": {
            "tools": { "listChanged": false },
            "resources": { "subscribe": true, "listChanged": true },
            "prompts": { "listChanged": false },
            "completions": {},
            "logging": {}
        },
        "serverInfo": {
            "name": "bitsperity-mqtt-mcp",
            "title": "Bitsperity MQTT",
            "version": env!("CARGO_PKG_VERSION")
        },
        "instructions": INSTRUCTIONS
    });
    Ok((version, result))
}

/// Cursors are `t<offset>`: opaque to clients, checked strictly by us.
fn parse_cursor(c: &str, len: usize) -> Option<usize> {
    let n: usize = c.strip_prefix('t')?.parse().ok()?;
    (n > 0 && n < len).then_some(n)
}

/// Answers `tools/list` with pagination over the tools `listed` admits
/// (tools the policy makes useless are not offered).
pub fn tools_list(
    params: Option<&Value>,
    page: usize,
    listed: impl Fn(&str) -> bool,
) -> Result<Value, RpcError> {
    let all: Vec<&crate::tools::ToolDef> = TOOLS.iter().filter(|t| listed(t.name)).collect();
    let start = match params.and_then(|p| p.get("cursor")) {
        None | Some(Value::Null) => 0,
        Some(Value::String(c)) => parse_cursor(c, all.len()).ok_or_else(|| RpcError::new(code::INVALID_PARAMS, "Invalid params: unknown cursor; pass the nextCursor of the previous tools/list answer, or none"))?,
        Some(_) => return Err(RpcError::new(code::INVALID_PARAMS, "Invalid params: cursor must be a string")),
    };
    let page = page.max(1);
    let end = (start + page).min(all.len());
    let tools: Vec<Value> = all[start..end]
        .iter()
        .map(|t| t.definition().clone())
        .collect();
    let mut result = json!({ "tools": tools });
    if end < all.len() {
        result["nextCursor"] = Value::from(format!("t{end}"));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_versions() {
        for v in SUPPORTED_PROTOCOL_VERSIONS {
            assert_eq!(
                initialize(Some(&json!({"protocolVersion": v}))).unwrap().0,
                v
            );
        }
        assert_eq!(
            initialize(Some(&json!({"protocolVersion": "1999-01-01"})))
                .unwrap()
                .0,
            LATEST_PROTOCOL_VERSION
        );
        assert_eq!(
            initialize(Some(&json!({}))).unwrap_err().code,
            code::INVALID_PARAMS
        );
    }

    #[test]
    fn paginates_over_every_tool_exactly_once() {
        let mut names = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let params = cursor.as_ref().map(|c| json!({"cursor": c}));
            let r = tools_list(params.as_ref(), 1, |_| true).unwrap();
            names.extend(
                r["tools"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["name"].as_str().unwrap().to_string()),
            );
            match r.get("nextCursor").and_then(Value::as_str) {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        let all: Vec<String> = TOOLS.iter().map(|t| t.name.to_string()).collect();
        assert_eq!(names, all);
        for bad in ["", "t0", "x1", "t999", "t-1"] {
            assert_eq!(
                tools_list(Some(&json!({"cursor": bad})), 1, |_| true)
                    .unwrap_err()
                    .code,
                code::INVALID_PARAMS,
                "{bad}"
            );
        }
        let some = tools_list(None, 100, |n| n != "publish_message").unwrap();
        assert!(some["tools"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["name"] != "publish_message"));
    }
}
