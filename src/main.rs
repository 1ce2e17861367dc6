//! The `mqtt-mcp` binary: parses flags, sets up logging to stderr, and wires
//! the MCP server to stdin/stdout (`serve`, the default) or to Streamable
//! HTTP (`serve --http ADDR`), or runs the embedded broker alone (`broker`),
//! or one tool call from a shell (`call`, in `cli.rs`).

mod cli;
mod options;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use mqtt_mcp::app::{App, DefaultBroker};
use mqtt_mcp::broker::BrokerConfig;
use mqtt_mcp::config::ServerConfig;
use mqtt_mcp::mqtt::url::BrokerUrl;
use mqtt_mcp::secret::SecretString;
use options::{Prepared, RuntimeArgs};
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "mqtt-mcp",
    version,
    about = "MCP server for MQTT brokers (stdio, or Streamable HTTP with --http). Without a subcommand it serves."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve MCP over stdin/stdout (the default), or over HTTP with --http.
    Serve(Box<ServeArgs>),
    /// Run the embedded MQTT broker alone, for other clients.
    Broker(BrokerArgs),
    /// Do nothing until SIGTERM or SIGINT: keeps a container up for `docker exec -i ... serve`.
    Idle,
    /// Exit 0 if the broker answers an MQTT CONNECT with a CONNACK (or, for mqtts://, accepts TCP); for HEALTHCHECK.
    Health(HealthArgs),
    /// List the tools, one line each.
    Tools(cli::ToolsArgs),
    /// Call one tool and print its structured result: `call list_topics filter='home/#'`.
    Call(Box<cli::CallArgs>),
}

#[derive(Args, Debug)]
struct HealthArgs {
    /// Broker to check (mqtt://host[:port] or mqtts://); without it there is nothing to check and the answer is healthy.
    #[arg(long, env = "MQTT_MCP_BROKER", hide_env_values = true)]
    broker: Option<String>,
    /// Deadline for connecting and for the CONNACK, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    timeout_ms: u64,
}

#[derive(Args, Debug, Clone)]
struct ServeArgs {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Longest accepted input line in bytes.
    #[arg(long, env = "MQTT_MCP_MAX_LINE_BYTES", default_value_t = 4 * 1024 * 1024)]
    max_line_bytes: usize,
    /// Log level for stderr (error, warn, info, debug, trace); RUST_LOG takes precedence.
    #[arg(long, env = "MQTT_MCP_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Serve MCP Streamable HTTP at http://ADDR/mcp instead of stdio (e.g. 127.0.0.1:8080; port 0 picks a free one). Each HTTP session gets its own broker sessions.
    #[arg(long, env = "MQTT_MCP_HTTP", value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// Bearer token every HTTP request must carry (Authorization: Bearer TOKEN); required when --http is not a loopback address, checked whenever set. Prefer the environment variable: flags show in process lists.
    #[arg(long, env = "MQTT_MCP_HTTP_TOKEN", hide_env_values = true)]
    http_token: Option<String>,
    /// Open HTTP sessions at most. At the cap, the session idle the longest with no request in progress and no open stream is ended for a new client; only when every session is busy does initialize get 503 with Retry-After.
    #[arg(long, env = "MQTT_MCP_HTTP_MAX_SESSIONS", default_value_t = 64)]
    http_max_sessions: usize,
}

#[derive(Args, Debug)]
struct BrokerArgs {
    /// Port of the MQTT 3.1.1 listener on 127.0.0.1.
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Port of the MQTT 5 listener on 127.0.0.1.
    #[arg(long, default_value_t = 1884)]
    port_v5: u16,
    /// Log level for stderr.
    #[arg(long, env = "MQTT_MCP_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},rumqttd=off,rumqttc=warn")));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(mqtt_mcp::mcp::logging::McpLogLayer::new())
        .try_init();
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let done = match cli.command {
        Some(Command::Broker(b)) => runtime.block_on(run_broker(b)),
        Some(Command::Serve(s)) => runtime.block_on(serve(*s)),
        Some(Command::Idle) => {
            runtime.block_on(shutdown_signal());
            Ok(())
        }
        Some(Command::Health(h)) => runtime.block_on(health(h)),
        Some(Command::Tools(t)) => runtime.block_on(cli::tools(t)),
        Some(Command::Call(c)) => return Ok(runtime.block_on(cli::call(*c))),
        None => runtime.block_on(serve(cli.serve)),
    };
    done.map(|()| ExitCode::SUCCESS)
}

