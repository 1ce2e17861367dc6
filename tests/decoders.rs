//! Decoders by configuration, end to end: a config file maps filters to
//! every codec; payloads from real encoders (Python msgpack, cbor2, and
//! Google's protobuf runtime with `fixtures/decoders/reading.proto`
//! compiled by grpcio-tools; `tests/interop/decoders/encode.py`) are
//! published retained and read back with `get_retained` exactly as the
//! encoder states them. Also: `json`, `text` and `raw` entries override the
//! usual guess, a payload not of its codec is shown plainly with
//! `decode_error`, and a bad decoder entry stops the server at start.
//!
//! The Python packages, pinned in `tests/interop/decoders/requirements.txt`,
//! are installed into `target/interop/decoders-venv`; without python3 or
//! PyPI the encoder test is skipped with a notice, unless `CI` is set.

mod common;

use common::interop::{python_venv, run};
use common::Server;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TEST: &str = "decoders";

fn scratch(tag: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{tag}-{}-{}",
        std::process::id(),
        common::free_port()
    ));
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/decoders")
}

/// A server on the embedded broker with one decoder entry per codec.
fn server(dir: &Path) -> Server {
    let config = format!(
        r#"
[[decoders]]
filter = "dec/mp/#"
codec = "msgpack"

[[decoders]]
filter = "dec/cb/#"
codec = "cbor"

[[decoders]]
filter = "dec/pb/#"
codec = "protobuf"
proto_file = "{}"
message = "acme.telemetry.Reading"

[[decoders]]
filter = "dec/js/#"
codec = "json"

[[decoders]]
filter = "dec/tx/#"
codec = "text"

[[decoders]]
filter = "dec/raw/#"
codec = "raw"
"#,
        fixtures().join("reading.proto").display()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut s = Server::embedded(&["--config", path.to_str().unwrap()]);
    s.initialize();
    s
}

fn publish_hex(s: &mut Server, topic: &str, hex: &str) {
    s.call_ok(
        "publish_message",
        json!({"topic": topic, "payload": {"hex": hex}, "retain": true, "qos": 1}),
    );
}

fn retained(s: &mut Server, filter: &str) -> Vec<Value> {
    let r = s.call_ok(
        "get_retained",
        json!({"filter": filter, "preview_bytes": 65536}),
    );
    r["messages"].as_array().unwrap().clone()
}

fn payload_of<'a>(msgs: &'a [Value], topic: &str) -> &'a Value {
    &msgs
        .iter()
        .find(|m| m["topic"] == topic)
        .unwrap_or_else(|| panic!("no {topic} in {msgs:?}"))["payload"]
}

#[test]
fn real_encoders_decode_exactly() {
    let Some(python) = python_venv(
        TEST,
        "decoders-venv",
        "tests/interop/decoders/requirements.txt",
    ) else {
        return;
    };
    let dir = scratch("decoders");
    let out = run(
        Command::new(&python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/decoders/encode.py"))
            .arg(fixtures())
            .arg(&dir)
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        Duration::from_secs(120),
    )
    .expect("run encode.py");
    assert!(out.success(), "encode.py failed: {}", out.describe());
    let cases: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(cases.len(), 3);
    let mut s = server(&dir);
    let topic = |codec: &str| {
        let short = match codec {
            "msgpack" => "mp",
            "cbor" => "cb",
            _ => "pb",
        };
        format!("dec/{short}/x")
    };
    for c in &cases {
        publish_hex(
            &mut s,
            &topic(c["codec"].as_str().unwrap()),
            c["hex"].as_str().unwrap(),
        );
    }
    let msgs = retained(&mut s, "dec/#");
    for c in &cases {
        let codec = c["codec"].as_str().unwrap();
        let p = payload_of(&msgs, &topic(codec));
        assert_eq!(p["format"], codec, "{p}");
        assert_eq!(p["json"], c["expected"], "{codec}");
        assert_eq!(p["truncated"], false);
        assert!(p.get("decode_error").is_none(), "{p}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn codecs_override_the_guess_and_report_mismatches() {
    let dir = scratch("decoders-plain");
    let mut s = server(&dir);
    let hex = |t: &str| t.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    publish_hex(&mut s, "dec/tx/a", &hex(r#"{"a":1}"#));
    publish_hex(&mut s, "dec/raw/a", &hex("plain"));
    publish_hex(&mut s, "dec/js/a", &hex("not json"));
    publish_hex(&mut s, "dec/mp/bad", "920102ff");
    publish_hex(&mut s, "dec/pb/bad", "0a09ff");
    publish_hex(&mut s, "elsewhere/a", &hex(r#"{"a":1}"#));
    let msgs = retained(&mut s, "#");
    let p = payload_of(&msgs, "dec/tx/a");
    assert_eq!(
        (&p["format"], &p["text"]),
        (&json!("text"), &json!(r#"{"a":1}"#))
    );
    let p = payload_of(&msgs, "dec/raw/a");
    assert_eq!(
        (&p["format"], &p["base64"]),
        (&json!("binary"), &json!("cGxhaW4="))
    );
    let p = payload_of(&msgs, "dec/js/a");
    assert_eq!(p["format"], "text");
    assert!(
        p["decode_error"].as_str().unwrap().starts_with("not JSON"),
        "{p}"
    );
    let p = payload_of(&msgs, "dec/mp/bad");
    assert_eq!(p["format"], "binary");
    assert!(
        p["decode_error"].as_str().unwrap().contains("MessagePack"),
        "{p}"
    );
    let p = payload_of(&msgs, "dec/pb/bad");
    assert!(
        p["decode_error"]
            .as_str()
            .unwrap()
            .contains("acme.telemetry.Reading"),
        "{p}"
    );
    // No entry: the usual guess.
    let p = payload_of(&msgs, "elsewhere/a");
    assert_eq!(
        (&p["format"], &p["json"]),
        (&json!("json"), &json!({"a": 1}))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_decoder_entry_stops_the_server() {
    let dir = scratch("decoders-bad");
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        "[[decoders]]\nfilter = \"x/#\"\ncodec = \"protobuf\"\nproto_file = \"missing.proto\"\nmessage = \"a.B\"\n",
    )
    .unwrap();
    let out = Command::new(common::bin())
        .args(["serve", "--config"])
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.proto"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
