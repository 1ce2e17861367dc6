//! The options `serve` and `call` share (broker, config file, policies,
//! limits), what a runtime is built from them, and how a boolean option is
//! read from a flag or an `MQTT_MCP_*` variable. One place, so that `call`
//! reaches the broker `serve` would reach, under the same policies.

use anyhow::Context as _;
use clap::builder::TypedValueParser;
use clap::Args;
use mqtt_mcp::app::DefaultBroker;
use mqtt_mcp::broker::BrokerConfig;
use mqtt_mcp::config::{parse_bool, ServerConfig, BOOL_FORMS};
use mqtt_mcp::mqtt::url::BrokerUrl;
use mqtt_mcp::profiles::Profiles;
use mqtt_mcp::secret::{SecretString, Vault};
use std::sync::Arc;
use std::time::Duration;

/// Where the runtime's broker sessions go and what they may do.
#[derive(Args, Debug, Clone)]
pub struct RuntimeArgs {
    /// Broker for the `default` session (mqtt://[user[:password]@]host[:port][/client_id], mqtts:// for TLS). Without it the embedded broker is started. Its variable's value stays out of --help: the URL may hold a password.
    #[arg(long, env = "MQTT_MCP_BROKER", hide_env_values = true)]
    pub broker: Option<String>,
    /// Config file with broker profiles and policies (TOML; see config.example.toml).
    #[arg(long, env = "MQTT_MCP_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Audit log destination: "stderr" (default), "off", or a file path (overrides the config file).
    #[arg(long, env = "MQTT_MCP_AUDIT_LOG")]
    pub audit_log: Option<String>,
    /// Make sessions that do not come from a profile read-only (no publish, clear or request). The variable takes 1/0, true/false, yes/no, on/off.
    #[arg(long, env = "MQTT_MCP_READ_ONLY", value_name = "BOOL", value_parser = EnvBool,
          num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub read_only: bool,
    /// User name for --broker (overrides one in the URL).
    #[arg(long, env = "MQTT_MCP_USERNAME")]
    pub username: Option<String>,
    /// Do not start the embedded broker when no --broker is given (no default session). The variable takes 1/0, true/false, yes/no, on/off.
    #[arg(long, env = "MQTT_MCP_NO_EMBEDDED", value_name = "BOOL", value_parser = EnvBool,
          num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub no_embedded: bool,
    /// Port of the embedded broker's MQTT 3.1.1 listener (default: a free port).
    #[arg(long, env = "MQTT_MCP_EMBEDDED_PORT")]
    pub embedded_port: Option<u16>,
    /// Port of the embedded broker's MQTT 5 listener (default: a free port).
    #[arg(long, env = "MQTT_MCP_EMBEDDED_PORT_V5")]
    pub embedded_port_v5: Option<u16>,
    /// Idle seconds after which a session is closed (the default session never is).
    #[arg(long, env = "MQTT_MCP_SESSION_TTL", default_value_t = 3600)]
    pub session_ttl: u64,
    /// Maximum open broker sessions, the default one included.
    #[arg(long, env = "MQTT_MCP_MAX_SESSIONS", default_value_t = 10)]
    pub max_sessions: usize,
    /// Largest payload publish_message accepts, in bytes.
    #[arg(long, env = "MQTT_MCP_MAX_PUBLISH_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_publish_bytes: usize,
    /// Hard ceiling for any tool call, in seconds.
    #[arg(long, env = "MQTT_MCP_MAX_CALL_TIMEOUT", default_value_t = 330)]
    pub max_call_timeout: u64,
    /// Default deadline for a broker's CONNACK, in milliseconds.
    #[arg(long, env = "MQTT_MCP_CONNECT_TIMEOUT_MS", default_value_t = 10_000)]
    pub connect_timeout_ms: u64,
}