async fn run_broker(b: BrokerArgs) -> anyhow::Result<()> {
    init_logging(&b.log_level);
    let cfg = BrokerConfig {
        v4_port: Some(b.port),
        v5_port: Some(b.port_v5),
        ..Default::default()
    };
    let addrs = tokio::task::spawn_blocking(move || mqtt_mcp::broker::start(&cfg)).await??;
    eprintln!(
        "embedded broker: mqtt://{} (MQTT 3.1.1), mqtt://{} (MQTT 5); Ctrl-C stops it",
        addrs.v4, addrs.v5
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// `mqtt-mcp health`: one MQTT 3.1.1 CONNECT, and a CONNACK of any return
/// code counts as up (the broker answered; credentials are not the question).
async fn health(h: HealthArgs) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Some(url) = h.broker else {
        println!("healthy: no broker configured (MQTT_MCP_BROKER), nothing to check");
        return Ok(());
    };
    let u = BrokerUrl::parse(&url).context("--broker / MQTT_MCP_BROKER")?;
    let deadline = Duration::from_millis(h.timeout_ms.max(1));
    let addr = format!("{}:{}", u.host, u.port);
    let mut stream = tokio::time::timeout(
        deadline,
        tokio::net::TcpStream::connect((u.host.as_str(), u.port)),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!("unhealthy: {addr} did not accept a connection within {deadline:?}")
    })?
    .with_context(|| format!("unhealthy: cannot connect to {addr}"))?;
    if u.tls {
        println!("healthy: {addr} accepts TCP (mqtts://, TLS not checked)");
        return Ok(());
    }
    // CONNECT 3.1.1: clean session, keep-alive 5 s, client id "mqtt-mcp-health".
    use rumqttc::mqttbytes::v4::{Connect, Disconnect, Packet};
    let mut connect = Connect::new("mqtt-mcp-health");
    connect.keep_alive = 5;
    let (mut hello, mut bye) = (bytes::BytesMut::new(), bytes::BytesMut::new());
    connect
        .write(&mut hello)
        .and_then(|_| Disconnect.write(&mut bye))
        .map_err(|e| anyhow::anyhow!("cannot encode CONNECT: {e:?}"))?;
    let mut connack = [0u8; 4];
    tokio::time::timeout(deadline, async {
        stream.write_all(&hello).await?;
        stream.read_exact(&mut connack).await?;
        stream.write_all(&bye).await
    })
    .await
    .map_err(|_| anyhow::anyhow!("unhealthy: no CONNACK from {addr} within {deadline:?}"))?
    .with_context(|| format!("unhealthy: {addr} closed the connection before a CONNACK"))?;
    let Ok(Packet::ConnAck(ack)) = Packet::read(&mut bytes::BytesMut::from(&connack[..]), 4) else {
        anyhow::bail!("unhealthy: {addr} does not speak MQTT (answered {connack:02x?})");
    };
    println!(
        "healthy: {addr} answered CONNACK (return code {})",
        ack.code as u8
    );
    Ok(())
}

async fn serve(s: ServeArgs) -> anyhow::Result<()> {
    init_logging(&s.log_level);
    let Prepared {
        mut config,
        vault,
        profiles,
        audit_dest,
        target,
    } = s.runtime.prepare()?;
    config.max_line_bytes = s.max_line_bytes.max(1024);
    let audit =
        mqtt_mcp::audit::Audit::open(audit_dest.as_deref()).context("opening the audit log")?;
    if let Some(addr) = s.http {
        drop(audit);
        let http = HttpSetup {
            addr,
            token: s.http_token.clone().map(SecretString::new),
            max_sessions: s.http_max_sessions.max(1),
            config,
            vault,
            profiles,
            audit_dest,
            target,
        };
        return serve_http(http).await;
    }
    let app = App::build(config, vault, profiles, audit);
    app.start_default(target);
    let result = mqtt_mcp::transport::stdio::run(
        tokio::io::stdin(),
        tokio::io::stdout(),
        app.clone(),
        shutdown_signal(),
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_millis(800), app.shutdown()).await;
    result.context("serving stdio")?;
    Ok(())
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// What `serve --http` needs to build the runtime of each HTTP session.
struct HttpSetup {
    addr: std::net::SocketAddr,
    token: Option<SecretString>,
    max_sessions: usize,
    config: ServerConfig,
    vault: std::sync::Arc<mqtt_mcp::secret::Vault>,
    profiles: mqtt_mcp::profiles::Profiles,
    audit_dest: Option<String>,
    target: DefaultBroker,
}

/// Streamable HTTP: one embedded broker for the process, one `App` per HTTP
/// session whose `default` session goes to it (or to --broker / the profile).
async fn serve_http(h: HttpSetup) -> anyhow::Result<()> {
    let cfg = mqtt_mcp::transport::http::HttpConfig {
        token: h.token,
        max_sessions: h.max_sessions,
        max_body_bytes: h.config.max_line_bytes,
        idle_ttl: h.config.sessions.ttl,
        request_timeout: h.config.max_call_timeout + Duration::from_secs(10),
        ..Default::default()
    };
    cfg.check_bind(h.addr)?;
    let (target, embedded) = match h.target {
        DefaultBroker::Embedded(bc) => {
            let b = tokio::task::spawn_blocking(move || mqtt_mcp::broker::start(&bc)).await??;
            let url = BrokerUrl::plain(b.v5);
            (DefaultBroker::External(url), Some(b))
        }
        other => (other, None),
    };
    let listener = tokio::net::TcpListener::bind(h.addr)
        .await
        .with_context(|| format!("--http {}: cannot listen", h.addr))?;
    let local = listener.local_addr()?;
    tracing::info!("MCP Streamable HTTP listening on http://{local}/mcp");
    let (config, vault, profiles, audit_dest) = (h.config, h.vault, h.profiles, h.audit_dest);
    let new_app: mqtt_mcp::transport::http::AppFactory = std::sync::Arc::new(move || {
        let audit = mqtt_mcp::audit::Audit::open(audit_dest.as_deref()).unwrap_or_else(|e| {
            tracing::warn!("audit log unavailable for an HTTP session: {e}");
            mqtt_mcp::audit::Audit::off()
        });
        // Log events are process-wide: HTTP sessions must not see each other's.
        let config = mqtt_mcp::config::ServerConfig {
            forward_logs: false,
            ..config.clone()
        };
        let app = App::build(config, vault.clone(), profiles.clone(), audit);
        if let Some(b) = embedded {
            app.share_embedded(b);
        }
        app.start_default(target.clone());
        app
    });
    mqtt_mcp::transport::http::serve(listener, cfg, new_app, shutdown_signal()).await?;
    Ok(())
}
