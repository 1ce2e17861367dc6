//! Runs `mqtt-mcp` as a command (`tools`, `call`) to completion: exit
//! status and the two streams apart, in an environment without the
//! runner's `MQTT_MCP_*` variables.

use std::process::{Command, Stdio};

/// What one command did.
#[derive(Debug)]
pub struct Run {
    /// The exit status (-1 when killed by a signal).
    pub code: i32,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

impl Run {
    /// stdout as the one JSON value it must be.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {self:#?}"))
    }
}

/// A command line for `mqtt-mcp ARGS` with only `env` of the `MQTT_MCP_*`
/// variables (and no RUST_LOG), stdin closed.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(super::bin());
    without_our_variables(&mut cmd);
    cmd.args(args).envs(env.iter().copied());
    cmd.stdin(Stdio::null());
    cmd
}

/// Removes the runner's `MQTT_MCP_*` variables and RUST_LOG from `cmd`.
fn without_our_variables(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MQTT_MCP_") {
            cmd.env_remove(k);
        }
    }
    cmd.env_remove("RUST_LOG");
}

/// Runs `mqtt-mcp ARGS` with stdout and stderr piped, to the end.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = command(args, env)
        .output()
        .unwrap_or_else(|e| panic!("run mqtt-mcp {args:?}: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `mqtt-mcp ARGS` with stdout on a terminal (a pseudo-terminal from
/// python3's `pty` module), stderr dropped: what a person at a shell sees.
/// None when python3 is missing.
pub fn run_on_terminal(args: &[&str]) -> Option<Run> {
    let python = ["python3", "python"].into_iter().find(|p| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })?;
    // pty.spawn gives the child a terminal on stdin/stdout/stderr and copies
    // its output to ours; the child's stderr is closed first so only
    // stdout reaches the terminal.
    let script = "import os, pty, sys\n\
        def child():\n    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)\n    os.execv(sys.argv[1], sys.argv[1:])\n\
        pid, fd = pty.fork()\n\
        if pid == 0:\n    child()\n\
        out = b''\n\
        while True:\n    try:\n        chunk = os.read(fd, 65536)\n    except OSError:\n        break\n    if not chunk:\n        break\n    out += chunk\n\
        _, status = os.waitpid(pid, 0)\n\
        sys.stdout.buffer.write(out)\n\
        sys.exit(os.waitstatus_to_exitcode(status))\n";
    let mut all = vec!["-c", script, super::bin()];
    all.extend_from_slice(args);
    let mut cmd = Command::new(python);
    without_our_variables(&mut cmd);
    let out = cmd.args(&all).stdin(Stdio::null()).output().ok()?;
    Some(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
