//! The runtime shared by every request: session manager, the secret vault,
//! configuration, and the `default` session that is opened at start (to the
//! configured broker or the embedded one) in the background, so the
//! `initialize` answer never waits for a broker.

use crate::broker::{self, BrokerConfig, EmbeddedBroker};
use crate::config::ServerConfig;
use crate::mqtt::client::{ConnectError, ConnectSpec, Connection, Protocol};
use crate::mqtt::url::BrokerUrl;
use crate::secret::Vault;
use crate::session::{Session, SessionError, SessionManager};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Where the `default` session goes.
#[derive(Debug, Clone)]
pub enum DefaultBroker {
    /// No default session.
    None,
    /// An external broker from `--broker` / `MQTT_MCP_BROKER`.
    External(BrokerUrl),
    /// The embedded rumqttd.
    Embedded(BrokerConfig),
}

/// Progress of the default session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultState {
    /// None configured.
    Absent,
    /// Being connected.
    Pending,
    /// Open.
    Ready,
    /// Connecting failed; still retrying in the background.
    Failed(String),
}

/// Shared state of one server process.
pub struct App {
    /// Open sessions.
    pub sessions: Arc<SessionManager>,
    /// Seals passwords.
    pub vault: Arc<Vault>,
    /// Settings.
    pub config: ServerConfig,
    /// Default-session progress, for tools that wait for it.
    default_state: watch::Sender<DefaultState>,
    /// Where the embedded broker listens, once started.
    embedded: std::sync::OnceLock<EmbeddedBroker>,
    /// Stops background tasks (reaper, default reconnect).
    pub stop: CancellationToken,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl App {
    /// A runtime with no sessions yet; starts the idle reaper.
    pub fn new(config: ServerConfig) -> Result<Arc<Self>, crate::secret::SecretError> {
        let vault = Arc::new(Vault::new()?);
        let sessions = Arc::new(SessionManager::new(config.sessions.clone()));
        let (default_state, _) = watch::channel(DefaultState::Absent);
        let app = Arc::new(Self {
            sessions,
            vault,
            config,
            default_state,
            embedded: Default::default(),
            stop: CancellationToken::new(),
        });
        tokio::spawn(app.sessions.clone().run_reaper(app.stop.child_token()));
        Ok(app)
    }

    /// The embedded broker's addresses, if it runs.
    pub fn embedded(&self) -> Option<EmbeddedBroker> {
        self.embedded.get().copied()
    }

    /// Opens the default session in the background, retrying while it fails.
    pub fn start_default(self: &Arc<Self>, target: DefaultBroker) {
        if matches!(target, DefaultBroker::None) {
            return;
        }
        self.default_state.send_replace(DefaultState::Pending);
        let app = self.clone();
        tokio::spawn(async move {
            let url = match target {
                DefaultBroker::None => return,
                DefaultBroker::External(u) => u,
                DefaultBroker::Embedded(cfg) => {
                    match tokio::task::spawn_blocking(move || broker::start(&cfg)).await {
                        Ok(Ok(b)) => {
                            let _ = app.embedded.set(b);
                            BrokerUrl {
                                tls: false,
                                host: b.v5.ip().to_string(),
                                port: b.v5.port(),
                                username: None,
                                password: None,
                                client_id: None,
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::error!("{e}");
                            app.default_state
                                .send_replace(DefaultState::Failed(e.to_string()));
                            return;
                        }
                        Err(e) => {
                            app.default_state
                                .send_replace(DefaultState::Failed(e.to_string()));
                            return;
                        }
                    }
                }
            };
            let mut attempt = 0u32;
            loop {
                match app.open(&url, SpecOptions::default(), true).await {
                    Ok(_) => {
                        app.default_state.send_replace(DefaultState::Ready);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!("default session to {} failed: {e}", url.redacted());
                        app.default_state
                            .send_replace(DefaultState::Failed(e.to_string()));
                    }
                }
                let wait = Duration::from_millis((500u64 << attempt.min(6)).min(30_000));
                attempt += 1;
                tokio::select! {
                    _ = app.stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        });
    }

    /// Connects and registers a session.
    pub async fn open(
        &self,
        url: &BrokerUrl,
        opts: SpecOptions,
        is_default: bool,
    ) -> Result<(Arc<Session>, crate::mqtt::client::Connected), OpenError> {
        let slot = self.sessions.reserve().map_err(OpenError::Session)?;
        let password = match &url.password {
            Some(p) => Some(self.vault.seal(p.expose()).map_err(OpenError::Secret)?),
            None => None,
        };
        let client_id = match &url.client_id {
            Some(c) => c.clone(),
            None => format!(
                "mqtt-mcp-{}",
                crate::secret::random_hex(6).unwrap_or_else(|_| "0".into())
            ),
        };
        let spec = ConnectSpec {
            host: url.host.clone(),
            port: url.port,
            tls: url.tls,
            username: url.username.clone(),
            password,
            client_id: client_id.clone(),
            protocol: opts.protocol.unwrap_or(Protocol::V5),
            allow_fallback: opts.protocol.is_none(),
            keep_alive: opts.keep_alive.unwrap_or(Duration::from_secs(30)),
            clean_start: opts.clean_start.unwrap_or(true),
            connect_timeout: opts.connect_timeout.unwrap_or(self.config.connect_timeout),
        };
        let (conn, info) = Connection::connect(spec, self.vault.clone())
            .await
            .map_err(OpenError::Connect)?;
        // rumqttd drops clients that subscribe to `$` filters: never try on it.
        if let Some(e) = self.embedded() {
            let loopback = url.host == "127.0.0.1" || url.host == "localhost" || url.host == "::1";
            if loopback && (url.port == e.v4.port() || url.port == e.v5.port()) {
                conn.refuse_dollar_filters();
            }
        }
        let s = self
            .sessions
            .insert(slot, conn, url.redacted(), client_id, is_default)
            .map_err(OpenError::Session)?;
        tracing::info!(session = %s.id, "connected to {} with MQTT {}", s.broker_url, info.protocol.as_str());
        Ok((s, info))
    }

    /// The session a tool should use: the named one, or the default one
    /// (waiting for it while it is still being connected).
    pub async fn session(&self, id: Option<&str>) -> Result<Arc<Session>, SessionError> {
        if id.is_none() {
            if let DefaultState::Failed(why) = self.wait_default().await {
                if self.sessions.get(None).is_err() {
                    return Err(SessionError::DefaultUnavailable(why));
                }
            }
        }
        self.sessions.get(id)
    }

    /// Waits (at most the connect timeout) while the default session is being
    /// opened, so the first tool call after start sees it.
    pub async fn wait_default(&self) -> DefaultState {
        let mut rx = self.default_state.subscribe();
        let wait = tokio::time::timeout(
            self.config.connect_timeout,
            rx.wait_for(|s| *s != DefaultState::Pending),
        )
        .await;
        match wait {
            Ok(Ok(state)) => state.clone(),
            _ => self.default_state.borrow().clone(),
        }
    }

    /// Stops background work and disconnects every session.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.sessions.close_all().await;
    }
}

/// Optional connect settings beyond the URL.
#[derive(Debug, Clone, Default)]
pub struct SpecOptions {
    /// Fixed protocol (no fallback) or None for 5-then-3.1.1.
    pub protocol: Option<Protocol>,
    /// Keep-alive.
    pub keep_alive: Option<Duration>,
    /// Clean start.
    pub clean_start: Option<bool>,
    /// CONNACK deadline.
    pub connect_timeout: Option<Duration>,
}

/// Why opening a session failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Cap reached or similar.
    #[error(transparent)]
    Session(SessionError),
    /// The broker could not be reached or refused.
    #[error(transparent)]
    Connect(ConnectError),
    /// The password could not be sealed.
    #[error(transparent)]
    Secret(crate::secret::SecretError),
}
