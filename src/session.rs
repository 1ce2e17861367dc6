//! Broker sessions: ids, the idle TTL and its reaper, the cap on open
//! sessions, and what `list_active_connections` shows. Connections are opened
//! by the caller (a tool) and handed in; the manager owns their lifetime.
//!
//! The manager is generic over the link so TTL and cap logic are unit-tested
//! with a fake link under `tokio::time::pause()`, without sockets.

use crate::mqtt::client::{Connection, LinkState, Protocol};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The name of the session opened at start for the configured or embedded broker.
pub const DEFAULT_SESSION: &str = "default";

/// What the manager needs from a connection.
pub trait Link: Clone + Send + Sync + 'static {
    /// State, reconnect count, last error.
    fn status(&self) -> (LinkState, u64, Option<String>);
    /// Protocol in use.
    fn protocol(&self) -> Protocol;
    /// Disconnects; must finish promptly.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

impl Link for Connection {
    fn status(&self) -> (LinkState, u64, Option<String>) {
        Connection::status(self)
    }
    fn protocol(&self) -> Protocol {
        Connection::protocol(self)
    }
    fn close(&self) -> impl Future<Output = ()> + Send {
        Connection::close(self)
    }
}

/// Session-layer failures; messages tell the model what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Unknown or expired id.
    #[error("no session {0:?}; it may have expired or been closed. Call list_active_connections to see open sessions, or establish_connection to open one")]
    NotFound(String),
    /// No id given and no default session exists.
    #[error("no session_id given and no default session is configured; call establish_connection first and pass its session_id")]
    NoDefault,
    /// The default session could not be opened (yet).
    #[error("the default session is not connected: {0}. Check the broker, or open another session with establish_connection")]
    DefaultUnavailable(String),
    /// The cap is reached.
    #[error("the maximum of {0} open sessions is reached; close one with close_connection first")]
    Full(usize),
    /// The runtime is shutting down: no new session is kept.
    #[error("the server is shutting down; no new broker session is opened")]
    ShuttingDown,
}

/// Tunables of the manager.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Idle time after which a session is closed (not the default session).
    pub ttl: Duration,
    /// Maximum number of open sessions, the default one included.
    pub max_sessions: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
            max_sessions: 10,
        }
    }
}

/// One open session.
pub struct Session<L = Connection> {
    /// Unguessable id (or `default`).
    pub id: String,
    /// Broker URL with the password removed.
    pub broker_url: String,
    /// MQTT client id.
    pub client_id: String,
    /// Holds a reused client id (embedded broker) until the session is gone.
    _client_id_lease: Option<Arc<crate::broker::ClientIdLease>>,
    /// The connection.
    pub link: L,
    /// Opened at (wall clock, for display).
    pub created_at: SystemTime,
    /// The default session never expires.
    pub is_default: bool,
    /// The profile it was opened from, if any.
    pub profile: Option<String>,
    /// What it may do.
    pub policy: Arc<crate::policy::Policy>,
    /// Its publish rate window.
    pub rate: crate::policy::RateLimiter,
    /// Background subscriptions (stopped when the session goes).
    pub subscriptions: crate::subscriptions::Registry,
    /// Payload decoders its profile and the config file map to topics.
    pub decoders: Arc<crate::decoders::Decoders>,
    /// Sparkplug births this session has shown, which name the metric
    /// aliases of later messages.
    pub births: crate::sparkplug::births::Births,
    /// Last use on the monotonic clock (TTL) and on the wall clock (display).
    last_used: Mutex<(Instant, SystemTime)>,
}

impl<L> std::fmt::Debug for Session<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("broker_url", &self.broker_url)
            .field("client_id", &self.client_id)
            .finish()
    }
}

impl<L> Session<L> {
    fn touch(&self) {
        *crate::sync::lock(&self.last_used) = (Instant::now(), SystemTime::now());
    }

    /// Last use, monotonic and wall clock.
    pub fn last_used(&self) -> (Instant, SystemTime) {
        *crate::sync::lock(&self.last_used)
    }
}

/// What the manager records about a new session besides its link.
#[derive(Debug, Clone)]
pub struct SessionMeta {
    /// Broker URL with the password removed.
    pub broker_url: String,
    /// MQTT client id.
    pub client_id: String,
    /// The lease of `client_id` when it comes from the embedded broker's
    /// pool: the id is reused only after the session is gone.
    pub client_id_lease: Option<Arc<crate::broker::ClientIdLease>>,
    /// The `default` session (never expires).
    pub is_default: bool,
    /// Profile name, if opened from one.
    pub profile: Option<String>,
    /// Its policy.
    pub policy: Arc<crate::policy::Policy>,
    /// Its payload decoders.
    pub decoders: Arc<crate::decoders::Decoders>,
}

