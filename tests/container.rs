//! The production path in a container: `deploy/Containerfile` built by
//! `ci/build-image.sh` for linux/amd64 and linux/arm64 under one manifest
//! list, each image started detached with the real `docker` CLI
//! (`docker run -d -i --read-only --network=host`). The list must name both
//! architectures. Then, on the amd64 image:
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
//! On the arm64 image, under qemu-user (binfmt_misc `qemu-aarch64`), fewer
//! checks, since emulation is slow and the code is the same: 1 and 2, then
//! `tools/list` equal to the amd64 image's and a QoS 1 `publish_message`
//! acknowledged by the embedded broker.
//!
//! Engine: when `podman` is installed the test runs its own Docker-compatible
//! API service (`podman system service` on a socket in a temporary folder,
//! with a `containers.conf` there: no ulimits, cgroupfs, runc) and points
//! `DOCKER_HOST` at it; otherwise a docker daemon that answers `docker info`.
//! Without either (or without the `docker` CLI) the test is skipped with a
//! notice, unless `CI` is set: then it fails and says what to install. The
//! same for the arm64 toolchain (Debian's `rustc-web`, `libstd-rust-web-dev:arm64`,
//! `gcc-aarch64-linux-gnu`): without it only amd64 is built and tested. With
//! it, an arm64 image that cannot run (no `qemu-aarch64` in binfmt_misc) is
//! a failure. Containers, images, the list and the API service are removed by
//! name at the end.

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
    /// Containers, images and the manifest list to remove on drop.
    containers: Vec<String>,
    images: Vec<String>,
    manifest: Option<String>,
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
            images: Vec::new(),
            manifest: None,
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
            let _ = self.docker(&["rm", "-f", &name], 60);
        }
        if let Some(list) = self.manifest.take() {
            // podman's own command: its Docker API has no call for manifest lists.
            match (&self.docker_host, which("podman")) {
                (Some(_), Some(podman)) => {
                    let _ = run(
                        Command::new(podman).args(["manifest", "rm", &list]),
                        Duration::from_secs(60),
                    );
                }
                _ => self.images.push(list),
            }
        }
        for image in std::mem::take(&mut self.images) {
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

/// Whether the Debian packages of the arm64 build are installed (what
/// ci/build-image.sh checks before it builds arm64); the reason when not.
fn arm64_toolchain() -> Result<(), String> {
    let missing: Vec<&str> = [
        "/usr/bin/cargo",
        "/usr/bin/rustc",
        "/usr/lib/rustlib/aarch64-unknown-linux-gnu/lib",
        "/usr/bin/aarch64-linux-gnu-gcc",
        "/usr/aarch64-linux-gnu/lib/libc.a",
    ]
    .into_iter()
    .filter(|p| !Path::new(p).exists())
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "no arm64 toolchain ({} missing; bash ci/install-deps.sh installs rustc-web \
             cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
             qemu-user-static binfmt-support)",
            missing.join(", ")
        ))
    }
}

/// An arm64 image runs here only through qemu-user registered in binfmt_misc
/// (with the F flag, so the interpreter also works inside a container).
fn require_qemu_aarch64() {
    let entry = Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64");
    let state = std::fs::read_to_string(entry);
    let enabled = state
        .as_ref()
        .is_ok_and(|s| s.lines().next() == Some("enabled"));
    assert!(
        enabled,
        "the arm64 toolchain is installed, but an arm64 image cannot run here: {} is {}. As root: \
         `bash ci/install-deps.sh` mounts binfmt_misc and runs `update-binfmts --enable \
         qemu-aarch64` (package qemu-user-static); a container without privileges cannot \
         do this, so run the test on the host or a VM",
        entry.display(),
        match &state {
            Ok(s) => format!("{:?}", s.lines().next().unwrap_or("")),
            Err(e) => format!("unreadable ({e})"),
        }
    );
}

