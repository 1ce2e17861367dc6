//! The tools: the generated contract (types, table, dispatch) from `schema/`,
//! argument validation against it, and the handlers, one file per family.
//!
//! A tool failure is not a protocol error: it becomes a `tools/call` result
//! with `isError: true` whose text tells the model how to fix its call.

use crate::app::App;
use serde_json::Value;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

mod background;
mod collect;
mod common;
pub mod deadline;
mod diagnostics;
mod discovery;
mod publish;
mod retained;
mod sessions;

pub use common::{message_json, Seen};
pub use deadline::Deadline;

/// Handler functions, by tool name; `dispatch` (generated) calls them.
pub mod handlers {
    pub use super::background::{list_subscriptions, read_messages, subscribe, unsubscribe};
    pub use super::collect::{get_topic_schema, subscribe_and_collect};
    pub use super::diagnostics::{debug_device, test_connection, topic_history};
    pub use super::discovery::list_topics;
    pub use super::publish::{publish_message, request_response};
    pub use super::retained::{clear_retained, get_retained};
    pub use super::sessions::{
        close_connection, establish_connection, list_active_connections, list_profiles,
    };
}

/// A tool's static entry: the schema file's JSON, parsed and compiled lazily
/// so that start-up does not pay for tools that are never called.
pub struct ToolDef {
    /// Which tool.
    pub id: ToolId,
    /// Its name in `tools/list` and `tools/call`.
    pub name: &'static str,
    /// The schema file with its `$ref`s to `schema/defs/` bundled by
    /// `build.rs` (self-contained: what `tools/list` serves).
    pub json: &'static str,
    /// `json` parsed once.
    pub parsed: std::sync::OnceLock<Value>,
    /// The compiled `inputSchema` validator (or why it failed to compile).
    pub validator: std::sync::OnceLock<Result<jsonschema::Validator, String>>,
}

impl ToolDef {
    /// The tool object served by `tools/list`.
    pub fn definition(&self) -> &Value {
        self.parsed
            .get_or_init(|| serde_json::from_str(self.json).unwrap_or(Value::Null))
    }

    /// Checks arguments against `inputSchema`; every violation is listed with its JSON path.
    pub fn validate(&self, args: &Value) -> Result<(), Vec<String>> {
        let v = self.validator.get_or_init(|| {
            jsonschema::draft202012::new(&self.definition()["inputSchema"])
                .map_err(|e| e.to_string())
        });
        match v {
            Ok(v) => {
                let errs: Vec<String> = v
                    .iter_errors(args)
                    .map(|e| {
                        let path = e.instance_path().to_string();
                        let path = if path.is_empty() {
                            "(arguments)".to_string()
                        } else {
                            path
                        };
                        format!("{path}: {}", e.masked())
                    })
                    .collect();
                if errs.is_empty() {
                    Ok(())
                } else {
                    Err(errs)
                }
            }
            Err(e) => Err(vec![format!(
                "internal: the schema of {} does not compile: {e}",
                self.name
            )]),
        }
    }
}

include!(concat!(env!("OUT_DIR"), "/tools_gen.rs"));

/// Looks a tool up by name.
pub fn find(name: &str) -> Option<&'static ToolDef> {
    TOOLS.iter().find(|t| t.name == name)
}

/// What a handler gets besides its arguments.
pub struct ToolContext {
    /// Sessions, vault, configuration.
    pub app: Arc<App>,
    /// Cancelled by `notifications/cancelled` or shutdown.
    pub cancel: CancellationToken,
    /// Where `notifications/progress` go, when the request asked for them.
    pub progress: Option<Progress>,
    /// The tool being called (for the audit log).
    pub tool: &'static str,
}

/// Where a call's progress goes when the request asked for it: the MCP
/// core turns each report into `notifications/progress` for the request's
/// token (tools know nothing of the wire).
#[derive(Clone)]
pub struct Progress(Arc<ReportFn>);

/// `report(progress, total, message)`.
type ReportFn = dyn Fn(f64, Option<f64>, &str) + Send + Sync;

impl Progress {
    /// Progress delivered by `report(progress, total, message)`, which must not block.
    pub fn new(report: impl Fn(f64, Option<f64>, &str) + Send + Sync + 'static) -> Self {
        Progress(Arc::new(report))
    }
}

impl ToolContext {
    /// Reports progress if the client asked for it; never blocks.
    pub fn report(&self, progress: f64, total: Option<f64>, message: &str) {
        if let Some(p) = &self.progress {
            (p.0)(progress, total, message);
        }
    }
}

/// A failed tool call, shown to the model as an `isError` result.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// Arguments broke the schema (one line per violation) or could not be used.
    #[error("Invalid arguments:\n{}", .0.join("\n"))]
    InvalidArguments(Vec<String>),
    /// The tool ran and failed (broker refused, timeout, ...).
    #[error("{0}")]
    Failed(String),
    /// A bug on our side.
    #[error("internal error: {0}")]
    Internal(String),
    /// The handler was still running past the call's deadline (see [`deadline`]).
    #[error("the call did not finish within its deadline of {budget_ms} ms; raise timeout_ms or ask for less (shorter window, fewer messages)")]
    DeadlineExceeded {
        /// The call's budget.
        budget_ms: u128,
    },
}