/// A reserved slot under the cap; released on drop unless consumed by `insert`.
pub struct Slot {
    /// The counter the slot holds a unit of.
    reserved: Arc<AtomicUsize>,
    /// False once the slot became a session.
    armed: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.armed {
            self.reserved.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The registry of sessions.
pub struct SessionManager<L: Link = Connection> {
    /// Open sessions by id.
    sessions: Mutex<HashMap<String, Arc<Session<L>>>>,
    /// Sessions being connected right now (count against the cap).
    reserved: Arc<AtomicUsize>,
    /// TTL and cap.
    config: SessionConfig,
}

impl<L: Link> SessionManager<L> {
    /// An empty manager.
    pub fn new(config: SessionConfig) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            reserved: Arc::new(AtomicUsize::new(0)),
            config,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session<L>>>> {
        crate::sync::lock(&self.sessions)
    }

    /// Reserves room for one more session, or says the cap is reached.
    pub fn reserve(&self) -> Result<Slot, SessionError> {
        let map = self.lock();
        let used = map.len() + self.reserved.load(Ordering::SeqCst);
        if used >= self.config.max_sessions {
            return Err(SessionError::Full(self.config.max_sessions));
        }
        self.reserved.fetch_add(1, Ordering::SeqCst);
        Ok(Slot {
            reserved: self.reserved.clone(),
            armed: true,
        })
    }

    /// Registers a connected link under a fresh id (or `default`).
    pub fn insert(
        &self,
        mut slot: Slot,
        link: L,
        meta: SessionMeta,
    ) -> Result<Arc<Session<L>>, SessionError> {
        let SessionMeta {
            broker_url,
            client_id,
            client_id_lease,
            is_default,
            profile,
            policy,
            decoders,
        } = meta;
        let id = if is_default {
            DEFAULT_SESSION.to_string()
        } else {
            new_session_id()
        };
        let now = (Instant::now(), SystemTime::now());
        let s = Arc::new(Session {
            id: id.clone(),
            broker_url,
            client_id,
            _client_id_lease: client_id_lease,
            link,
            created_at: now.1,
            is_default,
            profile,
            policy,
            rate: Default::default(),
            subscriptions: Default::default(),
            decoders,
            births: Default::default(),
            last_used: Mutex::new(now),
        });
        let mut map = self.lock();
        slot.armed = false;
        self.reserved.fetch_sub(1, Ordering::SeqCst);
        map.insert(id, s.clone());
        Ok(s)
    }

    /// Looks up a session (None means the default one) and marks it used.
    pub fn get(&self, id: Option<&str>) -> Result<Arc<Session<L>>, SessionError> {
        let map = self.lock();
        let s = match id {
            Some(id) => map
                .get(id)
                .ok_or_else(|| SessionError::NotFound(id.to_string()))?,
            None => map.get(DEFAULT_SESSION).ok_or(SessionError::NoDefault)?,
        };
        s.touch();
        Ok(s.clone())
    }

    /// Removes and disconnects a session.
    pub async fn close(&self, id: &str) -> Result<Arc<Session<L>>, SessionError> {
        let s = self
            .lock()
            .remove(id)
            .ok_or_else(|| SessionError::NotFound(id.to_string()))?;
        s.link.close().await;
        Ok(s)
    }

    /// All sessions, sorted with the default first, then by creation.
    pub fn list(&self) -> Vec<Arc<Session<L>>> {
        let mut v: Vec<_> = self.lock().values().cloned().collect();
        v.sort_by(|a, b| {
            b.is_default
                .cmp(&a.is_default)
                .then(a.created_at.cmp(&b.created_at))
                .then(a.id.cmp(&b.id))
        });
        v
    }

    /// Seconds until `s` expires; None for the default session.
    pub fn expires_in(&self, s: &Session<L>) -> Option<u64> {
        if s.is_default {
            return None;
        }
        let idle = Instant::now().saturating_duration_since(s.last_used().0);
        Some(self.config.ttl.saturating_sub(idle).as_secs())
    }

    /// Closes every session idle for at least the TTL; returns their ids.
    pub async fn expire_idle(&self) -> Vec<String> {
        let now = Instant::now();
        let expired: Vec<Arc<Session<L>>> = {
            let mut map = self.lock();
            let ids: Vec<String> = map
                .values()
                .filter(|s| {
                    !s.is_default
                        && now.saturating_duration_since(s.last_used().0) >= self.config.ttl
                })
                .map(|s| s.id.clone())
                .collect();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        let mut out = Vec::new();
        for s in expired {
            tracing::info!(session = %s.id, "session idle for {:?}; closing", self.config.ttl);
            s.link.close().await;
            out.push(s.id.clone());
        }
        out
    }

    /// Runs the reaper until `stop`: checks often enough that a session lives
    /// at most a tenth of the TTL (capped at 30 s) beyond it.
    pub async fn run_reaper(self: Arc<Self>, stop: CancellationToken) {
        let period =
            (self.config.ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(30));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => { self.expire_idle().await; }
            }
        }
    }

    /// Disconnects everything (shutdown), all sessions at once.
    pub async fn close_all(&self) {
        let all: Vec<_> = self.lock().drain().map(|(_, s)| s).collect();
        let mut set = tokio::task::JoinSet::new();
        for s in all {
            set.spawn(async move { s.link.close().await });
        }
        while set.join_next().await.is_some() {}
    }
}

/// A session id: `s_` plus 128 random bits in hex.
pub fn new_session_id() -> String {
    match crate::secret::random_hex(16) {
        Ok(h) => format!("s_{h}"),
        Err(_) => {
            // No OS randomness: fall back to time and address entropy mixed; still unique per process.
            let t = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("s_{t:032x}")
        }
    }
}

/// Formats a wall-clock time as RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[derive(Clone, Default)]
    struct FakeLink(Arc<AtomicBool>);