/// `ci/build-image.sh --arch ARCH TAG`, as a user runs it; registers what it
/// made for removal. Returns the build time.
fn build_images(engine: &mut Engine, tag: &str, arch: &str) -> Duration {
    let t0 = Instant::now();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/build-image.sh");
    let mut build = Command::new("bash");
    build
        .arg(&script)
        .args(["--arch", arch, tag])
        .env_remove("DOCKER_HOST")
        .env(
            "CONTAINER_ENGINE",
            if engine.docker_host.is_some() {
                "podman"
            } else {
                "docker"
            },
        );
    // Both release builds from nothing take about 10 minutes on 2 idle cores.
    let out = run(&mut build, Duration::from_secs(3600)).expect("run ci/build-image.sh");
    let arches: Vec<&str> = match arch {
        "all" => vec!["amd64", "arm64"],
        one => vec![one],
    };
    engine
        .images
        .extend(arches.iter().map(|a| format!("{tag}-{a}")));
    engine.manifest = Some(tag.to_string());
    assert!(
        out.success(),
        "ci/build-image.sh failed: {}",
        out.describe()
    );
    assert_eq!(
        out.stdout.lines().last(),
        Some(tag),
        "build-image.sh must print the tag last"
    );
    let build_time = t0.elapsed();
    println!(
        "images {tag} built in {:.1} s:\n{}",
        build_time.as_secs_f64(),
        out.stderr
            .lines()
            .filter(|l| l.starts_with("build-image:"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    build_time
}

/// Each image says its architecture, and with podman the manifest list TAG
/// names exactly the images built (`os/architecture` per entry).
fn check_architectures(engine: &Engine, tag: &str, arches: &[&str]) {
    for arch in arches {
        let out = engine.docker(
            &[
                "image",
                "inspect",
                "--format",
                "{{.Os}}/{{.Architecture}}",
                &format!("{tag}-{arch}"),
            ],
            60,
        );
        assert_eq!(
            out.stdout.trim(),
            format!("linux/{arch}"),
            "image {tag}-{arch}: {}",
            out.describe()
        );
    }
    let Some(podman) = engine.docker_host.as_ref().and_then(|_| which("podman")) else {
        println!("docker engine: per-architecture images only (no local manifest list)");
        return;
    };
    let out = run(
        Command::new(podman).args(["manifest", "inspect", tag]),
        Duration::from_secs(60),
    )
    .expect("run podman manifest inspect");
    assert!(out.success(), "podman manifest inspect: {}", out.describe());
    let list: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("podman manifest inspect {tag}: {e}\n{}", out.stdout));
    let mut platforms: Vec<String> = list["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("no manifests in {list}"))
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap_or("?"),
                m["platform"]["architecture"].as_str().unwrap_or("?")
            )
        })
        .collect();
    platforms.sort();
    let expected: Vec<String> = arches.iter().map(|a| format!("linux/{a}")).collect();
    assert_eq!(platforms, expected, "manifest list {tag}: {list}");
    println!("manifest list {tag}: {}", platforms.join(", "));
}

/// `docker run -d -i --read-only --network=host` of IMAGE as NAME, idling (the
/// transcript reaches test ports on the host loopback), and `mqtt-mcp --version` in it.
fn start_idle(engine: &mut Engine, image: &str, name: &str, platform: &str) {
    let _ = engine.docker(&["rm", "-f", name], 60);
    engine.containers.push(name.to_string());
    let out = engine.docker(
        &[
            "run",
            "-d",
            "-i",
            "--platform",
            platform,
            "--name",
            name,
            "--network=host",
            "--read-only",
            image,
        ],
        120,
    );
    assert!(out.success(), "docker run {image}: {}", out.describe());
    let out = engine.docker(&["exec", name, "mqtt-mcp", "--version"], 60);
    assert!(
        out.success() && out.stdout.contains("mqtt-mcp"),
        "docker exec {name} mqtt-mcp --version: {}",
        out.describe()
    );
}

