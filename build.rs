//! Turns `schema/*.json` (the tool contract) into Rust.
//!
//! For every schema file this generates, into `$OUT_DIR/tools_gen.rs`:
//! - a parameter struct (`params::<Tool>`) from `inputSchema` and a result struct
//!   (`results::<Tool>`) from `outputSchema`, so handlers are typed by the contract;
//! - the static tool table (`TOOLS`) whose JSON is the schema file itself, served
//!   verbatim by `tools/list` and compiled lazily into validators;
//! - `dispatch`, which calls `crate::tools::handlers::<tool>` for every schema.
//!
//! A schema without a handler fails to compile (the call in `dispatch` has no
//! target); a handler without a schema cannot name its parameter or result type.
//! The checks below reject schemas that break the rules of the contract
//! (draft 2020-12 object input, `additionalProperties: false`, all four hints).

use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=schema");
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let schema_dir = manifest.join("schema");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&schema_dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", schema_dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        panic!("schema/ holds no tool schemas");
    }

    let mut out = String::new();
    let mut params = String::new();
    let mut results = String::new();
    let mut table = String::new();
    let mut ids = String::new();
    let mut arms = String::new();
    let mut names = Vec::new();

    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let tool: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = check_tool(file, &tool);
        let camel = camel(&name);
        names.push(name.clone());

        gen_struct(
            &mut params,
            &camel,
            &tool["inputSchema"],
            Direction::Params,
            &name,
        );
        gen_struct(
            &mut results,
            &camel,
            &tool["outputSchema"],
            Direction::Results,
            &name,
        );

        let _ = writeln!(
            table,
            "    ToolDef {{ id: ToolId::{camel}, name: {name:?}, json: include_str!({path:?}), parsed: std::sync::OnceLock::new(), validator: std::sync::OnceLock::new() }},",
            path = file.display().to_string()
        );
        let _ = writeln!(ids, "    /// The `{name}` tool.\n    {camel},");
        let _ = writeln!(
            arms,
            "        ToolId::{camel} => {{\n            let p: params::{camel} = serde_json::from_value(args).map_err(crate::tools::ToolError::from_arguments)?;\n            let r: results::{camel} = crate::tools::handlers::{name}(ctx, p).await?;\n            serde_json::to_string(&r).map_err(crate::tools::ToolError::internal)\n        }}"
        );
    }

    let _ = writeln!(
        out,
        "/// Which tool a schema file describes; one variant per file in `schema/`."
    );
    let _ = writeln!(
        out,
        "#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]\npub enum ToolId {{\n{ids}}}\n"
    );
    let _ = writeln!(
        out,
        "/// Every tool, in schema file order (the order of `tools/list`)."
    );
    let _ = writeln!(
        out,
        "pub static TOOLS: [ToolDef; {}] = [\n{table}];\n",
        names.len()
    );
    let _ = writeln!(
        out,
        "/// Deserializes validated arguments into the generated type, runs the handler, and serializes its result once (no intermediate JSON tree).\npub async fn dispatch(ctx: &crate::tools::ToolContext, tool: ToolId, args: serde_json::Value) -> Result<String, crate::tools::ToolError> {{\n    match tool {{\n{arms}\n    }}\n}}\n"
    );
    let _ = writeln!(out, "/// Parameter types generated from each tool's `inputSchema`.\npub mod params {{\n    #![allow(clippy::all)]\n    use serde::Deserialize;\n{params}}}\n");
    let _ = writeln!(out, "/// Result types generated from each tool's `outputSchema`.\npub mod results {{\n    #![allow(clippy::all)]\n    use serde::Serialize;\n{results}}}\n");

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
    std::fs::write(out_dir.join("tools_gen.rs"), out)
        .unwrap_or_else(|e| panic!("write tools_gen.rs: {e}"));
}

