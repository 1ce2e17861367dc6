//! `mqtt-mcp tools` and `mqtt-mcp call`: one tool call from a shell or a
//! script (`ssh host docker exec mqtt-mcp mqtt-mcp call list_topics
//! filter='home/#'`) without a JSON-RPC session typed by hand. The call is
//! checked against the tool's schema and run by the same `tools::run` as
//! MCP's `tools/call`, on the broker `serve` would use.
//!
//! stdout carries the tool's structured result and nothing else; the
//! exit status says what happened ([`Exit`]).

use crate::options::RuntimeArgs;
use clap::Args;
use mqtt_mcp::app::App;
use mqtt_mcp::config::{parse_bool, BOOL_FORMS};
use mqtt_mcp::tools::{self, ToolContext, ToolDef};
use serde_json::{Map, Value};
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `mqtt-mcp tools`.
#[derive(Args, Debug)]
pub struct ToolsArgs {
    /// The tools offered depend on the config file and --read-only, as with `serve`.
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// `mqtt-mcp call`.
#[derive(Args, Debug)]
#[command(after_help = "\
Arguments are one JSON object, or key=value pairs typed by the tool's schema:
  a string property takes the text as it is (filter=home/# , topic=42);
  an integer or number property takes a JSON number (qos=1, window_ms=500);
  a boolean property takes 1/0, true/false, yes/no, on/off (retain=yes);
  an array or object property takes JSON (filters='[\"a/#\",\"b/#\"]');
  a property of any type (payload) takes JSON when the text is JSON, else the text.
  key:=JSON gives any property a JSON value as it is (payload:='\"21.5\"').

Exit status: 0 the tool succeeded (its structured result is on stdout, pretty on a
terminal, compact when piped); 1 the tool ran and failed (isError; the message is on
stderr); 2 the call was refused before it ran (unknown tool, arguments that do not
parse or break the schema, bad options).

Each call is its own process: sessions and background subscriptions end with it.

Examples:
  mqtt-mcp call list_topics filter='home/#' window_ms=500
  mqtt-mcp call publish_message topic=home/lamp payload=on retain=true
  mqtt-mcp call --broker mqtt://broker.local:1883 get_retained '{\"filter\": \"home/#\"}'")]
pub struct CallArgs {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Log level for stderr (error, warn, info, debug, trace); RUST_LOG takes precedence.
    #[arg(long, env = "MQTT_MCP_LOG_LEVEL", default_value = "warn")]
    log_level: String,
    /// The tool to call (`mqtt-mcp tools` lists them).
    tool: String,
    /// One JSON object, or key=value pairs (see below).
    #[arg(allow_hyphen_values = true)]
    arguments: Vec<String>,
}

/// How `call` ends, as its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// The tool succeeded; its result is on stdout.
    Success = 0,
    /// The tool ran and failed (`isError`); the message is on stderr.
    ToolFailed = 1,
    /// Refused before the tool ran: unknown tool, bad arguments or options.
    Invalid = 2,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// `mqtt-mcp tools`: one line per tool offered, its name and its title
/// (with the arguments it needs), for people choosing what to call.
pub async fn tools(args: ToolsArgs) -> anyhow::Result<()> {
    let prepared = args.runtime.prepare()?;
    let app = App::build(
        prepared.config,
        prepared.vault,
        prepared.profiles,
        mqtt_mcp::audit::Audit::off(),
    );
    let offered: Vec<&ToolDef> = tools::TOOLS
        .iter()
        .filter(|t| app.tool_listed(t.name))
        .collect();
    let width = offered.iter().map(|t| t.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for t in offered {
        out.push_str(&format!(
            "{:<width$}  {}\n",
            t.name,
            one_line(t.definition())
        ));
    }
    app.shutdown().await;
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}

/// A tool's title and required arguments, from its schema.
fn one_line(def: &Value) -> String {
    let title = def["annotations"]["title"]
        .as_str()
        .or_else(|| def["description"].as_str())
        .unwrap_or_default();
    let required: Vec<&str> = def["inputSchema"]["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if required.is_empty() {
        title.to_string()
    } else {
        format!("{title} (needs {})", required.join(", "))
    }
}

/// `mqtt-mcp call TOOL [JSON | key=value ...]`.
pub async fn call(args: CallArgs) -> ExitCode {
    super::init_logging(&args.log_level);
    match run_call(args).await {
        Ok(()) => Exit::Success.into(),
        Err((exit, message)) => {
            eprintln!("{message}");
            exit.into()
        }
    }
}

/// The call, up to printing its result; an error is the exit status and what to say on stderr.
async fn run_call(args: CallArgs) -> Result<(), (Exit, String)> {
    let invalid = |message: String| (Exit::Invalid, message);
    let tool = tools::find(&args.tool).ok_or_else(|| {
        invalid(format!(
            "unknown tool {:?}; `mqtt-mcp tools` lists the tools",
            args.tool
        ))
    })?;
    let arguments = parse_arguments(tool.definition(), &args.arguments)
        .map_err(|e| invalid(format!("{}: {e}", tool.name)))?;
    let checked = tool.check(arguments).map_err(|errs| {
        invalid(format!(
            "{}: invalid arguments:\n{}",
            tool.name,
            errs.join("\n")
        ))
    })?;
    let prepared = args
        .runtime
        .prepare()
        .map_err(|e| invalid(format!("{e:#}")))?;
    let audit = mqtt_mcp::audit::Audit::open(prepared.audit_dest.as_deref())
        .map_err(|e| invalid(format!("opening the audit log: {e}")))?;
    let app = App::build(prepared.config, prepared.vault, prepared.profiles, audit);
    if !app.tool_listed(tool.name) {
        app.shutdown().await;
        return Err(invalid(format!(
            "{} is not offered: no session may write (--read-only / MQTT_MCP_READ_ONLY, or the config file's policies)",
            tool.name
        )));
    }
    app.start_default(prepared.target);
    let ctx = ToolContext {
        app: app.clone(),
        cancel: CancellationToken::new(),
        progress: None,
        tool: tool.name,
    };
    let outcome = tools::run(&ctx, checked).await;
    let _ = tokio::time::timeout(Duration::from_millis(800), app.shutdown()).await;
    let structured = outcome.map_err(|e| (Exit::ToolFailed, e.to_string()))?;
    print_result(structured.get())
        .map_err(|e| (Exit::ToolFailed, format!("writing the result: {e}")))
}

/// Writes the structured result: pretty for a person at a terminal, the
/// tool's own compact text (one line, as serialized) for a pipe.
fn print_result(structured: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let pretty = out
        .is_terminal()
        .then(|| serde_json::from_str::<Value>(structured).ok())
        .flatten()
        .and_then(|v| serde_json::to_string_pretty(&v).ok());
    out.write_all(pretty.as_deref().unwrap_or(structured).as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The call's arguments from the command line: nothing (`{}`), one JSON
/// object, or `key=value` / `key:=JSON` pairs typed by the tool's schema.
/// Errors name the key and what it expects, never the value (it may be a
/// password).
fn parse_arguments(def: &Value, given: &[String]) -> Result<Value, String> {
    if let [only] = given {
        if only.trim_start().starts_with('{') {
            return match serde_json::from_str::<Value>(only) {
                Ok(v @ Value::Object(_)) => Ok(v),
                Ok(_) => Err("the JSON arguments must be one object".into()),
                Err(e) => Err(format!("the arguments are not valid JSON ({e})")),
            };
        }
    }
    let properties = def["inputSchema"]["properties"].as_object();
    let mut args = Map::new();
    for (n, pair) in given.iter().enumerate() {
        let Some((key, text)) = pair.split_once('=') else {
            return Err(format!(
                "argument {} has no '=': give key=value pairs or one JSON object",
                n + 1
            ));
        };
        let (key, raw_json) = match key.strip_suffix(':') {
            Some(k) => (k, true),
            None => (key, false),
        };
        let Some(schema) = properties.and_then(|p| p.get(key)) else {
            let known: Vec<&str> = properties
                .map(|p| p.keys().map(String::as_str).collect())
                .unwrap_or_default();
            return Err(format!(
                "unknown argument {key:?}; the arguments are: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        };
        let value = if raw_json {
            serde_json::from_str(text).map_err(|_| format!("{key}:= needs a JSON value"))?
        } else {
            typed_value(schema, text).map_err(|expected| format!("{key}= needs {expected}"))?
        };
        if args.insert(key.to_string(), value).is_some() {
            return Err(format!("{key} is given twice"));
        }
    }
    Ok(Value::Object(args))
}

/// The JSON value of `text` for a property of `schema`, by its `type`; the
/// error says what the property expects.
fn typed_value(schema: &Value, text: &str) -> Result<Value, String> {
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let allows = |t: &str| types.contains(&t);
    if types.is_empty() {
        // Any JSON value (payload): JSON when the text is JSON, else the text.
        return Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into())));
    }
    if allows("boolean") {
        if let Some(b) = parse_bool(text) {
            return Ok(Value::Bool(b));
        }
    }
    let parsed = serde_json::from_str::<Value>(text).ok();
    let fits = |v: &Value| match v {
        Value::Number(n) => allows("number") || (allows("integer") && !n.is_f64()),
        Value::Array(_) => allows("array"),
        Value::Object(_) => allows("object"),
        Value::Null => allows("null"),
        // Strings and booleans are taken from the text itself.
        Value::String(_) | Value::Bool(_) => false,
    };
    match parsed {
        Some(v) if fits(&v) => Ok(v),
        _ if allows("string") => Ok(Value::String(text.into())),
        _ => Err(types
            .iter()
            .map(|t| match *t {
                "boolean" => format!("a boolean ({BOOL_FORMS})"),
                "integer" => "an integer".into(),
                "number" => "a number".into(),
                "array" => "a JSON array".into(),
                "object" => "a JSON object".into(),
                other => format!("a {other}"),
            })
            .collect::<Vec<_>>()
            .join(" or ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(tool: &str, given: &[&str]) -> Result<Value, String> {
        let def = tools::find(tool).expect("tool").definition();
        let given: Vec<String> = given.iter().map(|s| s.to_string()).collect();
        parse_arguments(def, &given)
    }

    #[test]
    fn key_value_pairs_are_typed_by_the_schema() {
        assert_eq!(
            args("list_topics", &["filter=home/#", "window_ms=500"]).unwrap(),
            json!({"filter": "home/#", "window_ms": 500})
        );
        // A string property keeps digits and JSON-looking text as text.
        assert_eq!(
            args("publish_message", &["topic=42", "qos=1", "retain=YES"]).unwrap(),
            json!({"topic": "42", "qos": 1, "retain": true})
        );
        assert_eq!(
            args("subscribe", &[r#"filters=["a/#","b/+"]"#, "qos=0"]).unwrap(),
            json!({"filters": ["a/#", "b/+"], "qos": 0})
        );
        // A value may contain '='.
        assert_eq!(
            args("publish_message", &["topic=a", "payload=x=1"]).unwrap(),
            json!({"topic": "a", "payload": "x=1"})
        );
    }

    #[test]
    fn untyped_properties_take_json_when_it_is_json_else_text() {
        assert_eq!(
            args("publish_message", &["topic=t", r#"payload={"t":21.5}"#]).unwrap(),
            json!({"topic": "t", "payload": {"t": 21.5}})
        );
        assert_eq!(
            args("publish_message", &["topic=t", "payload=on"]).unwrap(),
            json!({"topic": "t", "payload": "on"})
        );
        assert_eq!(
            args("publish_message", &["topic=t", r#"payload:="21.5""#]).unwrap(),
            json!({"topic": "t", "payload": "21.5"})
        );
    }

    #[test]
    fn one_json_object_or_nothing() {
        assert_eq!(args("list_topics", &[]).unwrap(), json!({}));
        assert_eq!(
            args("list_topics", &[r#" {"filter": "a/#"}"#]).unwrap(),
            json!({"filter": "a/#"})
        );
        assert!(args("list_topics", &[r##"{"filter": "#""##])
            .unwrap_err()
            .contains("not valid JSON"));
    }

    #[test]
    fn what_does_not_parse_is_refused_without_echoing_the_value() {
        let e = args("publish_message", &["topic=t", "qos=high"]).unwrap_err();
        assert!(e.contains("qos= needs an integer"), "{e}");
        assert!(!e.contains("high"), "{e}");
        let e = args("publish_message", &["topic=t", "qos=1.5"]).unwrap_err();
        assert!(e.contains("an integer"), "{e}");
        let e = args("publish_message", &["topic=t", "retain=maybe"]).unwrap_err();
        assert!(e.contains(BOOL_FORMS), "{e}");
        let e = args("list_topics", &["colour=red"]).unwrap_err();
        assert!(
            e.contains("unknown argument \"colour\"") && e.contains("filter"),
            "{e}"
        );
        let e = args("establish_connection", &["host=h", "hunter2"]).unwrap_err();
        assert!(
            e.contains("argument 2 has no '='") && !e.contains("hunter2"),
            "{e}"
        );
        let e = args("establish_connection", &["host=a", "host=b"]).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = args("establish_connection", &["port:=nope"]).unwrap_err();
        assert!(e.contains("JSON") && !e.contains("nope"), "{e}");
    }

    #[test]
    fn the_one_line_is_the_title_and_the_required_arguments() {
        let def = tools::find("publish_message").unwrap().definition();
        assert_eq!(one_line(def), "Publish a message (needs topic)");
        let def = tools::find("list_topics").unwrap().definition();
        assert_eq!(one_line(def), "Discover topics");
    }
}
