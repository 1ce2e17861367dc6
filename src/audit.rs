//! The audit log: one JSON line per publish, retained clear and refused call
//! (time, session, profile, tool, topic, size, outcome), to stderr or a file.
//! It never holds payloads or credentials.

use serde_json::json;
use std::io::Write;
use std::sync::Mutex;

/// Where audit lines go.
pub struct Audit {
    /// The sink; None when auditing is off.
    sink: Option<Mutex<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Audit({})",
            if self.sink.is_some() { "on" } else { "off" }
        )
    }
}

/// One audited event.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Session id.
    pub session: &'a str,
    /// Profile, if any.
    pub profile: Option<&'a str>,
    /// Tool name.
    pub tool: &'a str,
    /// Topic or filter.
    pub topic: &'a str,
    /// Payload size in bytes.
    pub size: usize,
    /// What happened: acknowledged, sent, unknown, refused, failed, cleared.
    pub outcome: &'a str,
    /// Why, for refusals and failures.
    pub detail: Option<&'a str>,
}

impl Audit {
    /// From the config value: None or "stderr" → stderr, "off" → nothing, else a file (appended).
    pub fn open(dest: Option<&str>) -> std::io::Result<Self> {
        let sink: Option<Box<dyn Write + Send>> = match dest {
            None | Some("stderr") => Some(Box::new(std::io::stderr())),
            Some("off") => None,
            Some(path) => Some(Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )),
        };
        Ok(Self {
            sink: sink.map(Mutex::new),
        })
    }

    /// An audit log that writes nowhere (tests, library use).
    pub fn off() -> Self {
        Self { sink: None }
    }

    /// Appends one line; failures to write are logged, never fatal.
    pub fn record(&self, e: Entry<'_>) {
        let Some(sink) = &self.sink else { return };
        let line = json!({
            "audit": true,
            "time": crate::session::rfc3339(std::time::SystemTime::now()),
            "session": e.session,
            "profile": e.profile,
            "tool": e.tool,
            "topic": e.topic,
            "size": e.size,
            "outcome": e.outcome,
            "detail": e.detail,
        });
        let mut w = crate::sync::lock(sink);
        if writeln!(w, "{line}").and_then(|_| w.flush()).is_err() {
            tracing::warn!("could not write the audit log");
        }
    }
}
