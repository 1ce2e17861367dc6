//! Interop with the official MCP Python SDK: `tests/interop/python_client.py`
//! drives `mqtt-mcp serve` (embedded broker) through the SDK's stdio client
//! and `ClientSession` — discover probe, initialize, tools/list with every
//! schema checked as JSON Schema draft 2020-12, a retained publish and a live
//! one caught by `subscribe_and_collect`, invalid calls with `isError`, and a
//! clean exit. The script's docstring lists each check.
//!
//! The SDK and `jsonschema`, pinned in `tests/interop/requirements.txt`, are
//! installed into a venv under `target/interop/py-venv`, reused while the
//! requirements and the Python version stay the same. Without python3 or
//! with the registry unreachable the test is skipped with a notice, unless
//! `CI` is set: then it fails.

mod common;

use common::interop::run;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TEST: &str = "interop_python";

/// The client script itself (it takes about a second).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

#[test]
fn python_sdk_client_talks_to_the_server() {
    let Some(python) = common::interop::python_sdk(TEST) else {
        return;
    };
    let schema_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    let out = run(
        Command::new(&python)
            .arg(interop_dir().join("python_client.py"))
            .arg(common::bin())
            .arg(&schema_dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("MQTT_MCP_BROKER")
            .env_remove("RUST_LOG"),
        RUN_TIMEOUT,
    )
    .expect("run python_client.py");
    println!("{}", out.describe());
    assert!(
        out.success(),
        "the MCP Python SDK client failed: {}",
        out.describe()
    );
    assert!(
        out.stdout.contains("python interop passed"),
        "the script did not reach its end: {}",
        out.describe()
    );
}
