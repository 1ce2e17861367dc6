//! The production path over SSH: every golden transcript
//! (`fixtures/transcripts/*.jsonl`) replayed through
//! `ssh 127.0.0.1 mqtt-mcp serve --embedded-port P4 --embedded-port-v5 P5`
//! must give the same normalized answers as the direct run in
//! `tests/transcripts.rs`, and the session must end cleanly (ssh exits 0
//! within 5 s of stdin closing, so the remote server saw end of input).
//!
//! The test runs its own OpenSSH `sshd` (Debian package openssh-server) on a
//! free loopback port, with a host key, a client key, `authorized_keys` and an
//! `sshd_config` generated in a temporary folder: no PAM, public keys only,
//! logins as the user running the test. Without sshd/ssh/ssh-keygen, or when
//! sshd cannot start (it needs `/run/sshd`, created here when missing), the
//! test is skipped with a notice, unless `CI` is set: then it fails.

mod common;

use common::interop::{run, shell_quote, skip};
use common::sshd::Sshd;
use common::transcript::{run_transcript, transcript_files};
use common::Server;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TEST: &str = "ssh";

/// Transcripts replayed at once (each over its own ssh connection).
const PARALLEL: usize = 4;

/// `mqtt-mcp serve` with the embedded broker on free ports, reached through
/// ssh.
fn serve_over_ssh(sshd: &Sshd) -> Server {
    Server::serve_on_free_ports(
        "over ssh",
        Duration::from_secs(20),
        |v4, v5| {
            let remote = format!(
                "{} serve --embedded-port {v4} --embedded-port-v5 {v5}",
                shell_quote(common::bin())
            );
            (format!("ssh {remote}"), sshd.command(&remote))
        },
        || format!("\nsshd log:\n{}", sshd.log()),
    )
}

#[test]
fn golden_transcripts_over_ssh() {
    let started = Instant::now();
    let Some(sshd) = Sshd::start(TEST) else {
        return;
    };

    // A plain command first, so a broken login fails with a clear message.
    let out = run(&mut sshd.command("echo ssh-ok"), Duration::from_secs(30)).unwrap();
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    if !out.success() && !root {
        // sshd switches users only as root; CI runs as root.
        skip(
            TEST,
            &format!(
                "ssh login to a non-root sshd failed: {}\nsshd log:\n{}",
                out.describe(),
                sshd.log()
            ),
        );
        return;
    }
    assert!(
        out.success() && out.stdout.trim() == "ssh-ok",
        "ssh login failed: {}\nsshd log:\n{}",
        out.describe(),
        sshd.log()
    );

    let files = transcript_files();
    assert!(!files.is_empty(), "no transcripts found");
    let queue = Mutex::new(files.clone());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL.min(files.len()) {
            scope.spawn(|| loop {
                let Some(f) = queue.lock().unwrap().pop() else {
                    break;
                };
                let t0 = Instant::now();
                let mut server = serve_over_ssh(&sshd);
                let errs = run_transcript(&f, &mut server, false);
                results
                    .lock()
                    .unwrap()
                    .push((f, errs, server.stderr(), t0.elapsed()));
            });
        }
    });

    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let mut failures = Vec::new();
    for (f, errs, stderr, took) in &results {
        let name = f.file_name().unwrap().to_string_lossy();
        println!(
            "{name}: {} over ssh in {:.1} s",
            if errs.is_empty() { "ok" } else { "FAILED" },
            took.as_secs_f64()
        );
        if !errs.is_empty() {
            failures.push(format!(
                "{}:\n  {}\n  stderr (over ssh): {}",
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
    assert!(
        failures.is_empty(),
        "transcripts over ssh differ from the golden answers:\n{}\nsshd log:\n{}",
        failures.join("\n"),
        sshd.log()
    );
    assert_eq!(results.len(), files.len());
    println!(
        "{} transcripts over ssh passed in {:.1} s",
        results.len(),
        started.elapsed().as_secs_f64()
    );
}
