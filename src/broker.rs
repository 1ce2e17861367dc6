//! The embedded rumqttd broker: the zero-setup default, and the broker of our
//! tests. It listens on 127.0.0.1 only, with an MQTT 3.1.1 and an MQTT 5
//! listener, and small router segments so its memory stays bounded.
//!
//! rumqttd 0.20 cannot report the port it bound and logs (rather than returns)
//! a failed bind, so we pick free ports ourselves, start it on a thread of its
//! own, and probe until both listeners accept; a lost race for an OS-picked
//! port is retried with fresh ports.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Why the embedded broker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// A requested port is in use or not permitted.
    #[error("the embedded broker cannot listen on 127.0.0.1:{port}: {reason}. Pick another --embedded-port or stop what uses it")]
    Bind {
        /// The port.
        port: u16,
        /// The OS error or what we observed.
        reason: String,
    },
    /// The broker did not accept connections in time.
    #[error("the embedded broker did not become ready within {0:?}")]
    NotReady(Duration),
    /// Thread creation failed.
    #[error("cannot start the embedded broker thread: {0}")]
    Thread(String),
}

/// Where the embedded broker listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedBroker {
    /// MQTT 3.1.1 listener.
    pub v4: SocketAddr,
    /// MQTT 5 listener.
    pub v5: SocketAddr,
}

/// Tunables; the defaults keep the broker near 10 MB.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Port of the 3.1.1 listener; None picks a free one.
    pub v4_port: Option<u16>,
    /// Port of the 5 listener; None picks a free one.
    pub v5_port: Option<u16>,
    /// Largest accepted payload.
    pub max_payload: usize,
    /// Router segment size (per filter log).
    pub segment_size: usize,
    /// Segments kept per filter log.
    pub segment_count: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            v4_port: None,
            v5_port: None,
            // Above the server's default publish limit, so a too-large publish
            // is refused by us with a message, not by a dropped connection.
            max_payload: 16 * 1024 * 1024 + 64 * 1024,
            // rumqttd counts only topic and payload bytes against a segment but
            // stores ~300 bytes per message, and it silently skips segments a
            // slow subscriber has not read yet. 1 MiB x 4 holds a burst of
            // 100,000 tiny messages without loss (~60 MB at the peak of such a
            // burst, a few MB otherwise); smaller segments save memory by losing
            // messages nobody can count.
            segment_size: 1024 * 1024,
            segment_count: 4,
        }
    }
}

/// Client ids for sessions to the embedded broker, reused once released.
///
/// rumqttd 0.20 keeps, for every client id that ever disconnected, an entry
/// in its "graveyard" (the connection's last events, for a session that
/// might come back) and never drops it. With a fresh random id per session,
/// every HTTP session (each has its own `default` session) left ~0.5 KB in
/// the broker for good. Ids from this pool are unique among live sessions
/// (a lease holds its id until dropped) and come back after, so the
/// graveyard stays at the peak number of concurrent sessions. The embedded
/// broker is private to this process, so nobody else can use these ids.
/// Only clean sessions (no session expiry, clean start: what the server asks
/// of the embedded broker) may lease one: rumqttd would give the state it
/// kept for a persistent session to the id's next holder.
static CLIENT_IDS: IdPool = IdPool::new();

/// Released client ids, ready for reuse.
#[derive(Debug)]
struct IdPool {
    /// Ids no live session holds.
    free: std::sync::Mutex<Vec<String>>,
}