/// Rejects a schema file that breaks the contract rules; returns the tool name.
fn check_tool(file: &Path, tool: &Value) -> String {
    let fail = |msg: &str| -> ! { panic!("{}: {msg}", file.display()) };
    let name = tool["name"]
        .as_str()
        .unwrap_or_else(|| fail("missing \"name\""));
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if name != stem {
        fail(&format!("name {name:?} must equal the file name {stem:?}"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        fail("tool names are snake_case");
    }
    for key in ["title", "description"] {
        if !tool[key].is_string() {
            fail(&format!("missing string {key:?}"));
        }
    }
    for key in ["inputSchema", "outputSchema"] {
        let s = &tool[key];
        if s["type"] != "object" {
            fail(&format!("{key} must be of type object"));
        }
        if key == "inputSchema" && s["additionalProperties"] != Value::Bool(false) {
            fail("inputSchema needs \"additionalProperties\": false");
        }
    }
    if tool["inputSchema"]["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
        fail("inputSchema must declare draft 2020-12 in $schema");
    }
    for hint in [
        "readOnlyHint",
        "destructiveHint",
        "idempotentHint",
        "openWorldHint",
    ] {
        if !tool["annotations"][hint].is_boolean() {
            fail(&format!("annotations.{hint} must be a boolean"));
        }
    }
    let allowed = [
        "name",
        "title",
        "description",
        "inputSchema",
        "outputSchema",
        "annotations",
    ];
    if let Some(obj) = tool.as_object() {
        for k in obj.keys() {
            if !allowed.contains(&k.as_str()) {
                fail(&format!("unexpected top-level key {k:?}"));
            }
        }
    }
    name.to_string()
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    Params,
    Results,
}

fn camel(s: &str) -> String {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn field_ident(name: &str) -> String {
    let mut id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() || id.starts_with(|c: char| c.is_ascii_digit()) {
        id.insert(0, '_');
    }
    const KW: &[&str] = &[
        "type", "ref", "match", "move", "self", "struct", "enum", "fn", "mod", "use", "where",
        "loop", "box", "in", "as", "async", "await", "dyn", "impl", "trait", "crate", "super",
        "static", "const", "let", "mut", "pub", "return", "break", "continue", "if", "else", "for",
        "while", "true", "false", "extern", "unsafe", "priv", "override", "final", "macro",
        "yield", "try", "abstract", "virtual", "do", "become", "typeof", "unsized",
    ];
    if KW.contains(&id.as_str()) {
        id.insert_str(0, "r#");
    }
    id
}

fn doc_line(s: &str) -> String {
    format!("#[doc = {:?}]", s)
}

/// Emits `pub struct <name>` for an object schema and any nested object structs.
fn gen_struct(out: &mut String, name: &str, schema: &Value, dir: Direction, tool: &str) {
    let empty = Map::new();
    let props = schema["properties"].as_object().unwrap_or(&empty);
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let mut nested = String::new();
    let mut body = String::new();
    for (key, prop) in props {
        let hint = format!("{name}{}", camel(key));
        let secret = prop["writeOnly"] == Value::Bool(true);
        let (ty, nullable) = rust_type(prop, &hint, dir, tool, &mut nested, secret);
        let is_required = required.contains(&key.as_str());
        let ident = field_ident(key);
        let desc = prop["description"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("`{key}` of the `{tool}` tool."));
        let _ = writeln!(body, "    {}", doc_line(&desc));
        if ident.trim_start_matches("r#") != key {
            let _ = writeln!(body, "    #[serde(rename = {key:?})]");
        }
        let full = if !is_required || nullable {
            if dir == Direction::Params {
                let _ = writeln!(body, "    #[serde(default)]");
            } else if !is_required {
                let _ = writeln!(
                    body,
                    "    #[serde(skip_serializing_if = \"Option::is_none\")]"
                );
            }
            format!("Option<{ty}>")
        } else {
            ty
        };
        let _ = writeln!(body, "    pub {ident}: {full},");
    }
    let derive = match dir {
        Direction::Params => "#[derive(Debug, Clone, Deserialize)]\n#[serde(deny_unknown_fields)]",
        Direction::Results => "#[derive(Debug, Clone, Serialize)]",
    };
    let what = match dir {
        Direction::Params => "Arguments",
        Direction::Results => "Structured result",
    };
    let _ = writeln!(out, "    #[doc = \"{what} of the `{tool}` tool ({name}).\"]\n    {}\n    pub struct {name} {{\n{body}    }}\n", derive.replace('\n', "\n    "));
    out.push_str(&nested);
}

/// Maps a property schema to a Rust type; returns (type, nullable).
fn rust_type(
    prop: &Value,
    hint: &str,
    dir: Direction,
    tool: &str,
    nested: &mut String,
    secret: bool,
) -> (String, bool) {
    let (ty, nullable) = match &prop["type"] {
        Value::String(t) => (t.clone(), false),
        Value::Array(ts) => {
            let non_null: Vec<&str> = ts
                .iter()
                .filter_map(|v| v.as_str())
                .filter(|t| *t != "null")
                .collect();
            let nullable = ts.iter().any(|v| v == "null");
            if non_null.len() == 1 {
                (non_null[0].to_string(), nullable)
            } else {
                return ("serde_json::Value".into(), false);
            }
        }
        _ => return ("serde_json::Value".into(), false),
    };
    let rust = match ty.as_str() {
        "string" if secret => "crate::secret::SecretString".to_string(),
        "string" => "String".to_string(),
        "integer" => {
            let enum_non_negative = prop["enum"]
                .as_array()
                .is_some_and(|e| !e.is_empty() && e.iter().all(|v| v.as_u64().is_some()));
            if prop["minimum"].as_i64().is_some_and(|m| m >= 0) || enum_non_negative {
                "u64".to_string()
            } else {
                "i64".to_string()
            }
        }
        "number" => "f64".to_string(),
        "boolean" => "bool".to_string(),
        "array" => {
            let (inner, inner_null) = rust_type(
                &prop["items"],
                &format!("{hint}Item"),
                dir,
                tool,
                nested,
                false,
            );
            if inner_null {
                format!("Vec<Option<{inner}>>")
            } else {
                format!("Vec<{inner}>")
            }
        }
        "object"
            if prop["properties"].is_object()
                && !prop["properties"].as_object().is_some_and(|m| m.is_empty()) =>
        {
            gen_struct(nested, hint, prop, dir, tool);
            hint.to_string()
        }
        _ => "serde_json::Value".to_string(),
    };
    (rust, nullable)
}
