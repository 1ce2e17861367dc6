//! Log events to the client as `notifications/message`, filtered by the level
//! the client chose with `logging/setLevel` (default: warning).
//!
//! `main.rs` installs [`McpLogLayer`] beside the stderr logger; it copies this
//! crate's events into a process-wide broadcast channel, and every served
//! connection forwards what passes its level. Library users and in-process
//! tests that do not install the layer simply get no log notifications.

use super::message::Sink;
use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// MCP (syslog) levels, lowest first; positions are what we compare.
pub const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// `warning` until the client asks for more.
pub const DEFAULT_LEVEL: u8 = 3;

/// Position of a level name in [`LEVELS`].
pub fn level_index(name: &str) -> Option<u8> {
    LEVELS.iter().position(|l| *l == name).map(|i| i as u8)
}

/// One log event bound for clients.
#[derive(Debug, Clone)]
pub struct LogEvent {
    /// Index into [`LEVELS`].
    pub level: u8,
    /// The module that logged.
    pub logger: String,
    /// The formatted message and fields.
    pub message: String,
}

static BUS: OnceLock<broadcast::Sender<LogEvent>> = OnceLock::new();

/// A tracing layer that publishes this crate's events to connected clients.
#[derive(Debug, Default)]
pub struct McpLogLayer;

impl McpLogLayer {
    /// Creates the layer and the process-wide channel behind it.
    pub fn new() -> Self {
        let _ = BUS.get_or_init(|| broadcast::channel(256).0);
        McpLogLayer
    }
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for McpLogLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if !meta.target().starts_with("mqtt_mcp") {
            return;
        }
        let Some(bus) = BUS.get() else { return };
        if bus.receiver_count() == 0 {
            return;
        }
        let level = match *meta.level() {
            tracing::Level::ERROR => 4,
            tracing::Level::WARN => 3,
            tracing::Level::INFO => 1,
            _ => 0,
        };
        let mut f = Fields(String::new());
        event.record(&mut f);
        let _ = bus.send(LogEvent {
            level,
            logger: meta.target().to_string(),
            message: f.0,
        });
    }
}

/// Forwards log events to one connection while it lives.
pub fn forward(
    out: Sink,
    level: Arc<dyn Fn() -> u8 + Send + Sync>,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut rx = BUS.get()?.subscribe();
    Some(tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                _ = stop.cancelled() => return,
                ev = rx.recv() => ev,
            };
            match ev {
                Ok(ev) if ev.level >= level() => {
                    let params = serde_json::json!({
                        "level": LEVELS[ev.level as usize],
                        "logger": ev.logger,
                        "data": ev.message,
                    });
                    // Never block the server on a slow client for a log line.
                    out.try_notify(super::Method::LogMessage, params);
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }))
}
