//! Turns `schema/*.json` (the tool contract) into Rust.
//!
//! Definitions several tools share (the message, its payload, its MQTT 5
//! properties) live once, in `schema/defs/*.json` under `$defs`; a tool refers
//! to one with `{"$ref": "defs/<file>.json#/$defs/<name>"}`. For every tool
//! schema this generates, into `$OUT_DIR`:
//! - the served schema, `schema/<tool>.json`: the tool file with every such
//!   reference bundled, i.e. rewritten to `#/$defs/<name>` and the `$defs` of
//!   each referenced file copied whole into that schema (`inputSchema` or
//!   `outputSchema`), so that `tools/list` serves self-contained schemas and
//!   clients need not fetch anything;
//! - in `tools_gen.rs`: a parameter struct (`params::<Tool>`) from
//!   `inputSchema` and a result struct (`results::<Tool>`) from `outputSchema`,
//!   so handlers are typed by the contract; one type per shared definition
//!   (`defs::<Name>`), which those structs name wherever a schema refers to it;
//!   the static tool table (`TOOLS`) whose JSON is the served schema, compiled
//!   lazily into validators; `dispatch`, which calls
//!   `crate::tools::handlers::<tool>` for every schema under the call's one
//!   deadline; and, from each tool file's `x-deadline` (its time fields), the
//!   `Timed` impl that deadline is computed from (`build/deadline.rs`).
//!
//! A schema without a handler fails to compile (the call in `dispatch` has no
//! target); a handler without a schema cannot name its parameter or result type.
//! The checks below reject schemas that break the rules of the contract
//! (draft 2020-12 object input, `additionalProperties: false`, all four hints)
//! and references that do not name a shared definition.
//!
//! `build/shared.rs` loads the shared definitions, resolves references and
//! bundles; `build/deadline.rs` reads and strips `x-deadline`; this file
//! checks the tool files and writes the Rust.

use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[path = "build/deadline.rs"]
mod deadline;
#[path = "build/shared.rs"]
mod shared;
use shared::{json_files, read_json, Shared, DEFS_DIR};

