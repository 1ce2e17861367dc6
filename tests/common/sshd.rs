//! A test-owned OpenSSH `sshd` on a free loopback port (the helper of
//! `tests/ssh.rs`, shared here for `tests/container.rs`): host key, client
//! key, `authorized_keys` and `sshd_config` in a temporary folder; no PAM,
//! public keys only, logins as the user running the test. When sshd cannot be
//! used, [`Sshd::start`] skips with a notice (a failure when `CI` is set).

use super::free_port;
use super::interop::{run, skip};
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Finds an executable on PATH or in the usual sbin folders.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Our own sshd on 127.0.0.1, and the client key that may log in.
pub struct Sshd {
    child: Child,
    /// The loopback port sshd listens on.
    pub port: u16,
    /// The private key that may log in.
    pub client_key: PathBuf,
    log: Arc<Mutex<Vec<u8>>>,
    ssh: PathBuf,
    /// The name skip notices carry.
    test: &'static str,
    /// Last, so the keys and config outlive the process.
    _dir: tempfile::TempDir,
}

impl Sshd {
    /// Starts sshd, or returns None after a skip notice.
    pub fn start(test: &'static str) -> Option<Sshd> {
        let (Some(sshd), Some(ssh), Some(keygen)) =
            (which("sshd"), which("ssh"), which("ssh-keygen"))
        else {
            skip(
                test,
                "sshd, ssh or ssh-keygen not found (apt-get install openssh-server openssh-client)",
            );
            return None;
        };
        let dir = super::scratch_dir("sshd");
        let d = dir.path();
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
            if !config_ok(test, &sshd, &config) {
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
                        test,
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
            test,
            &format!("sshd did not start listening; its log:\n{last_log}"),
        );
        None
    }

    /// The ssh command that runs `remote` (one shell command line) on our sshd.
    pub fn command(&self, remote: &str) -> Command {
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

    /// The ssh client command (without the remote command) as shell words.
    pub fn shell_prefix(&self) -> String {
        let cmd = self.command("");
        let prog = super::interop::shell_quote(&cmd.get_program().to_string_lossy());
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .filter(|a| !a.is_empty())
            .map(|a| super::interop::shell_quote(&a))
            .collect();
        format!("{prog} {}", args.join(" "))
    }

    pub fn log(&self) -> String {
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
        "# Generated by tests/common/sshd.rs for one test run.
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
fn config_ok(test_name: &str, sshd: &Path, config: &Path) -> bool {
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
                test_name,
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
            test_name,
            &format!("sshd -t rejects the test config: {}", out.describe()),
        );
        return false;
    }
    true
}