impl ToolError {
    /// Arguments that passed the schema but not deserialization (should not happen).
    pub fn from_arguments(e: serde_json::Error) -> Self {
        ToolError::InvalidArguments(vec![e.to_string()])
    }

    /// Serialization of a result failed.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ToolError::Internal(e.to_string())
    }
}

impl From<crate::session::SessionError> for ToolError {
    fn from(e: crate::session::SessionError) -> Self {
        ToolError::Failed(e.to_string())
    }
}

/// Arguments that passed their tool's input schema. [`run`] takes only
/// this, so every caller (MCP's `tools/call`, the `call` subcommand) has its
/// arguments checked the same way, and a caller can tell a call refused
/// before it ran from a call that ran and failed.
#[derive(Debug)]
pub struct Checked {
    /// The tool the arguments were checked against.
    tool: ToolId,
    /// The arguments, as given.
    args: Value,
}

impl ToolDef {
    /// Checks `args` against `inputSchema`: the checked call, or every violation.
    pub fn check(&self, args: Value) -> Result<Checked, Vec<String>> {
        self.validate(&args)?;
        Ok(Checked {
            tool: self.id,
            args,
        })
    }
}

/// Runs a checked call under its one deadline (see [`deadline`]): the tool's
/// structured output, serialized once, or why the call failed.
pub async fn run(
    ctx: &ToolContext,
    call: Checked,
) -> Result<Box<serde_json::value::RawValue>, ToolError> {
    dispatch(ctx, call.tool, call.args).await
}

/// Checks, runs, and shapes the `tools/call` result (success or `isError`).
pub async fn call(ctx: &ToolContext, tool: &ToolDef, args: Value) -> ToolResult {
    let outcome = match tool.check(args) {
        Ok(checked) => run(ctx, checked).await,
        Err(errs) => Err(ToolError::InvalidArguments(errs)),
    };
    match outcome {
        Ok(structured) => ToolResult::success(structured),
        Err(e) => ToolResult::failure(&e),
    }
}

/// A `tools/call` result. A tool's output is serialized once, by the
/// generated `dispatch`, and kept as that text: it is written as
/// `structuredContent` and, as a string, as the text content, without being
/// parsed back or copied into a JSON tree (10,000 collected messages).
#[derive(Debug)]
pub struct ToolResult {
    /// 2026-07-28: `resultType`, set by the MCP core.
    result_type: Option<&'static str>,
    /// 2026-07-28: the result's `_meta`, set by the MCP core.
    meta: Option<Value>,
    /// The output, or the failure's message (`isError: true`).
    body: Result<Box<serde_json::value::RawValue>, String>,
}

impl ToolResult {
    /// A successful call with its structured output.
    pub fn success(structured: Box<serde_json::value::RawValue>) -> Self {
        ToolResult {
            result_type: None,
            meta: None,
            body: Ok(structured),
        }
    }

    /// A failed call: an `isError` result carrying the error's message.
    pub fn failure(e: &ToolError) -> Self {
        ToolResult {
            result_type: None,
            meta: None,
            body: Err(e.to_string()),
        }
    }

    /// Whether the call failed (`isError`).
    pub fn is_error(&self) -> bool {
        self.body.is_err()
    }

    /// Adds the fields a protocol revision puts first in every result
    /// (2026-07-28: `resultType` and `_meta`).
    pub fn with_head(mut self, result_type: &'static str, meta: Value) -> Self {
        self.result_type = Some(result_type);
        self.meta = Some(meta);
        self
    }
}

/// `{"type":"text","text":...}`.
#[derive(serde::Serialize)]
struct TextContent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

impl serde::Serialize for ToolResult {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        if let Some(t) = self.result_type {
            m.serialize_entry("resultType", t)?;
        }
        if let Some(meta) = &self.meta {
            m.serialize_entry("_meta", meta)?;
        }
        let text = match &self.body {
            Ok(raw) => raw.get(),
            Err(message) => message.as_str(),
        };
        m.serialize_entry("content", &[TextContent { kind: "text", text }])?;
        if let Ok(raw) = &self.body {
            m.serialize_entry("structuredContent", raw)?;
        }
        m.serialize_entry("isError", &self.body.is_err())?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_compiles_and_names_match() {
        for t in TOOLS.iter() {
            assert_eq!(t.definition()["name"], t.name);
            assert!(
                t.validate(&serde_json::json!({"__nope": 1})).is_err(),
                "{} accepts unknown fields",
                t.name
            );
            jsonschema::draft202012::new(&t.definition()["outputSchema"]).unwrap();
        }
    }

    #[test]
    fn violations_carry_paths() {
        let t = find("establish_connection").unwrap();
        let errs = t
            .validate(&serde_json::json!({"port": "x", "keep_alive": 1, "bogus": true}))
            .unwrap_err();
        assert!(errs.iter().any(|e| e.starts_with("/port:")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.starts_with("/keep_alive:")),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| e.contains("bogus")), "{errs:?}");
    }
}
