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

use common::interop::{cache_root, run, skip, DirLock};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TEST: &str = "interop_python";

/// First install: creating the venv and downloading the wheels.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// The client script itself (it takes about a second).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The venv's python, installing the pinned packages when needed; None after
/// a skip notice.
fn venv_python() -> Option<PathBuf> {
    let version = match run(
        Command::new("python3").arg("--version"),
        Duration::from_secs(30),
    ) {
        Ok(o) if o.success() => format!("{}{}", o.stdout, o.stderr).trim().to_string(),
        Ok(o) => {
            skip(TEST, &format!("python3 --version failed: {}", o.describe()));
            return None;
        }
        Err(e) => {
            skip(TEST, &format!("python3 not found: {e}"));
            return None;
        }
    };
    let requirements = interop_dir().join("requirements.txt");
    let wanted = format!(
        "{version}\n{}",
        std::fs::read_to_string(&requirements).expect("tests/interop/requirements.txt")
    );
    let root = cache_root();
    std::fs::create_dir_all(&root).unwrap();
    let venv = root.join("py-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("installed-requirements.txt");
    let _lock = DirLock::acquire(root.join("py-venv.lock"), INSTALL_TIMEOUT);
    if python.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Some(python);
    }

    let started = Instant::now();
    let _ = std::fs::remove_dir_all(&venv);
    let made = run(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        Duration::from_secs(120),
    )
    .expect("python3 ran a moment ago");
    if !made.success() {
        skip(
            TEST,
            &format!(
                "python3 -m venv failed (pip/ensurepip missing?): {}",
                made.describe()
            ),
        );
        return None;
    }
    let installed = run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--disable-pip-version-check"])
            .args(["--no-input", "--quiet", "--retries", "2", "--timeout", "30"])
            .arg("--requirement")
            .arg(&requirements)
            .env("PIP_NO_CACHE_DIR", "0"),
        INSTALL_TIMEOUT,
    )
    .expect("the venv's python runs");
    if !installed.success() {
        let _ = std::fs::remove_dir_all(&venv);
        skip(
            TEST,
            &format!(
                "pip could not install tests/interop/requirements.txt (is PyPI reachable?): {}",
                installed.describe()
            ),
        );
        return None;
    }
    std::fs::write(&stamp, &wanted).unwrap();
    println!(
        "installed the pinned MCP Python SDK into {} in {:.1} s",
        venv.display(),
        started.elapsed().as_secs_f64()
    );
    Some(python)
}

#[test]
fn python_sdk_client_talks_to_the_server() {
    let Some(python) = venv_python() else { return };
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
