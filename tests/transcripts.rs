//! Golden JSON-RPC transcripts (`fixtures/transcripts/*.jsonl`) replayed
//! against the real binary with its embedded broker.
//!
//! Transcript lines, in order:
//! - a JSON-RPC message with `method`: sent to the server;
//! - `{"raw": "..."}`, `{"raw_hex": "..."}`, `{"raw_repeat": {"prefix": "..", "text": "x", "count": N, "suffix": ".."}}`:
//!   sent as one raw line (for invalid input);
//! - a JSON-RPC response (`result` or `error`): the runner waits for the answer
//!   with that id (null ids match null-id answers in order) and compares it
//!   with volatile fields normalized (see `common::normalize`);
//! - `{"sleep_ms": N}`: lets time pass (only to make a cancellation race certain).
//!
//! `{{name}}` in sent lines is replaced by a variable: `v4_port`, `v5_port`,
//! `blackhole_port` (accepts TCP, never answers), `closed_port` (nothing
//! listens), or a value captured from an earlier answer whose expected form
//! was the string `"{{capture:name}}"`.
//!
//! After the last line stdin is closed: the server must exit within 5 s and
//! must not have sent any response the transcript did not expect (so a
//! cancelled request really got none).
//!
//! `TRANSCRIPT_RECORD=1 cargo test --test transcripts` rewrites the expected
//! answers from what the server said (review the diff!).

mod common;

use common::transcript::{run_transcript, transcript_files};
use common::Server;
use std::path::PathBuf;

#[test]
fn golden_transcripts() {
    let record = std::env::var("TRANSCRIPT_RECORD").is_ok_and(|v| v == "1");
    let only = std::env::var("TRANSCRIPT").ok();
    let files: Vec<PathBuf> = transcript_files()
        .into_iter()
        .filter(|f| {
            only.as_ref()
                .is_none_or(|o| f.to_string_lossy().contains(o.as_str()))
        })
        .collect();
    assert!(!files.is_empty(), "no transcripts found");
    // A few at a time: each runs a server with its own broker, and timing
    // windows (retained replay, settle periods) must not starve on 2 cores.
    const PARALLEL: usize = 6;
    let queue = std::sync::Mutex::new(files);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL {
            scope.spawn(|| loop {
                let Some(f) = queue.lock().unwrap().pop() else {
                    break;
                };
                let mut server = Server::embedded(&[]);
                let errs = run_transcript(&f, &mut server, record);
                results.lock().unwrap().push((f, errs, server.stderr()));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let mut failures = Vec::new();
    for (f, errs, stderr) in results {
        if !errs.is_empty() {
            failures.push(format!(
                "{}:\n  {}\n  stderr: {}",
                f.display(),
                errs.join("\n  "),
                stderr
                    .lines()
                    .take(20)
                    .collect::<Vec<_>>()
                    .join("\n          ")
            ));
        }
    }
    if !failures.is_empty() {
        // Kept for post-mortems of rare failures under load.
        let _ = std::fs::write(
            concat!(env!("CARGO_TARGET_TMPDIR"), "/transcript-failures.txt"),
            failures.join("\n"),
        );
    }
    assert!(
        failures.is_empty(),
        "transcripts failed:\n{}",
        failures.join("\n")
    );
}