/// What an `App` is built from; the audit log is opened by the caller,
/// since `serve --http` opens one per HTTP session.
pub struct Prepared {
    /// Limits and timeouts.
    pub config: ServerConfig,
    /// Seals the passwords of the profiles and of `--broker`.
    pub vault: Arc<Vault>,
    /// The config file's profiles, with `--read-only` applied.
    pub profiles: Profiles,
    /// `--audit-log`, else the config file's.
    pub audit_dest: Option<String>,
    /// Where the `default` session goes.
    pub target: DefaultBroker,
}

impl RuntimeArgs {
    /// Reads the config file and settles the `default` session's broker;
    /// connects to nothing yet.
    pub fn prepare(&self) -> anyhow::Result<Prepared> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ServerConfig {
            max_publish_bytes: self.max_publish_bytes,
            max_call_timeout: Duration::from_secs(self.max_call_timeout.max(1)),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms.max(100)),
            sessions: mqtt_mcp::session::SessionConfig {
                ttl: Duration::from_secs(self.session_ttl.max(1)),
                max_sessions: self.max_sessions.max(1),
            },
            ..Default::default()
        };
        let vault = Arc::new(Vault::new()?);
        let mut profiles = match &self.config {
            Some(path) => Profiles::load(path, &vault)?,
            None => Default::default(),
        };
        if self.read_only {
            let mut rules = profiles.adhoc_policy.rules.clone();
            rules.read_only = true;
            profiles.adhoc_policy = Arc::new(mqtt_mcp::policy::Policy::new(
                "ad-hoc sessions (--read-only)",
                rules,
            )?);
        }
        let audit_dest = self
            .audit_log
            .clone()
            .or_else(|| profiles.audit_log.clone());
        let target = match &self.broker {
            Some(url) => {
                let mut u = BrokerUrl::parse(url).context("--broker / MQTT_MCP_BROKER")?;
                if let Some(user) = &self.username {
                    u.username = Some(user.clone());
                }
                if let Ok(p) = std::env::var("MQTT_MCP_PASSWORD") {
                    u.password = Some(SecretString::new(p));
                }
                DefaultBroker::External(u)
            }
            None if profiles.default_profile.is_some() => {
                DefaultBroker::Profile(profiles.default_profile.clone().unwrap_or_default())
            }
            None if self.no_embedded => DefaultBroker::None,
            None => DefaultBroker::Embedded(BrokerConfig {
                v4_port: self.embedded_port,
                v5_port: self.embedded_port_v5,
                ..Default::default()
            }),
        };
        Ok(Prepared {
            config,
            vault,
            profiles,
            audit_dest,
            target,
        })
    }
}

/// A boolean option's value, from its flag (`--read-only`, `--read-only=no`)
/// or its variable (`MQTT_MCP_READ_ONLY=1`), in the spellings of
/// [`parse_bool`]; empty is false, as if unset. A refusal names the flag and the variable, because clap
/// does not say which of the two the value came from.
#[derive(Clone, Copy, Debug)]
pub struct EnvBool;

impl TypedValueParser for EnvBool {
    type Value = bool;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<bool, clap::Error> {
        // An empty variable (`MQTT_MCP_READ_ONLY=` in a compose file) is unset.
        if value.is_empty() {
            return Ok(false);
        }
        if let Some(b) = value.to_str().and_then(parse_bool) {
            return Ok(b);
        }
        let flag = arg
            .and_then(|a| a.get_long())
            .map(|l| format!("--{l}"))
            .unwrap_or_else(|| "the option".into());
        let source = match arg.and_then(|a| a.get_env()) {
            Some(var) => format!("{flag} / {}", var.to_string_lossy()),
            None => flag,
        };
        let message = format!(
            "invalid value {:?} for {source}: a boolean is one of {BOOL_FORMS}\n",
            value.to_string_lossy()
        );
        Err(clap::Error::raw(clap::error::ErrorKind::InvalidValue, message).with_cmd(cmd))
    }
}
