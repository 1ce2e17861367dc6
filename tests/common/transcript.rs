//! The golden-transcript runner; the format is described in `tests/transcripts.rs`.

use super::{normalize, Server};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn substitute(text: &str, vars: &HashMap<String, String>) -> String {
    let mut out = text.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 300 {
        format!(
            "{}… ({} bytes)",
            &s[..s.char_indices().nth(300).map(|(i, _)| i).unwrap_or(s.len())],
            s.len()
        )
    } else {
        s
    }
}

/// Walks expected and actual together: captures, then compares with normalization.
pub fn compare(
    expected: &Value,
    raw: &Value,
    norm: &Value,
    path: &str,
    vars: &mut HashMap<String, String>,
    errors: &mut Vec<String>,
) {
    if let Value::String(s) = expected {
        if let Some(name) = s
            .strip_prefix("{{capture:")
            .and_then(|r| r.strip_suffix("}}"))
        {
            let v = match raw {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            vars.insert(name.to_string(), v);
            return;
        }
    }
    match (expected, norm) {
        (Value::Object(e), Value::Object(n)) => {
            let mut keys: Vec<&String> = e.keys().chain(n.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                match (e.get(k), n.get(k), raw.get(k)) {
                    (Some(ev), Some(nv), Some(rv)) => {
                        compare(ev, rv, nv, &format!("{path}/{k}"), vars, errors)
                    }
                    (Some(_), None, _) => errors.push(format!("{path}/{k}: missing in the answer")),
                    _ => errors.push(format!("{path}/{k}: not expected, got {}", short(&n[k]))),
                }
            }
        }
        (Value::Array(e), Value::Array(n)) if e.len() == n.len() => {
            for (i, (ev, nv)) in e.iter().zip(n).enumerate() {
                compare(ev, &raw[i], nv, &format!("{path}/{i}"), vars, errors);
            }
        }
        (e, n) if e == n => {}
        (e, n) => errors.push(format!("{path}: expected {}, got {}", short(e), short(n))),
    }
}

/// Replaces the parts of `actual` that `expected` captured, for recording.
fn keep_captures(expected: &Value, actual: &Value) -> Value {
    if let Value::String(s) = expected {
        if s.starts_with("{{capture:") {
            return expected.clone();
        }
    }
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => Value::Object(
            a.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        e.get(k)
                            .map(|ev| keep_captures(ev, v))
                            .unwrap_or_else(|| v.clone()),
                    )
                })
                .collect(),
        ),
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => Value::Array(
            e.iter()
                .zip(a)
                .map(|(ev, av)| keep_captures(ev, av))
                .collect(),
        ),
        _ => actual.clone(),
    }
}

/// Runs one transcript; returns the failures (empty = pass).
pub fn run_transcript(path: &Path, server: &mut Server, record: bool) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut vars: HashMap<String, String> = HashMap::new();
    vars.insert("v4_port".into(), server.v4_port.to_string());
    vars.insert("v5_port".into(), server.v5_port.to_string());
    vars.insert("blackhole_port".into(), super::blackhole().to_string());
    vars.insert("closed_port".into(), super::free_port().to_string());
    let mut errors = Vec::new();
    let mut expected_ids: Vec<Value> = Vec::new();
    let mut recorded = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let lineno = n + 1;
        if line.trim().is_empty() {
            recorded.push(line.to_string());
            continue;
        }
        let original = line;
        let line = &substitute(line, &vars);
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}:{lineno}: not JSON: {e}", path.display()));
        recorded.push(original.to_string());
        if let Some(raw) = v.get("raw").and_then(Value::as_str) {
            server.send_raw(raw.as_bytes());
        } else if let Some(hex) = v.get("raw_hex").and_then(Value::as_str) {
            let bytes = ::hex::decode(hex).unwrap();
            server.send_raw(&bytes);
        } else if let Some(rep) = v.get("raw_repeat") {
            let t = rep["text"]
                .as_str()
                .unwrap()
                .repeat(rep["count"].as_u64().unwrap() as usize);
            let t = format!(
                "{}{t}{}",
                rep["prefix"].as_str().unwrap_or(""),
                rep["suffix"].as_str().unwrap_or("")
            );
            server.send_raw(t.as_bytes());
        } else if let Some(ms) = v.get("sleep_ms").and_then(Value::as_u64) {
            std::thread::sleep(Duration::from_millis(ms));
        } else if v.get("method").is_some() {
            server.send_raw(line.as_bytes());
        } else if v.get("result").is_some() || v.get("error").is_some() {
            let id = v.get("id").cloned().unwrap_or(Value::Null);
            let actual = if id.is_null() {
                loop {
                    match server.next_message(Duration::from_secs(20)) {
                        Some(m) if m.get("id") == Some(&Value::Null) => break m,
                        Some(m) if m.get("method").is_some() => continue,
                        Some(m) => {
                            errors.push(format!(
                                "{}:{lineno}: expected a null-id answer, got {m}",
                                path.display()
                            ));
                            break m;
                        }
                        None => panic!(
                            "{}:{lineno}: no null-id answer; stderr:\n{}",
                            path.display(),
                            server.stderr()
                        ),
                    }
                }
            } else {
                expected_ids.push(id.clone());
                server.recv_id(&id, Duration::from_secs(30))
            };
            let norm = normalize(&actual);
            if record {
                *recorded.last_mut().unwrap() = keep_captures(&v, &norm).to_string();
                compare(&v, &actual, &norm, "", &mut vars, &mut Vec::new());
            } else {
                let mut errs = Vec::new();
                compare(&v, &actual, &norm, "", &mut vars, &mut errs);
                for e in errs {
                    errors.push(format!("{}:{lineno}: {e}", path.display()));
                }
            }
        } else {
            panic!(
                "{}:{lineno}: unknown transcript line {line}",
                path.display()
            );
        }
    }
    let (status, rest) = server.finish(Duration::from_secs(5));
    if !status.success() {
        errors.push(format!("{}: exit status {status}", path.display()));
    }
    for m in rest {
        if m.get("method").is_none() && !(m.get("id").is_some_and(|id| expected_ids.contains(id))) {
            errors.push(format!("{}: unexpected answer {m}", path.display()));
        }
    }
    if record {
        std::fs::write(path, recorded.join("\n") + "\n").unwrap();
    }
    errors
}

pub fn transcript_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/transcripts");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
}
