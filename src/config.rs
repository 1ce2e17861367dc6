//! Server-wide settings, filled from flags and environment by `main.rs` and
//! from defaults in tests, and the one way a boolean setting is read.

use std::time::Duration;

/// Everything tunable about the MCP server itself.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Longest accepted input line in bytes (longer lines are rejected unread).
    pub max_line_bytes: usize,
    /// Tools per `tools/list` page.
    pub list_page_size: usize,
    /// Hard ceiling for any tool call, whatever it asks for.
    pub max_call_timeout: Duration,
    /// Default deadline for the broker's CONNACK.
    pub connect_timeout: Duration,
    /// Requests handled at once; further input waits (never dropped).
    pub max_concurrent_requests: usize,
    /// Idle TTL and cap of broker sessions.
    pub sessions: crate::session::SessionConfig,
    /// How long in-flight calls may finish after stdin closed.
    pub shutdown_grace: Duration,
    /// Largest payload publish_message accepts (brokers often allow less).
    pub max_publish_bytes: usize,
    /// At most one `notifications/resources/updated` per resource per interval.
    pub resource_update_interval: Duration,
    /// Forward the process's log events as `notifications/message`. True for
    /// stdio (one client per process); false for HTTP sessions, which must not
    /// see each other's events.
    pub forward_logs: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_line_bytes: 4 * 1024 * 1024,
            list_page_size: 50,
            max_call_timeout: Duration::from_secs(330),
            connect_timeout: Duration::from_secs(10),
            max_concurrent_requests: 256,
            sessions: Default::default(),
            shutdown_grace: Duration::from_millis(500),
            max_publish_bytes: 16 * 1024 * 1024,
            resource_update_interval: Duration::from_secs(1),
            forward_logs: true,
        }
    }
}

/// The spellings of a boolean that [`parse_bool`] takes, for error messages.
pub const BOOL_FORMS: &str = "1/0, true/false, yes/no, on/off (any case)";

/// A boolean as people write it in environment variables and on command
/// lines (`MQTT_MCP_READ_ONLY=1`, `retain=yes`): one parser, so every
/// boolean setting takes the same spellings. `None` when it is none of them.
pub fn parse_bool(text: &str) -> Option<bool> {
    const TRUE: [&str; 4] = ["1", "true", "yes", "on"];
    const FALSE: [&str; 4] = ["0", "false", "no", "off"];
    let text = text.trim();
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(text)) {
        Some(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(text)) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_take_every_documented_spelling_in_any_case() {
        for t in [
            "1", "true", "TRUE", "True", "yes", "Yes", "on", "ON", " on ",
        ] {
            assert_eq!(parse_bool(t), Some(true), "{t:?}");
        }
        for f in ["0", "false", "FALSE", "no", "No", "off", "Off"] {
            assert_eq!(parse_bool(f), Some(false), "{f:?}");
        }
        for bad in ["", "2", "y", "n", "enabled", "truee", "-1"] {
            assert_eq!(parse_bool(bad), None, "{bad:?}");
        }
    }
}