fn main() {
    println!("cargo:rerun-if-changed=schema");
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let schema_dir = manifest.join("schema");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
    let served_dir = out_dir.join("schema");
    std::fs::create_dir_all(&served_dir)
        .unwrap_or_else(|e| panic!("create {}: {e}", served_dir.display()));

    let shared = Shared::load(&schema_dir.join(DEFS_DIR));
    let files = json_files(&schema_dir);
    if files.is_empty() {
        panic!("schema/ holds no tool schemas");
    }

    let mut out = String::new();
    let mut params = String::new();
    let mut results = String::new();
    let mut defs = String::new();
    let mut table = String::new();
    let mut ids = String::new();
    let mut arms = String::new();
    let mut timed = String::new();
    let mut names = Vec::new();

    for file in &files {
        let tool = read_json(file);
        let name = check_tool(file, &tool);
        let camel = camel(&name);
        names.push(name.clone());
        let base = format!("{name}.json");
        let owner = format!("the `{name}` tool");

        let types = Gen {
            shared: &shared,
            base: &base,
            owner: &owner,
        };
        types.object(&mut params, &camel, &tool["inputSchema"], Direction::Params);
        types.object(
            &mut results,
            &camel,
            &tool["outputSchema"],
            Direction::Results,
        );

        timed.push_str(&deadline::timed_impl(&base, &camel, &tool, field_ident));
        let mut served_tool = tool.clone();
        deadline::strip(&mut served_tool);
        let served = served_dir.join(&base);
        let text = serde_json::to_string_pretty(&shared.bundle_tool(&base, &served_tool))
            .unwrap_or_else(|e| panic!("{base}: cannot serialize the served schema: {e}"));
        std::fs::write(&served, text + "\n")
            .unwrap_or_else(|e| panic!("write {}: {e}", served.display()));

        let _ = writeln!(
            table,
            "    ToolDef {{ id: ToolId::{camel}, name: {name:?}, json: include_str!({path:?}), parsed: std::sync::OnceLock::new(), validator: std::sync::OnceLock::new() }},",
            path = served.display().to_string()
        );
        let _ = writeln!(ids, "    /// The `{name}` tool.\n    {camel},");
        let _ = writeln!(
            arms,
            "        ToolId::{camel} => {{\n            let p: params::{camel} = serde_json::from_value(args).map_err(crate::tools::ToolError::from_arguments)?;\n            let r: results::{camel} = crate::tools::deadline::run(ctx, p, crate::tools::handlers::{name}).await?;\n            serde_json::value::to_raw_value(&r).map_err(crate::tools::ToolError::internal)\n        }}"
        );
    }

    for file in &shared.files {
        for (def, schema) in &file.defs {
            let owner = format!("`schema/{}#/$defs/{def}`", file.rel);
            let types = Gen {
                shared: &shared,
                base: &file.rel,
                owner: &owner,
            };
            types.object(&mut defs, &camel(def), schema, Direction::Shared);
        }
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
        "/// Deserializes validated arguments into the generated type, runs the handler, and serializes its result once (no intermediate JSON tree).\npub async fn dispatch(ctx: &crate::tools::ToolContext, tool: ToolId, args: serde_json::Value) -> Result<Box<serde_json::value::RawValue>, crate::tools::ToolError> {{\n    match tool {{\n{arms}\n    }}\n}}\n"
    );
    let _ = writeln!(
        out,
        "// What each tool's schema declares about its time (`x-deadline`).\n{timed}"
    );
    let _ = writeln!(out, "/// Parameter types generated from each tool's `inputSchema`.\npub mod params {{\n    #![allow(clippy::all)]\n    use serde::Deserialize;\n{params}}}\n");
    let _ = writeln!(out, "/// Result types generated from each tool's `outputSchema`.\npub mod results {{\n    #![allow(clippy::all)]\n    use serde::Serialize;\n{results}}}\n");
    let _ = writeln!(out, "/// Types generated from the shared definitions in `schema/defs/`, used by parameters and results alike.\npub mod defs {{\n    #![allow(clippy::all)]\n    use serde::{{Deserialize, Serialize}};\n{defs}}}\n");

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
        "x-deadline",
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

/// Which way a generated type travels, which decides its derives and how
/// optional fields are (de)serialized.
#[derive(Clone, Copy, PartialEq)]
enum Direction {
    /// Arguments: deserialized, unknown fields refused, absent means `None`.
    Params,
    /// Results: serialized, `None` left out.
    Results,
    /// Shared definitions: both, since parameters and results may name them.
    Shared,
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

/// Generates the Rust types of one schema file.
struct Gen<'a> {
    /// Where references lead.
    shared: &'a Shared,
    /// The file being generated from, relative to `schema/`, for resolving references.
    base: &'a str,
    /// Who the types belong to, for doc comments ("the `read_messages` tool").
    owner: &'a str,
}

impl Gen<'_> {
    /// Emits `pub struct <name>` for an object schema and any nested object structs.
    fn object(&self, out: &mut String, name: &str, schema: &Value, dir: Direction) {
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
            let (ty, nullable) = self.rust_type(prop, &hint, dir, &mut nested, secret);
            let is_required = required.contains(&key.as_str());
            let ident = field_ident(key);
            let desc = prop["description"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("`{key}` of {}.", self.owner));
            let _ = writeln!(body, "    {}", doc_line(&desc));
            if ident.trim_start_matches("r#") != key {
                let _ = writeln!(body, "    #[serde(rename = {key:?})]");
            }
            let full = if !is_required || nullable {
                let attr = match dir {
                    Direction::Params => Some("default"),
                    Direction::Results if !is_required => {
                        Some("skip_serializing_if = \"Option::is_none\"")
                    }
                    Direction::Results => None,
                    Direction::Shared if !is_required => {
                        Some("default, skip_serializing_if = \"Option::is_none\"")
                    }
                    Direction::Shared => Some("default"),
                };
                if let Some(attr) = attr {
                    let _ = writeln!(body, "    #[serde({attr})]");
                }
                format!("Option<{ty}>")
            } else {
                ty
            };
            let _ = writeln!(body, "    pub {ident}: {full},");
        }
        let closed = schema["additionalProperties"] == Value::Bool(false);
        let derive = match dir {
            Direction::Params => {
                "#[derive(Debug, Clone, Deserialize)]\n#[serde(deny_unknown_fields)]"
            }
            Direction::Results => "#[derive(Debug, Clone, Serialize)]",
            Direction::Shared if closed => {
                "#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]\n#[serde(deny_unknown_fields)]"
            }
            Direction::Shared => "#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]",
        };
        let what = match dir {
            Direction::Params => format!("Arguments of {} ({name}).", self.owner),
            Direction::Results => format!("Structured result of {} ({name}).", self.owner),
            Direction::Shared => match schema["description"].as_str() {
                Some(d) => format!("{d} Generated from {}.", self.owner),
                None => format!("Generated from {}, shared by several tools.", self.owner),
            },
        };
        let _ = writeln!(
            out,
            "    {}\n    {}\n    pub struct {name} {{\n{body}    }}\n",
            doc_line(&what),
            derive.replace('\n', "\n    ")
        );
        out.push_str(&nested);
    }

    /// Maps a property schema to a Rust type; returns (type, nullable).
    fn rust_type(
        &self,
        prop: &Value,
        hint: &str,
        dir: Direction,
        nested: &mut String,
        secret: bool,
    ) -> (String, bool) {
        if let Some(reference) = prop.get("$ref") {
            let reference = reference.as_str().unwrap_or_else(|| {
                panic!(
                    "schema/{}: $ref must be a string, not {reference}",
                    self.base
                )
            });
            let (_, name) = self.shared.resolve(self.base, reference);
            return (format!("super::defs::{}", camel(&name)), false);
        }
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
                let (inner, inner_null) =
                    self.rust_type(&prop["items"], &format!("{hint}Item"), dir, nested, false);
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
                self.object(nested, hint, prop, dir);
                hint.to_string()
            }
            // A result object that only maps names to values of one schema is
            // a sorted map: its output is deterministic. Arguments of that
            // shape stay JSON objects, since the order a caller gave may
            // matter (MQTT 5 user properties are ordered).
            "object" if dir == Direction::Results && prop["additionalProperties"].is_object() => {
                let (inner, inner_null) = self.rust_type(
                    &prop["additionalProperties"],
                    &format!("{hint}Value"),
                    dir,
                    nested,
                    false,
                );
                if inner_null {
                    format!("std::collections::BTreeMap<String, Option<{inner}>>")
                } else {
                    format!("std::collections::BTreeMap<String, {inner}>")
                }
            }
            _ => "serde_json::Value".to_string(),
        };
        (rust, nullable)
    }
}