/// The command `docker exec -i NAME ARGS`.
fn exec_in<'a>(engine: &'a Engine, name: &'a str) -> impl Fn(&[&str]) -> Command + 'a {
    move |args: &[&str]| {
        let mut full = vec!["exec", "-i", name];
        full.extend_from_slice(args);
        engine.command(&full)
    }
}

/// The golden transcript through `launch` (docker exec, or ssh + docker exec).
fn transcript_through(launch: &dyn Fn(&[&str]) -> Command, how: &str, log: impl Fn() -> String) {
    let t = Instant::now();
    let mut server = serve_in_container(launch);
    let errs = run_transcript(&transcript(), &mut server, false);
    assert!(
        errs.is_empty(),
        "session_lifecycle {how} differs from the golden answers:\n{}\nstderr:\n{}\n{}",
        errs.join("\n"),
        server.stderr(),
        log()
    );
    println!(
        "session_lifecycle.jsonl: ok {how} in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

/// The ssh + docker exec launcher for container NAME.
fn over_ssh<'a>(
    engine: &'a Engine,
    sshd: &'a Sshd,
    name: &'a str,
) -> impl Fn(&[&str]) -> Command + 'a {
    move |args: &[&str]| {
        let mut full = vec!["exec", "-i", name];
        full.extend_from_slice(args);
        sshd.command(&engine.shell_line(&full))
    }
}

/// Our sshd when a login to it works; None after a skip notice otherwise.
fn ssh_login() -> Option<Sshd> {
    let sshd = Sshd::start(TEST)?;
    let probe = run(&mut sshd.command("echo ssh-ok"), Duration::from_secs(30)).unwrap();
    if probe.success() {
        return Some(sshd);
    }
    // sshd switches users only as root (CI runs as root).
    skip(
        TEST,
        &format!(
            "ssh login to the test sshd failed: {}\nsshd log:\n{}",
            probe.describe(),
            sshd.log()
        ),
    );
    None
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

    // 1. The images and their list, built as a user would build them.
    let arm64 = match arm64_toolchain() {
        Ok(()) => {
            require_qemu_aarch64();
            true
        }
        Err(why) => {
            skip(TEST, &format!("{why}: amd64 only"));
            false
        }
    };
    let arches: &[&str] = if arm64 {
        &["amd64", "arm64"]
    } else {
        &["amd64"]
    };
    let build_time = build_images(&mut engine, &tag, if arm64 { "all" } else { "amd64" });
    check_architectures(&engine, &tag, arches);
    let sshd = ssh_login();

    // 2. The container, idling, read-only, on the host network.
    let t_amd64 = Instant::now();
    start_idle(&mut engine, &format!("{tag}-amd64"), &name, "linux/amd64");
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
    let exec = exec_in(&engine, &name);
    transcript_through(&exec, "through docker exec", String::new);

    // 3b. The official MCP Python SDK client through the same `docker exec -i`
    // (initialize, tools/list, publish then collect, isError, clean exit).
    let exec_line = engine.shell_line(&["exec", "-i", name.as_str(), "mqtt-mcp"]);
    python_sdk_through(
        &format!("{exec_line} \"$@\""),
        "through docker exec",
        String::new,
    );

    // 4. The same through ssh, as an MCP client on another machine would.
    if let Some(sshd) = &sshd {
        transcript_through(
            &over_ssh(&engine, sshd, &name),
            "over ssh + docker exec",
            || format!("sshd log:\n{}", sshd.log()),
        );
        // The Python SDK client through the line a user puts in Claude Desktop.
        let line = format!("{} \"{exec_line} $*\"", sshd.shell_prefix());
        python_sdk_through(&line, "over ssh + docker exec", || sshd.log());
    }

    // 5. Two exec sessions at once are two servers with their own sessions.
    let mut a = serve_in_container(&exec);
    let mut b = serve_in_container(&exec);
    a.initialize();
    b.initialize();
    let tools_amd64 = a.request("tools/list", json!({}));
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
    drop(exec);

    // 6. SIGTERM: `mqtt-mcp idle` exits 0 within a second.
    let stop_time = stop_with_sigterm(&mut engine, &name);
    println!(
        "amd64: stopped {:.0} ms after SIGTERM with exit code 0; its checks took {:.1} s",
        stop_time.as_secs_f64() * 1000.0,
        t_amd64.elapsed().as_secs_f64(),
    );

    // 7. The arm64 image under emulation.
    if arm64 {
        let t_arm64 = Instant::now();
        arm64_under_emulation(
            &mut engine,
            &format!("{tag}-arm64"),
            &format!("{name}-arm64"),
            sshd.as_ref(),
            &tools_amd64,
        );
        println!(
            "arm64 under qemu: checks took {:.1} s",
            t_arm64.elapsed().as_secs_f64()
        );
    }
    println!(
        "whole test {:.1} s (image builds {:.1} s)",
        started.elapsed().as_secs_f64(),
        build_time.as_secs_f64()
    );
}

