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

use common::interop::{run, shell_quote, skip, spawn_command};
use common::transcript::{run_transcript, transcript_files};
use common::{free_port, Server};
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TEST: &str = "ssh";

/// Transcripts replayed at once (each over its own ssh connection).
const PARALLEL: usize = 4;

/// Finds an executable on PATH or in the usual sbin folders.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let p = std::env::temp_dir().join(format!(
            "mqtt-mcp-ssh-test-{}-{nanos:x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Our own sshd on 127.0.0.1, and the client key that may log in.
struct Sshd {
    child: Child,
    port: u16,
    client_key: PathBuf,
    log: Arc<Mutex<Vec<u8>>>,
    ssh: PathBuf,
    /// Last, so the keys and config outlive the process.
    _dir: TempDir,
}

impl Sshd {
    /// Starts sshd, or returns None after a skip notice.
    fn start() -> Option<Sshd> {
        let (Some(sshd), Some(ssh), Some(keygen)) =
            (which("sshd"), which("ssh"), which("ssh-keygen"))
        else {
            skip(
                TEST,
                "sshd, ssh or ssh-keygen not found (apt-get install openssh-server openssh-client)",
            );
            return None;
        };
        let dir = TempDir::new();
        let d = &dir.0;
        for key in ["host_key", "client_key"] {
            let out = run(
                Command::new(&keygen)
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", "mqtt-mcp-test", "-f"])
                    .arg(d.join(key)),
                Duration::from_secs(30),
            )
            .expect("run ssh-keygen");
            assert!(out.success(), "ssh-keygen: {}", out.describe());
        }
        let public = std::fs::read_to_string(d.join("client_key.pub")).unwrap();
        // `restrict`: no forwarding, no pty; running a command is all we need.
        std::fs::write(d.join("authorized_keys"), format!("restrict {public}")).unwrap();

        let mut last_log = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let config = d.join("sshd_config");
            std::fs::write(&config, sshd_config(d, port)).unwrap();
            if !config_ok(&sshd, &config) {
                return None;
            }
            let mut child = Command::new(&sshd)
                .arg("-D") // stay in the foreground, as our child
                .arg("-e") // log to stderr
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start sshd");
            let log = Arc::new(Mutex::new(Vec::new()));
            let sink = log.clone();
            let mut stderr = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    let sshd = Sshd {
                        child,
                        port,
                        client_key: d.join("client_key"),
                        log,
                        ssh,
                        _dir: dir,
                    };
                    return Some(sshd);
                }
                if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
                    break; // maybe lost the port to someone else: next attempt
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        skip(
            TEST,
            &format!("sshd did not start listening; its log:\n{last_log}"),
        );
        None
    }

    /// The ssh command that runs `remote` (one shell command line) on our sshd.
    fn command(&self, remote: &str) -> Command {
        let mut cmd = Command::new(&self.ssh);
        cmd.args(["-F", "/dev/null", "-T", "-p", &self.port.to_string(), "-i"])
            .arg(&self.client_key)
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "LogLevel=ERROR",
                "127.0.0.1",
                remote,
            ]);
        cmd
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sshd_config(d: &Path, port: u16) -> String {
    let d = d.display();
    format!(
        "# Generated by tests/ssh.rs for one test run.
Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
StrictModes no
UsePAM no
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PermitUserEnvironment no
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
PrintMotd no
PrintLastLog no
MaxStartups 100:30:200
MaxSessions 100
LogLevel INFO
"
    )
}

/// `sshd -t`: checks the config, creating the privilege separation folder
/// when sshd misses it. False after a skip notice.
fn config_ok(sshd: &Path, config: &Path) -> bool {
    let test = || {
        run(
            Command::new(sshd).arg("-t").arg("-f").arg(config),
            Duration::from_secs(30),
        )
        .expect("run sshd -t")
    };
    let mut out = test();
    if !out.success()
        && out
            .stderr
            .contains("Missing privilege separation directory")
    {
        let dir = out
            .stderr
            .split("Missing privilege separation directory:")
            .nth(1)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "/run/sshd".into());
        if let Err(e) = std::fs::create_dir_all(&dir) {
            skip(
                TEST,
                &format!("sshd needs {dir}, which cannot be created here: {e}"),
            );
            return false;
        }
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
        out = test();
    }
    if !out.success() {
        skip(
            TEST,
            &format!("sshd -t rejects the test config: {}", out.describe()),
        );
        return false;
    }
    true
}

/// `mqtt-mcp serve` with the embedded broker on P4/P5, reached through ssh.
/// Waits until the remote server reports its broker listening (retrying on
/// other ports if it lost a port race).
fn serve_over_ssh(sshd: &Sshd) -> Server {
    let mut last = String::new();
    for _attempt in 0..3 {
        let v4 = free_port();
        let mut v5 = free_port();
        while v5 == v4 {
            v5 = free_port();
        }
        let remote = format!(
            "{} serve --embedded-port {v4} --embedded-port-v5 {v5}",
            shell_quote(common::bin())
        );
        let mut server = spawn_command(sshd.command(&remote)).expect("start ssh");
        server.v4_port = v4;
        server.v5_port = v5;
        let marker = format!("embedded MQTT broker listening on mqtt://127.0.0.1:{v4}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if server.stderr().contains(&marker) {
                return server;
            }
            let exited = server.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                last = format!(
                    "ssh {remote}: {} before the broker listened; stderr:\n{}\nsshd log:\n{}",
                    exited.map_or("no start".to_string(), |s| s.to_string()),
                    server.stderr(),
                    sshd.log()
                );
                println!("retrying on other ports: {last}");
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    panic!("the server did not start over ssh: {last}");
}

#[test]
fn golden_transcripts_over_ssh() {
    let started = Instant::now();
    let Some(sshd) = Sshd::start() else { return };

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
