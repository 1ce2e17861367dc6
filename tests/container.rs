//! The production path in a container: `deploy/Containerfile` built by
//! `ci/build-image.sh`, started detached with the real `docker` CLI
//! (`docker run -d -i --read-only --network=host`), then
//!
//! 1. `fixtures/transcripts/session_lifecycle.jsonl` replayed through
//!    `docker exec -i NAME mqtt-mcp serve` gives the golden answers;
//! 2. the same through `ssh -p PORT 127.0.0.1 docker exec -i NAME mqtt-mcp serve`
//!    on the test-owned sshd of `tests/common/sshd.rs`;
//! 3. two exec sessions at once are separate servers: neither sees the
//!    other's broker sessions;
//! 4. `SIGTERM` stops the container (`mqtt-mcp idle`) with exit code 0 within
//!    a second, and nothing of it is left.
//!
//! Engine: when `podman` is installed the test runs its own Docker-compatible
//! API service (`podman system service` on a socket in a temporary folder,
//! with a `containers.conf` there: no ulimits, cgroupfs, runc) and points
//! `DOCKER_HOST` at it; otherwise a docker daemon that answers `docker info`.
//! Without either (or without the `docker` CLI) the test is skipped with a
//! notice, unless `CI` is set: then it fails and says what to install.
//! Containers, the image and the API service are removed by name at the end.

mod common;

use common::interop::{in_ci, run, shell_quote, skip, Output};
use common::sshd::{which, Sshd};
use common::transcript::run_transcript;
use common::{free_port, Server};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TEST: &str = "container";

/// What the test needs, for the failure message under CI.
const INSTALL: &str =
    "apt-get install podman runc (and the docker CLI), or a running docker daemon";

const CONTAINERS_CONF: &str = "# Written by tests/container.rs for its own podman service.
[containers]
default_ulimits = []

[engine]
cgroup_manager = \"cgroupfs\"
runtime = \"runc\"
";

/// The container engine reached through the `docker` CLI.
struct Engine {
    docker: PathBuf,
    /// `unix://…/podman.sock` when we run podman's API service.
    docker_host: Option<String>,
    /// The API service, killed on drop.
    service: Option<Child>,
    /// Containers and image to remove on drop.
    containers: Vec<String>,
    image: Option<String>,
    /// Last: the socket and containers.conf live here.
    dir: tempfile::TempDir,
}