    impl Link for FakeLink {
        fn status(&self) -> (LinkState, u64, Option<String>) {
            (
                if self.0.load(Ordering::SeqCst) {
                    LinkState::Closed
                } else {
                    LinkState::Connected
                },
                0,
                None,
            )
        }
        fn protocol(&self) -> Protocol {
            Protocol::V5
        }
        fn close(&self) -> impl Future<Output = ()> + Send {
            self.0.store(true, Ordering::SeqCst);
            async {}
        }
    }

    fn mgr(ttl_s: u64, max: usize) -> SessionManager<FakeLink> {
        SessionManager::new(SessionConfig {
            ttl: Duration::from_secs(ttl_s),
            max_sessions: max,
        })
    }

    fn open(
        m: &SessionManager<FakeLink>,
        default: bool,
    ) -> Result<(Arc<Session<FakeLink>>, FakeLink), SessionError> {
        let slot = m.reserve()?;
        let link = FakeLink::default();
        let meta = SessionMeta {
            broker_url: "mqtt://h:1883".into(),
            client_id: "c".into(),
            client_id_lease: None,
            is_default: default,
            profile: None,
            policy: Arc::new(crate::policy::Policy::permissive("test")),
            decoders: Default::default(),
        };
        let s = m.insert(slot, link.clone(), meta)?;
        Ok((s, link))
    }

    #[tokio::test(start_paused = true)]
    async fn idle_sessions_expire_and_are_disconnected() {
        let m = mgr(60, 10);
        let (a, link_a) = open(&m, false).unwrap();
        let (b, _) = open(&m, false).unwrap();
        let (_, link_d) = open(&m, true).unwrap();
        tokio::time::advance(Duration::from_secs(40)).await;
        m.get(Some(&b.id)).unwrap();
        assert_eq!(m.expires_in(&a), Some(20));
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(m.expire_idle().await, vec![a.id.clone()]);
        assert!(
            link_a.0.load(Ordering::SeqCst),
            "expired session was disconnected"
        );
        assert!(matches!(m.get(Some(&a.id)), Err(SessionError::NotFound(_))));
        assert!(m.get(Some(&b.id)).is_ok());
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(m.expire_idle().await, vec![b.id.clone()]);
        assert!(m.get(None).is_ok(), "default session never expires");
        assert!(!link_d.0.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn reaper_runs_in_background() {
        let m = Arc::new(mgr(10, 10));
        let (a, link) = open(&m, false).unwrap();
        let stop = CancellationToken::new();
        let h = tokio::spawn(m.clone().run_reaper(stop.clone()));
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(m.get(Some(&a.id)).is_ok(), "use resets the idle clock");
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(!link.0.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            link.0.load(Ordering::SeqCst),
            "reaped within a tenth of the TTL after expiry"
        );
        stop.cancel();
        h.await.unwrap();
    }

    #[tokio::test]
    async fn cap_counts_reservations_and_sessions() {
        let m = mgr(60, 2);
        let (a, _) = open(&m, false).unwrap();
        let slot = m.reserve().unwrap();
        assert_eq!(m.reserve().err(), Some(SessionError::Full(2)));
        drop(slot);
        let (_b, _) = open(&m, false).unwrap();
        assert!(matches!(open(&m, false), Err(SessionError::Full(2))));
        m.close(&a.id).await.unwrap();
        assert!(open(&m, false).is_ok());
    }

    #[tokio::test]
    async fn ids_are_unguessable_and_unique() {
        let m = mgr(60, 100);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let (s, _) = open(&m, false).unwrap();
            assert!(s.id.starts_with("s_") && s.id.len() == 34);
            assert!(seen.insert(s.id.clone()));
        }
        assert_eq!(m.get(None).err(), Some(SessionError::NoDefault));
    }

    #[test]
    fn rfc3339_formats() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
