//! The runtime shared by every request: session manager, the secret vault,
//! configuration, and the `default` session that is opened at start (to the
//! configured broker or the embedded one) in the background, so the
//! `initialize` answer never waits for a broker.

use crate::audit::Audit;
use crate::broker::{self, BrokerConfig, EmbeddedBroker};
use crate::config::ServerConfig;
use crate::mqtt::client::{ConnectError, ConnectSpec, Connection, Protocol};
use crate::mqtt::url::BrokerUrl;
use crate::profiles::Profiles;
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
    /// A profile of the config file.
    Profile(String),
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
    /// Profiles and policies from the config file.
    pub profiles: Profiles,
    /// The audit log.
    pub audit: Audit,
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
        Ok(Self::build(
            config,
            Arc::new(Vault::new()?),
            Profiles::default(),
            Audit::off(),
        ))
    }

    /// A runtime with profiles from a config file (sealed by `vault`) and an audit log.
    pub fn build(
        config: ServerConfig,
        vault: Arc<Vault>,
        profiles: Profiles,
        audit: Audit,
    ) -> Arc<Self> {
        let sessions = Arc::new(SessionManager::new(config.sessions.clone()));
        let (default_state, _) = watch::channel(DefaultState::Absent);
        let app = Arc::new(Self {
            sessions,
            vault,
            config,
            profiles,
            audit,
            default_state,
            embedded: Default::default(),
            stop: CancellationToken::new(),
        });
        tokio::spawn(app.sessions.clone().run_reaper(app.stop.child_token()));
        app
    }

    /// Opens a session from a named profile.
    pub async fn open_profile(
        &self,
        name: &str,
        is_default: bool,
        timeout: Option<Duration>,
    ) -> Result<(Arc<Session>, crate::mqtt::client::Connected), OpenError> {
        let p = self.profiles.by_name.get(name).ok_or_else(|| {
            OpenError::UnknownProfile(
                name.to_string(),
                if self.profiles.by_name.is_empty() {
                    "none (no config file)".into()
                } else {
                    self.profiles
                        .by_name
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            )
        })?;
        let mut url = p.url.clone();
        url.password = match &p.password {
            Some(sealed) => Some(self.vault.open(sealed).map_err(OpenError::Secret)?),
            None => None,
        };
        let opts = SpecOptions {
            protocol: p.protocol,
            keep_alive: p.keep_alive.map(Duration::from_secs),
            tls: p.tls.clone(),
            profile: Some(p.name.clone()),
            policy: Some(p.policy.clone()),
            decoders: Some(p.decoders.clone()),
            connect_timeout: timeout,
            ..Default::default()
        };
        self.open(&url, opts, is_default).await
    }

    /// Tools that write to a broker; not offered when no session could write.
    pub const WRITE_TOOLS: [&'static str; 3] =
        ["publish_message", "clear_retained", "request_response"];

    /// Whether `tools/list` offers a tool under the configured policies.
    pub fn tool_listed(&self, name: &str) -> bool {
        !Self::WRITE_TOOLS.contains(&name) || self.profiles.writes_possible()
    }

    /// The embedded rumqttd cannot forward a message with MQTT 5 properties to
    /// a 3.1.1 subscriber: its 3.1.1 listener thread panics and every 3.1.1
    /// client is lost. Before such a publish, name a 3.1.1 session of ours that
    /// would receive it. (3.1.1 clients of other programs cannot be seen.)
    pub fn v5_properties_hazard(&self, topic: &str) -> Option<String> {
        self.sessions
            .list()
            .into_iter()
            .find(|s| {
                s.link.is_embedded()
                    && s.link.protocol() == Protocol::V311
                    && s.link.subscribed_to(topic)
            })
            .map(|s| s.id.clone())
    }

    /// The embedded broker's addresses, if it runs.
    pub fn embedded(&self) -> Option<EmbeddedBroker> {
        self.embedded.get().copied()
    }

    /// Tells this runtime about an embedded broker started elsewhere (the HTTP
    /// transport starts one per process and shares it between its sessions),
    /// so sessions to it get the same care as with `DefaultBroker::Embedded`.
    pub fn share_embedded(&self, broker: EmbeddedBroker) {
        let _ = self.embedded.set(broker);
    }

    /// Opens the default session in the background, retrying while it fails.
    pub fn start_default(self: &Arc<Self>, target: DefaultBroker) {
        if matches!(target, DefaultBroker::None) {
            return;
        }
        self.default_state.send_replace(DefaultState::Pending);
        let app = self.clone();
        let profile = match &target {
            DefaultBroker::Profile(p) => Some(p.clone()),
            _ => None,
        };
        tokio::spawn(async move {
            let url = match target {
                DefaultBroker::None => return,
                DefaultBroker::External(u) => Some(u),
                DefaultBroker::Profile(_) => None,
                DefaultBroker::Embedded(cfg) => {
                    match tokio::task::spawn_blocking(move || broker::start(&cfg)).await {
                        Ok(Ok(b)) => {
                            let _ = app.embedded.set(b);
                            Some(BrokerUrl::plain(b.v5))
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
                let opened = match (&url, &profile) {
                    (Some(url), _) => app.open(url, SpecOptions::default(), true).await,
                    (None, Some(p)) => app.open_profile(p, true, None).await,
                    (None, None) => return,
                };
                match opened {
                    Ok(_) => {
                        app.default_state.send_replace(DefaultState::Ready);
                        return;
                    }
                    Err(e) => {
                        let target = url
                            .as_ref()
                            .map(|u| u.redacted())
                            .or_else(|| profile.as_ref().map(|p| format!("profile {p:?}")))
                            .unwrap_or_default();
                        tracing::warn!("default session to {target} failed: {e}");
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
        let loopback = url.host == "127.0.0.1" || url.host == "localhost" || url.host == "::1";
        let to_embedded = self
            .embedded()
            .is_some_and(|e| loopback && (url.port == e.v4.port() || url.port == e.v5.port()));
        // To the embedded broker, ids are reused after their session ends
        // (see `ClientIdLease`: rumqttd never forgets a client id). Only
        // for clean sessions: rumqttd would hand a kept session's state to
        // the next holder of the id.
        let clean = opts.clean_start.unwrap_or(true);
        let lease =
            (to_embedded && clean && url.client_id.is_none()).then(broker::ClientIdLease::take);
        let client_id = match (&url.client_id, &lease) {
            (Some(c), _) => c.clone(),
            (None, Some(l)) => l.id().to_string(),
            (None, None) => format!(
                "mqtt-mcp-{}",
                crate::secret::random_hex(6).unwrap_or_else(|_| "0".into())
            ),
        };
        let spec = ConnectSpec {
            host: url.host.clone(),
            port: url.port,
            tls: match opts.tls.clone() {
                Some(t) => Some(t),
                None if url.tls => Some(Default::default()),
                None => None,
            },
            username: url.username.clone(),
            password,
            client_id: client_id.clone(),
            protocol: opts.protocol.unwrap_or(Protocol::V5),
            allow_fallback: opts.protocol.is_none(),
            keep_alive: opts.keep_alive.unwrap_or(Duration::from_secs(30)),
            clean_start: opts.clean_start.unwrap_or(true),
            // A pooled id may have been used before: not fresh.
            fresh_client_id: url.client_id.is_none() && lease.is_none(),
            session_expiry: (!to_embedded).then_some(crate::mqtt::client::SESSION_EXPIRY_SECS),
            connect_timeout: opts.connect_timeout.unwrap_or(self.config.connect_timeout),
        };
        let (conn, info) = Connection::connect(spec, self.vault.clone())
            .await
            .map_err(OpenError::Connect)?;
        // rumqttd drops clients that subscribe to `$` filters: never try on it.
        if to_embedded {
            conn.mark_embedded();
        }
        let s = self
            .sessions
            .insert(
                slot,
                conn,
                crate::session::SessionMeta {
                    broker_url: url.redacted(),
                    client_id,
                    client_id_lease: lease.map(Arc::new),
                    is_default,
                    profile: opts.profile.clone(),
                    policy: opts
                        .policy
                        .clone()
                        .unwrap_or_else(|| self.profiles.adhoc_policy.clone()),
                    decoders: opts
                        .decoders
                        .clone()
                        .unwrap_or_else(|| self.profiles.adhoc_decoders.clone()),
                },
            )
            .map_err(OpenError::Session)?;
        // Shut down while connecting (an HTTP session ended right after it
        // began): `shutdown` has already closed every session it saw, so
        // this one is closed here, before its pooled client id could be
        // handed to a newer session while this connection still uses it.
        if self.stop.is_cancelled() {
            let _ = self.sessions.close(&s.id).await;
            return Err(OpenError::Session(SessionError::ShuttingDown));
        }
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
    /// TLS settings beyond the URL's scheme.
    pub tls: Option<crate::mqtt::tls::TlsSettings>,
    /// The profile the session comes from.
    pub profile: Option<String>,
    /// Its policy (ad-hoc policy when None).
    pub policy: Option<Arc<crate::policy::Policy>>,
    /// Its decoders (the global ones when None).
    pub decoders: Option<Arc<crate::decoders::Decoders>>,
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
    /// No such profile.
    #[error("no profile {0:?}; the profiles are: {1} (list_profiles shows them)")]
    UnknownProfile(String, String),
}