impl Engine {
    /// Starts podman's API service, or finds a docker daemon; None after a skip notice.
    fn start() -> Option<Engine> {
        let Some(docker) = which("docker") else {
            skip(TEST, &format!("no docker CLI ({INSTALL})"));
            return None;
        };
        let dir = common::scratch_dir("container");
        let mut engine = Engine {
            docker,
            docker_host: None,
            service: None,
            containers: Vec::new(),
            image: None,
            dir,
        };
        if let Some(podman) = which("podman") {
            let conf = engine.dir.path().join("containers.conf");
            std::fs::write(&conf, CONTAINERS_CONF).unwrap();
            let sock = engine.dir.path().join("podman.sock");
            let host = format!("unix://{}", sock.display());
            let child = Command::new(podman)
                .args(["system", "service", "--time=0", &host])
                .env("CONTAINERS_CONF", &conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start podman system service");
            engine.service = Some(child);
            engine.docker_host = Some(host);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if sock.exists() && engine.docker(&["info"], 30).success() {
                    return Some(engine);
                }
                if Instant::now() > deadline {
                    let why = engine.docker(&["info"], 30).describe();
                    skip(
                        TEST,
                        &format!("podman system service did not answer `docker info`: {why}"),
                    );
                    return None;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let info = engine.docker(&["info"], 30);
        if info.success() {
            return Some(engine);
        }
        skip(
            TEST,
            &format!(
                "no podman and no docker daemon ({INSTALL}); docker info: {}",
                info.describe()
            ),
        );
        None
    }

    /// `docker ARGS` against our engine.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.docker);
        cmd.args(args);
        if let Some(h) = &self.docker_host {
            cmd.env("DOCKER_HOST", h);
        }
        cmd
    }

    fn docker(&self, args: &[&str], timeout_s: u64) -> Output {
        run(&mut self.command(args), Duration::from_secs(timeout_s)).expect("run docker")
    }

    /// The same command as one shell line, for the remote side of ssh.
    fn shell_line(&self, args: &[&str]) -> String {
        let mut words = Vec::new();
        if let Some(h) = &self.docker_host {
            words.push(format!("DOCKER_HOST={}", shell_quote(h)));
        }
        words.push(shell_quote(&self.docker.display().to_string()));
        words.extend(args.iter().map(|a| shell_quote(a)));
        words.join(" ")
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for name in std::mem::take(&mut self.containers) {
            let _ = self.docker(&["rm", "-f", "-t", "0", &name], 60);
        }
        if let Some(image) = self.image.take() {
            let _ = self.docker(&["rmi", "-f", &image], 60);
        }
        if let Some(mut s) = self.service.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

/// `mqtt-mcp serve` with the embedded broker on free host ports, started by
/// `launch(args)` (docker exec, directly or over ssh).
fn serve_in_container(launch: &dyn Fn(&[&str]) -> Command) -> Server {
    Server::serve_on_free_ports(
        "in the container",
        Duration::from_secs(30),
        |v4, v5| {
            let (p4, p5) = (v4.to_string(), v5.to_string());
            let args = [
                "mqtt-mcp",
                "serve",
                "--embedded-port",
                &p4,
                "--embedded-port-v5",
                &p5,
            ];
            (args.join(" "), launch(&args))
        },
        String::new,
    )
}

fn transcript() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/transcripts/session_lifecycle.jsonl")
}

fn client_ids(list: &Value) -> Vec<String> {
    list["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| s["client_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Runs the official MCP Python SDK client (tests/interop/python_client.py)
/// against a server started by the shell line `launch` (with the client's
/// arguments appended), e.g. `docker exec -i NAME mqtt-mcp "$@"`.
fn python_sdk_through(launch: &str, how: &str, log: impl Fn() -> String) {
    let Some(python) = common::interop::python_sdk(TEST) else {
        return;
    };
    let dir = common::scratch_dir("wrapper");
    let wrapper = dir.path().join("mqtt-mcp-wrapper");
    std::fs::write(&wrapper, format!("#!/bin/sh\n{launch}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = run(
        Command::new(&python)
            .arg(root.join("tests/interop/python_client.py"))
            .arg(&wrapper)
            .arg(root.join("schema"))
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        Duration::from_secs(180),
    )
    .expect("run python_client.py");
    assert!(
        out.success() && out.stdout.contains("python interop passed"),
        "the MCP Python SDK client {how} failed: {}\n{}",
        out.describe(),
        log()
    );
    println!("python SDK client: ok {how}");
}

/// `docker exec NAME mqtt-mcp call …` (no `-i`, no terminal: compact
/// output), as a script or a person debugging the exec path runs it: a
/// retained publish and the issue's `list_topics filter='home/#'` on a
/// Mosquitto on the host (the container shares its network; the broker from
/// `-e MQTT_MCP_BROKER` as a deployment gives it), or a publish on the
/// embedded broker without Mosquitto; then exit 1 for a tool that fails and
/// exit 2 for a call refused before it runs.
fn call_through_docker_exec(engine: &Engine, name: &str) {
    let call = |env: &[String], args: &[&str]| {
        let mut full = vec!["exec"];
        for e in env {
            full.extend(["-e", e.as_str()]);
        }
        full.extend([name, "mqtt-mcp", "call"]);
        full.extend_from_slice(args);
        engine.docker(&full, 120)
    };
    let code = |out: &Output| out.status.and_then(|s| s.code());
    let one_json_line = |out: &Output| -> Value {
        assert_eq!(out.stdout.lines().count(), 1, "compact: {}", out.describe());
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", out.describe()))
    };
    let mosquitto = common::brokers::Mosquitto::start(TEST);
    let env: Vec<String> = mosquitto
        .iter()
        .map(|m| format!("MQTT_MCP_BROKER={}", m.url()))
        .collect();
    let out = call(
        &env,
        &[
            "publish_message",
            "topic=home/kitchen/temp",
            "payload=21.5",
            "retain=yes",
            "qos=1",
        ],
    );
    assert!(out.success(), "call publish_message: {}", out.describe());
    assert_eq!(one_json_line(&out)["status"], "acknowledged");
    if mosquitto.is_some() {
        let out = call(&env, &["list_topics", "filter=home/#", "window_ms=0"]);
        assert!(out.success(), "call list_topics: {}", out.describe());
        let v = one_json_line(&out);
        assert_eq!(v["topics"][0]["topic"], "home/kitchen/temp", "{v}");
    }
    let out = call(&env, &["publish_message", "topic=home/#"]);
    assert_eq!(code(&out), Some(1), "a failing tool: {}", out.describe());
    assert!(
        out.stdout.is_empty() && out.stderr.contains("wildcards"),
        "{}",
        out.describe()
    );
    let out = call(&env, &["list_topics", "window_ms=soon"]);
    assert_eq!(code(&out), Some(2), "a refused call: {}", out.describe());
    assert!(out.stdout.is_empty(), "{}", out.describe());
    println!(
        "mqtt-mcp call through docker exec: ok ({})",
        if mosquitto.is_some() {
            "on Mosquitto"
        } else {
            "on the embedded broker"
        }
    );
}

#[test]
fn container_serves_over_docker_exec_and_ssh() {
    let started = Instant::now();
    if which("docker").is_none() && which("podman").is_none() && !in_ci() {
        skip(
            TEST,
            &format!("neither docker nor podman found ({INSTALL})"),
        );
        return;
    }
    let Some(mut engine) = Engine::start() else {
        return;
    };
    let tag = format!("localhost/mqtt-mcp:test-{}", std::process::id());
    let name = format!("mqtt-mcp-test-{}", std::process::id());

    // 1. The image, built as a user would build it.
    let t0 = Instant::now();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/build-image.sh");
    let mut build = Command::new("bash");
    build.arg(&script).arg(&tag).env_remove("DOCKER_HOST").env(
        "CONTAINER_ENGINE",
        if engine.docker_host.is_some() {
            "podman"
        } else {
            "docker"
        },
    );
    let out = run(&mut build, Duration::from_secs(1500)).expect("run ci/build-image.sh");
    assert!(
        out.success(),
        "ci/build-image.sh failed: {}",
        out.describe()
    );
    assert_eq!(
        out.stdout.lines().last(),
        Some(tag.as_str()),
        "build-image.sh must print the tag last"
    );
    engine.image = Some(tag.clone());
    let build_time = t0.elapsed();
    println!(
        "image {tag} built in {:.1} s:\n{}",
        build_time.as_secs_f64(),
        out.stderr
            .lines()
            .filter(|l| l.starts_with("build-image:"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // 2. The container, idling, read-only, on the host network (the
    // transcript reaches test ports on the host loopback).
    let _ = engine.docker(&["rm", "-f", "-t", "0", &name], 60);
    engine.containers.push(name.clone());
    let out = engine.docker(
        &[
            "run",
            "-d",
            "-i",
            "--name",
            &name,
            "--network=host",
            "--read-only",
            &tag,
        ],
        120,
    );
    assert!(out.success(), "docker run: {}", out.describe());
    let out = engine.docker(&["exec", &name, "mqtt-mcp", "--version"], 60);
    assert!(
        out.success() && out.stdout.contains("mqtt-mcp"),
        "docker exec mqtt-mcp --version: {}",
        out.describe()
    );
    let out = engine.docker(&["exec", &name, "mqtt-mcp", "health"], 60);
    assert!(out.success(), "health without a broker: {}", out.describe());
    let out = engine.docker(
        &[
            "exec",
            &name,
            "mqtt-mcp",
            "health",
            "--broker",
            &format!("mqtt://127.0.0.1:{}", free_port()),
        ],
        60,
    );
    assert!(
        !out.success() && out.stderr.contains("unhealthy"),
        "health of a closed port must fail: {}",
        out.describe()
    );

    // 2b. One tool call from a shell: `mqtt-mcp call` through docker exec.
    call_through_docker_exec(&engine, &name);

    // 3. The golden transcript through docker exec.
    let exec = |args: &[&str]| {
        let mut full = vec!["exec", "-i", name.as_str()];
        full.extend_from_slice(args);
        engine.command(&full)
    };
    let t1 = Instant::now();
    let mut server = serve_in_container(&exec);
    let errs = run_transcript(&transcript(), &mut server, false);
    assert!(
        errs.is_empty(),
        "session_lifecycle through docker exec differs from the golden answers:\n{}\nstderr:\n{}",
        errs.join("\n"),
        server.stderr()
    );
    println!(
        "session_lifecycle.jsonl: ok through docker exec in {:.1} s",
        t1.elapsed().as_secs_f64()
    );
    drop(server);

    // 3b. The official MCP Python SDK client through the same `docker exec -i`
    // (initialize, tools/list, publish then collect, isError, clean exit).
    let exec_line = engine.shell_line(&["exec", "-i", name.as_str(), "mqtt-mcp"]);
    python_sdk_through(
        &format!("{exec_line} \"$@\""),
        "through docker exec",
        String::new,
    );

    // 4. The same through ssh, as an MCP client on another machine would.
    if let Some(sshd) = Sshd::start(TEST) {
        let probe = run(&mut sshd.command("echo ssh-ok"), Duration::from_secs(30)).unwrap();
        if probe.success() {
            let over_ssh = |args: &[&str]| {
                let mut full = vec!["exec", "-i", name.as_str()];
                full.extend_from_slice(args);
                sshd.command(&engine.shell_line(&full))
            };
            let t2 = Instant::now();
            let mut server = serve_in_container(&over_ssh);
            let errs = run_transcript(&transcript(), &mut server, false);
            assert!(
                errs.is_empty(),
                "session_lifecycle over ssh + docker exec differs:\n{}\nstderr:\n{}\nsshd log:\n{}",
                errs.join("\n"),
                server.stderr(),
                sshd.log()
            );
            println!(
                "session_lifecycle.jsonl: ok over ssh + docker exec in {:.1} s",
                t2.elapsed().as_secs_f64()
            );
            // The Python SDK client through the line a user puts in Claude Desktop.
            drop(server);
            let line = format!("{} \"{exec_line} $*\"", sshd.shell_prefix());
            python_sdk_through(&line, "over ssh + docker exec", || sshd.log());
        } else {
            // sshd switches users only as root (CI runs as root).
            skip(
                TEST,
                &format!(
                    "ssh login to the test sshd failed: {}\nsshd log:\n{}",
                    probe.describe(),
                    sshd.log()
                ),
            );
        }
    }

    // 5. Two exec sessions at once are two servers with their own sessions.
    let mut a = serve_in_container(&exec);
    let mut b = serve_in_container(&exec);
    a.initialize();
    b.initialize();
    let (a_v5, b_v5) = (a.v5_port, b.v5_port);
    a.call_ok(
        "establish_connection",
        json!({"host": "127.0.0.1", "port": a_v5, "client_id": "only-in-a"}),
    );
    b.call_ok(
        "establish_connection",
        json!({"host": "127.0.0.1", "port": b_v5, "client_id": "only-in-b"}),
    );
    let in_a = client_ids(&a.call_ok("list_active_connections", json!({})));
    let in_b = client_ids(&b.call_ok("list_active_connections", json!({})));
    assert!(
        in_a.contains(&"only-in-a".to_string()) && !in_a.contains(&"only-in-b".to_string()),
        "exec session A sees {in_a:?}"
    );
    assert!(
        in_b.contains(&"only-in-b".to_string()) && !in_b.contains(&"only-in-a".to_string()),
        "exec session B sees {in_b:?}"
    );
    for s in [&mut a, &mut b] {
        let (status, _) = s.finish(Duration::from_secs(10));
        assert!(status.success(), "docker exec ended with {status}");
    }
    println!("two exec sessions at once: isolated ({in_a:?} / {in_b:?})");

    // 6. SIGTERM: `mqtt-mcp idle` exits 0 within a second.
    let t3 = Instant::now();
    let out = engine.docker(&["kill", "--signal", "TERM", &name], 60);
    assert!(out.success(), "docker kill -s TERM: {}", out.describe());
    let stopped = loop {
        let out = engine.docker(
            &[
                "inspect",
                "--format",
                "{{.State.Running}} {{.State.ExitCode}}",
                &name,
            ],
            60,
        );
        let state = out.stdout.trim().to_string();
        if state.starts_with("false") {
            break state;
        }
        assert!(
            t3.elapsed() < Duration::from_secs(10),
            "the container still runs 10 s after SIGTERM: {}",
            out.describe()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let stop_time = t3.elapsed();
    assert_eq!(stopped, "false 0", "exit after SIGTERM");
    assert!(
        stop_time < Duration::from_millis(1000),
        "the container took {stop_time:?} to stop after SIGTERM (docker CLI round trips included)"
    );
    let out = engine.docker(&["rm", &name], 60);
    assert!(out.success(), "docker rm: {}", out.describe());
    engine.containers.clear();
    let out = engine.docker(
        &[
            "ps",
            "-a",
            "--filter",
            &format!("name={name}"),
            "--format",
            "{{.Names}}",
        ],
        60,
    );
    assert!(
        out.success() && out.stdout.trim().is_empty(),
        "left over after rm: {}",
        out.describe()
    );
    println!(
        "stopped {:.0} ms after SIGTERM with exit code 0; whole test {:.1} s (image build {:.1} s)",
        stop_time.as_secs_f64() * 1000.0,
        started.elapsed().as_secs_f64(),
        build_time.as_secs_f64()
    );
}
