//! `initialize` (version negotiation, capabilities, instructions),
//! `tools/list` (pagination over the schema table), and the two protocol
//! eras: the handshake era (2024-11-05 to 2025-11-25, `initialize` once per
//! connection) and the stateless revision 2026-07-28, where every request
//! names its version and client capabilities in `params._meta`, the server
//! answers `server/discover`, and every result carries `resultType`.
//!
//! [`era`] decides per request which rules apply; a request without the
//! modern `_meta` keys is served exactly as before.

use super::method::{Method, RequestMethod};
use super::params::{self, Field};
use crate::jsonrpc::{code, RpcError};
use crate::tools::{ToolResult, TOOLS};
use serde_json::{json, Value};

/// Protocol revisions of the handshake era we speak, newest first.
pub const SUPPORTED_PROTOCOL_VERSIONS: [&str; 4] =
    ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// What we answer to a client asking for a version we do not know.
pub const LATEST_PROTOCOL_VERSION: &str = SUPPORTED_PROTOCOL_VERSIONS[0];

/// The stateless revision: no handshake, per-request `_meta`.
pub const STATELESS_PROTOCOL_VERSION: &str = "2026-07-28";

/// `UnsupportedProtocolVersionError` of 2026-07-28 (data: supported, requested).
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// Request `_meta` key: the protocol version of this request (required).
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// Request `_meta` key: the client's capabilities for this request (required).
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// Request `_meta` key: minimum level of log notifications (optional).
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// Result `_meta` key: who answered.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// Notification `_meta` key: the `subscriptions/listen` request id.
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// Which rules a request is served by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2024-11-05 .. 2025-11-25: `initialize` first, connection state.
    Handshake,
    /// 2026-07-28: stateless, everything the server needs is in `_meta`.
    Stateless,
}

/// Every version this server speaks, the stateless one first.
pub fn supported_versions() -> Vec<&'static str> {
    std::iter::once(STATELESS_PROTOCOL_VERSION)
        .chain(SUPPORTED_PROTOCOL_VERSIONS)
        .collect()
}

fn invalid_meta(method: &str, what: &str) -> RpcError {
    RpcError::new(
        code::INVALID_PARAMS,
        format!("Invalid params: {method} needs params._meta with {what} (MCP {STATELESS_PROTOCOL_VERSION} requests carry \"{META_PROTOCOL_VERSION}\": \"{STATELESS_PROTOCOL_VERSION}\" and \"{META_CLIENT_CAPABILITIES}\": {{...}}; handshake-era clients send initialize instead)"),
    )
}

/// Decides the era of one request from its `_meta`: the one place that
/// does (the core calls it for every request, whatever the transport).
/// `method` is the request's method, parsed or as sent.
///
/// - `initialize` always opens the handshake era.
/// - `_meta` naming 2026-07-28 selects the stateless rules; its required
///   fields are checked here (missing ones are -32602, as the revision says).
/// - `_meta` naming a version we do not speak is -32022 with the list we do.
/// - No version in `_meta`, or a handshake-era one, leaves the request to the
///   handshake rules, unchanged; `server/discover` exists only in 2026-07-28,
///   so without a valid stateless `_meta` it is -32602.
pub fn era<'a>(
    method: impl Into<RequestMethod<'a>>,
    params: Option<&Value>,
) -> Result<Era, RpcError> {
    let method = method.into();
    let known = method.known();
    if known == Some(Method::Initialize) {
        return Ok(Era::Handshake);
    }
    let is_discover = known == Some(Method::ServerDiscover);
    let method = method.name();
    let meta = params::RequestMeta::of(params);
    let version = match &meta.protocol_version {
        Field::Absent if is_discover => {
            return Err(invalid_meta(
                method,
                &format!("\"{META_PROTOCOL_VERSION}\""),
            ))
        }
        Field::Absent => return Ok(Era::Handshake),
        Field::Valid(v) => v.as_str(),
        Field::Invalid => {
            return Err(invalid_meta(
                method,
                &format!("\"{META_PROTOCOL_VERSION}\" as a string"),
            ))
        }
    };
    if SUPPORTED_PROTOCOL_VERSIONS.contains(&version) {
        if is_discover {
            return Err(invalid_meta(
                method,
                &format!("\"{META_PROTOCOL_VERSION}\": \"{STATELESS_PROTOCOL_VERSION}\" (version {version} negotiates with initialize)"),
            ));
        }
        return Ok(Era::Handshake);
    }
    if version != STATELESS_PROTOCOL_VERSION {
        return Err(RpcError {
            code: UNSUPPORTED_PROTOCOL_VERSION,
            message: format!(
                "Unsupported protocol version {version:?}; this server speaks {}",
                supported_versions().join(", ")
            ),
            data: Some(json!({ "supported": supported_versions(), "requested": version })),
        });
    }
    if meta.client_capabilities.valid().is_none() {
        return Err(invalid_meta(
            method,
            &format!("\"{META_CLIENT_CAPABILITIES}\" as an object (an empty one when the client has none)"),
        ));
    }
    let level_ok = match &meta.log_level {
        Field::Absent => true,
        Field::Valid(l) => super::logging::level_index(l).is_some(),
        Field::Invalid => false,
    };
    if !level_ok {
        return Err(RpcError::new(
            code::INVALID_PARAMS,
            format!(
                "Invalid params: _meta.\"{META_LOG_LEVEL}\" must be one of {}",
                super::logging::LEVELS.join(", ")
            ),
        ));
    }
    Ok(Era::Stateless)
}