impl IdPool {
    const fn new() -> IdPool {
        IdPool {
            free: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A released id, or a new one.
    fn take(&'static self) -> ClientIdLease {
        let reused = crate::sync::lock(&self.free).pop();
        let id = reused.unwrap_or_else(|| {
            format!(
                "mqtt-mcp-{}",
                crate::secret::random_hex(6).unwrap_or_else(|_| "0".into())
            )
        });
        ClientIdLease { id, pool: self }
    }
}

/// A client id for a session to the embedded broker, unique while held;
/// dropping it returns the id to the pool.
#[derive(Debug)]
pub struct ClientIdLease {
    /// The id.
    id: String,
    /// Where it goes back.
    pool: &'static IdPool,
}

impl ClientIdLease {
    /// Takes a released id, or makes a new one.
    pub fn take() -> ClientIdLease {
        CLIENT_IDS.take()
    }

    /// The client id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for ClientIdLease {
    fn drop(&mut self) {
        crate::sync::lock(&self.pool.free).push(std::mem::take(&mut self.id));
    }
}

/// A free loopback port: bind port 0, read it, release it.
pub fn free_port() -> std::io::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

fn check_bindable(port: u16) -> Result<(), BrokerError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .map(drop)
        .map_err(|e| BrokerError::Bind {
            port,
            reason: e.to_string(),
        })
}

fn rumqttd_config(cfg: &BrokerConfig, v4: SocketAddr, v5: SocketAddr) -> rumqttd::Config {
    let conn = rumqttd::ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: cfg.max_payload,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = |name: &str, listen| rumqttd::ServerSettings {
        name: name.into(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections: conn.clone(),
    };
    rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 1024,
            max_outgoing_packet_count: 1000,
            max_segment_size: cfg.segment_size,
            max_segment_count: cfg.segment_count,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([(
            "1".to_string(),
            server("mqtt-mcp-v4", v4),
        )])),
        v5: Some(HashMap::from([(
            "1".to_string(),
            server("mqtt-mcp-v5", v5),
        )])),
        ..Default::default()
    }
}

fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(50)).is_ok()
}

/// Starts the broker and returns once both listeners accept connections.
pub fn start(cfg: &BrokerConfig) -> Result<EmbeddedBroker, BrokerError> {
    let deadline = Duration::from_secs(5);
    let mut last = BrokerError::NotReady(deadline);
    for _attempt in 0..4 {
        let pick = |p: Option<u16>| -> Result<u16, BrokerError> {
            match p {
                Some(p) => check_bindable(p).map(|_| p),
                None => free_port().map_err(|e| BrokerError::Bind {
                    port: 0,
                    reason: e.to_string(),
                }),
            }
        };
        let v4p = pick(cfg.v4_port)?;
        let mut v5p = pick(cfg.v5_port)?;
        while v5p == v4p {
            v5p = pick(None)?;
        }
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, v4p));
        let v5 = SocketAddr::from((Ipv4Addr::LOCALHOST, v5p));
        let config = rumqttd_config(cfg, v4, v5);
        let handle = std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let mut broker = rumqttd::Broker::new(config);
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "embedded broker stopped");
                }
            })
            .map_err(|e| BrokerError::Thread(e.to_string()))?;
        let started = Instant::now();
        let mut ready = (false, false);
        while started.elapsed() < deadline {
            ready.0 = ready.0 || accepts(v4);
            ready.1 = ready.1 || accepts(v5);
            if ready.0 && ready.1 {
                tracing::info!("embedded MQTT broker listening on mqtt://{v4} (MQTT 3.1.1) and mqtt://{v5} (MQTT 5)");
                return Ok(EmbeddedBroker { v4, v5 });
            }
            if handle.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // A listener thread that failed to bind exits while the other keeps
        // running; with OS-picked ports that is a lost race, so try again.
        last = BrokerError::Bind {
            port: if ready.0 { v5p } else { v4p },
            reason: "the listener did not come up (port taken?)".into(),
        };
        if cfg.v4_port.is_some() && cfg.v5_port.is_some() {
            break;
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::IdPool;

    #[test]
    fn client_ids_are_unique_while_held_and_reused_after() {
        static POOL: IdPool = IdPool::new();
        let a = POOL.take();
        let b = POOL.take();
        assert_ne!(a.id(), b.id());
        assert!(a.id().starts_with("mqtt-mcp-"));
        let released = a.id().to_string();
        drop(a);
        let c = POOL.take();
        assert_eq!(c.id(), released, "a released id is reused");
        assert_ne!(c.id(), b.id());
        let d = POOL.take();
        assert!(
            d.id() != b.id() && d.id() != c.id(),
            "held ids are not handed out"
        );
    }
}
