//! The time fields a tool's schema declares, and the code that hands them to
//! `crate::tools::deadline`, the one place a call's deadline is computed.
//!
//! A tool file's top-level `"x-deadline"` names the properties of its
//! `inputSchema` that bear on how long the call may take:
//! - `"timeout_ms": {"role": "timeout", "default_ms": N}`: the caller's budget
//!   for the whole call; without the argument the budget is N (or the
//!   server's default when `default_ms` is left out) plus every window;
//! - `"duration_ms": {"role": "window", "default_ms": N}`: a time the call
//!   spends listening or waiting on purpose (N when the argument is absent).
//!
//! The keyword is ours, not the client's, and sits beside `inputSchema`, not
//! in it, so the input schema is what clients are served: [`strip`] removes
//! it from the served tool, and `tools/list` is the same with or without it.

use serde_json::Value;
use std::fmt::Write as _;

/// One declared field.
struct Field {
    /// The property name (the generated field's identifier).
    ident: String,
    /// Whether the generated field is an `Option`.
    optional: bool,
    /// `default_ms`, if given.
    default_ms: Option<u64>,
}

/// The `impl crate::tools::deadline::Timed` for one tool's params struct.
pub fn timed_impl(base: &str, camel: &str, tool: &Value, ident: impl Fn(&str) -> String) -> String {
    let fail = |msg: String| -> ! { panic!("schema/{base}: {msg}") };
    let input = &tool["inputSchema"];
    let required: Vec<&str> = input["required"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut timeout: Option<Field> = None;
    let mut windows: Vec<Field> = Vec::new();
    let declared = match tool.get("x-deadline") {
        None => serde_json::Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => fail("x-deadline maps inputSchema properties to their roles".into()),
    };
    for (key, decl) in &declared {
        let prop = &input["properties"][key];
        if prop.is_null() {
            fail(format!(
                "x-deadline names {key:?}, which inputSchema does not have"
            ));
        }
        if prop["type"] != "integer" || prop["minimum"].as_u64().is_none() {
            fail(format!(
                "{key}: x-deadline fields are integers with a non-negative minimum"
            ));
        }
        let role = decl["role"].as_str().unwrap_or_default();
        let default_ms = decl.get("default_ms").map(|d| {
            d.as_u64().unwrap_or_else(|| {
                fail(format!(
                    "{key}: x-deadline.default_ms is a non-negative integer"
                ))
            })
        });
        if let Some(extra) = decl
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "role" && *k != "default_ms"))
        {
            fail(format!("{key}: unknown x-deadline key {extra:?}"));
        }
        let field = Field {
            ident: ident(key),
            optional: !required.contains(&key.as_str()),
            default_ms,
        };
        match role {
            "timeout" if timeout.is_some() => fail(format!("{key}: a second timeout field")),
            "timeout" => timeout = Some(field),
            "window" if field.optional && field.default_ms.is_none() => fail(format!(
                "{key}: an optional window needs x-deadline.default_ms"
            )),
            "window" => windows.push(field),
            _ => fail(format!(
                "{key}: x-deadline.role is \"timeout\" or \"window\""
            )),
        }
    }
    let timeout_ms = match &timeout {
        Some(f) if f.optional => format!("self.{}", f.ident),
        Some(f) => format!("Some(self.{})", f.ident),
        None => "None".into(),
    };
    let default_ms = match timeout.as_ref().and_then(|f| f.default_ms) {
        Some(d) => d.to_string(),
        None => "crate::tools::deadline::DEFAULT_BUDGET_MS".into(),
    };
    let mut window_ms = "0u64".to_string();
    for w in &windows {
        let value = match (w.optional, w.default_ms) {
            (true, Some(d)) => format!("self.{}.unwrap_or({d})", w.ident),
            _ => format!("self.{}", w.ident),
        };
        let _ = write!(window_ms, ".saturating_add({value})");
    }
    format!(
        "impl crate::tools::deadline::Timed for params::{camel} {{\n    fn timing(&self) -> crate::tools::deadline::Timing {{\n        crate::tools::deadline::Timing {{ timeout_ms: {timeout_ms}, default_ms: {default_ms}, window_ms: {window_ms} }}\n    }}\n}}\n"
    )
}

/// Removes `x-deadline` from a tool (what is served).
pub fn strip(tool: &mut Value) {
    if let Some(t) = tool.as_object_mut() {
        t.remove("x-deadline");
    }
}