/// How long and for whom a 2026-07-28 client may cache a result (`CacheableResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cache {
    /// `ttlMs`: freshness in milliseconds.
    pub ttl_ms: u64,
    /// `cacheScope`: `public` (no user data) or `private`.
    pub scope: &'static str,
}

/// Results fixed for the life of the process (tools, prompts, templates,
/// discover): the server's own description, no user data.
pub const CACHE_STATIC: Cache = Cache {
    ttl_ms: 3_600_000,
    scope: "public",
};

/// Live broker data (resources): stale at once, and only for this client.
pub const CACHE_LIVE: Cache = Cache {
    ttl_ms: 0,
    scope: "private",
};

fn server_info() -> Value {
    json!({
        "name": "bitsperity-mqtt-mcp",
        "title": "Bitsperity MQTT",
        "version": env!("CARGO_PKG_VERSION")
    })
}

/// Adds what 2026-07-28 requires of every result: `resultType`, the cache
/// hints of a `CacheableResult`, and the server's identity in `_meta`.
pub fn stateless_result(mut result: Value, cache: Option<Cache>) -> Value {
    let Value::Object(m) = &mut result else {
        return result;
    };
    m.insert("resultType".into(), Value::from("complete"));
    if let Some(c) = cache {
        m.insert("ttlMs".into(), Value::from(c.ttl_ms));
        m.insert("cacheScope".into(), Value::from(c.scope));
    }
    let meta = m
        .entry("_meta")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Value::Object(meta) = meta {
        meta.insert(META_SERVER_INFO.into(), server_info());
    }
    result
}

/// [`stateless_result`] for a `tools/call` result, which stays typed:
/// `resultType` and `_meta` go first (tools set no `_meta` of their own, and
/// a tool result is not cacheable).
pub fn stateless_tool_result(result: ToolResult) -> ToolResult {
    result.with_head("complete", json!({ META_SERVER_INFO: server_info() }))
}

/// The protocol version a request's `_meta` names, as sent (absent, a
/// string, or another JSON type). For a transport that must route a
/// request before the core sees it (HTTP without a session); what the
/// version means is still decided by [`era`].
pub fn requested_version(params: Option<&Value>) -> Field<String> {
    params::RequestMeta::of(params).protocol_version
}

/// Server capabilities in 2026-07-28. `logging` is left out: log events
/// here are process-wide, not scoped to a request, and the revision forbids
/// `notifications/message` for requests that did not ask by level.
fn stateless_capabilities() -> Value {
    json!({
        "tools": { "listChanged": false },
        "resources": { "subscribe": true, "listChanged": true },
        "prompts": { "listChanged": false },
        "completions": {}
    })
}

/// Answers `server/discover` (a `DiscoverResult`).
pub fn discover() -> Value {
    stateless_result(
        json!({
            "supportedVersions": supported_versions(),
            "capabilities": stateless_capabilities(),
            "serverInfo": server_info(),
            "instructions": INSTRUCTIONS
        }),
        Method::ServerDiscover.facts().cache,
    )
}

const INSTRUCTIONS: &str = "This server gives you an MQTT broker. A session named \"default\" is usually open already, so tools work without session_id; call list_active_connections to see sessions, establish_connection to open another broker (then pass its session_id), close_connection when done. Topic names never contain + or #; filters may (+ one level, # the rest). Tool errors come back as results with isError and say how to fix the call.";