/// SIGTERM to container NAME: it must exit 0 within a second, and `docker rm`
/// must leave nothing of it. Returns how long it took to stop.
fn stop_with_sigterm(engine: &mut Engine, name: &str) -> Duration {
    let t3 = Instant::now();
    let out = engine.docker(&["kill", "--signal", "TERM", name], 60);
    assert!(out.success(), "docker kill -s TERM: {}", out.describe());
    let stopped = loop {
        let out = engine.docker(
            &[
                "inspect",
                "--format",
                "{{.State.Running}} {{.State.ExitCode}}",
                name,
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
    let out = engine.docker(&["rm", name], 60);
    assert!(out.success(), "docker rm: {}", out.describe());
    engine.containers.retain(|c| c != name);
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
    stop_time
}

/// The arm64 image as NAME under qemu-user: the golden transcript through
/// docker exec and ssh + docker exec, `tools/list` equal to the amd64
/// image's, and a QoS 1 publish the embedded broker acknowledges.
fn arm64_under_emulation(
    engine: &mut Engine,
    image: &str,
    name: &str,
    sshd: Option<&Sshd>,
    tools_amd64: &Value,
) {
    start_idle(engine, image, name, "linux/arm64");

    let exec = exec_in(engine, name);
    transcript_through(&exec, "on arm64 through docker exec", String::new);
    if let Some(sshd) = sshd {
        transcript_through(
            &over_ssh(engine, sshd, name),
            "on arm64 over ssh + docker exec",
            || format!("sshd log:\n{}", sshd.log()),
        );
    }

    let mut server = serve_in_container(&exec);
    server.initialize();
    let tools = server.request("tools/list", json!({}));
    assert_eq!(
        tools["result"], tools_amd64["result"],
        "tools/list of the arm64 image differs from the amd64 image's"
    );
    let r = server.call_ok(
        "publish_message",
        json!({"topic": "arm64/qos1", "payload": {"arch": "arm64"}, "qos": 1}),
    );
    assert_eq!(
        (&r["status"], &r["qos"]),
        (&json!("acknowledged"), &json!(1)),
        "QoS 1 publish on arm64: {r}"
    );
    let (status, _) = server.finish(Duration::from_secs(30));
    assert!(status.success(), "docker exec on arm64 ended with {status}");
    println!(
        "arm64: tools/list equal to amd64 ({} tools), QoS 1 publish acknowledged",
        tools["result"]["tools"].as_array().map_or(0, Vec::len)
    );
    drop(exec);
    let out = engine.docker(&["rm", "-f", name], 60);
    assert!(out.success(), "docker rm -f {name}: {}", out.describe());
    engine.containers.retain(|c| c != name);
}