/// Answers `initialize`: returns the negotiated version and the result.
pub fn initialize(params: Option<&Value>) -> Result<(&'static str, Value), RpcError> {
    let params::Initialize {
        protocol_version: requested,
    } = params::parse(params).ok_or_else(|| {
        RpcError::new(
            code::INVALID_PARAMS,
            "Invalid params: initialize needs params.protocolVersion (for example \"2025-11-25\")",
        )
    })?;
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
    let list: params::List = params::parse(params).unwrap_or_default();
    let start = match list.cursor {
        Field::Absent | Field::Valid(None) => 0,
        Field::Valid(Some(c)) => parse_cursor(&c, all.len()).ok_or_else(|| RpcError::new(code::INVALID_PARAMS, "Invalid params: unknown cursor; pass the nextCursor of the previous tools/list answer, or none"))?,
        Field::Invalid => return Err(RpcError::new(code::INVALID_PARAMS, "Invalid params: cursor must be a string")),
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

    fn meta(version: Value) -> Value {
        json!({"_meta": {META_PROTOCOL_VERSION: version, META_CLIENT_CAPABILITIES: {}}})
    }

    #[test]
    fn chooses_the_era_per_request() {
        let modern = meta(json!(STATELESS_PROTOCOL_VERSION));
        assert_eq!(era("tools/list", Some(&modern)), Ok(Era::Stateless));
        assert_eq!(era("server/discover", Some(&modern)), Ok(Era::Stateless));
        assert_eq!(era("tools/list", None), Ok(Era::Handshake));
        assert_eq!(
            era("tools/list", Some(&json!({"_meta": {"progressToken": 1}}))),
            Ok(Era::Handshake)
        );
        assert_eq!(era("initialize", Some(&modern)), Ok(Era::Handshake));
        for v in SUPPORTED_PROTOCOL_VERSIONS {
            assert_eq!(era("tools/call", Some(&meta(json!(v)))), Ok(Era::Handshake));
            assert_eq!(
                era("server/discover", Some(&meta(json!(v))))
                    .unwrap_err()
                    .code,
                code::INVALID_PARAMS
            );
        }
        let e = era("tools/call", Some(&meta(json!("2099-01-01")))).unwrap_err();
        assert_eq!(e.code, UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(e.data.as_ref().unwrap()["requested"], "2099-01-01");
        assert_eq!(
            e.data.as_ref().unwrap()["supported"][0],
            STATELESS_PROTOCOL_VERSION
        );
        for bad in [
            json!({}),
            json!({"_meta": {META_PROTOCOL_VERSION: STATELESS_PROTOCOL_VERSION}}),
            json!({"_meta": {META_PROTOCOL_VERSION: STATELESS_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES: null}}),
            json!({"_meta": {META_PROTOCOL_VERSION: 7, META_CLIENT_CAPABILITIES: {}}}),
            json!({"_meta": {META_PROTOCOL_VERSION: STATELESS_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES: {}, META_LOG_LEVEL: "loud"}}),
        ] {
            assert_eq!(
                era("server/discover", Some(&bad)).unwrap_err().code,
                code::INVALID_PARAMS,
                "{bad}"
            );
        }
        assert_eq!(
            era("server/discover", None).unwrap_err().code,
            code::INVALID_PARAMS
        );
        let with_level = json!({"_meta": {META_PROTOCOL_VERSION: STATELESS_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES: {}, META_LOG_LEVEL: "debug"}});
        assert_eq!(era("tools/list", Some(&with_level)), Ok(Era::Stateless));
    }

    #[test]
    fn stateless_results_carry_result_type_cache_hints_and_server_info() {
        let d = discover();
        assert_eq!(d["resultType"], "complete");
        assert_eq!(d["supportedVersions"][0], STATELESS_PROTOCOL_VERSION);
        assert_eq!(d["cacheScope"], "public");
        assert!(d["ttlMs"].is_u64());
        assert_eq!(d["_meta"][META_SERVER_INFO]["name"], "bitsperity-mqtt-mcp");
        assert!(d["capabilities"].get("logging").is_none());

        let r = stateless_result(json!({"contents": [], "_meta": {"x": 1}}), Some(CACHE_LIVE));
        assert_eq!(r["ttlMs"], 0);
        assert_eq!(r["cacheScope"], "private");
        assert_eq!(r["_meta"]["x"], 1);
        assert!(r["_meta"][META_SERVER_INFO].is_object());
        assert!(r.get("ttlMs").is_some());
        assert!(stateless_result(json!({}), None).get("ttlMs").is_none());

        let failed = ToolResult::failure(&crate::tools::ToolError::Failed("x".into()));
        let v = serde_json::to_value(stateless_tool_result(failed)).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["resultType", "_meta", "content", "isError"]);
        assert!(v["_meta"][META_SERVER_INFO].is_object());
    }
}
