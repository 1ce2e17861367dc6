//! The transports, side by side: each parses a client's messages once, at
//! its edge, hands them to the MCP core ([`crate::mcp::Server`]) as typed
//! requests and notifications, and writes the typed messages the core sends
//! back, serialized once.
//!
//! - [`stdio`]: newline-delimited JSON-RPC on a byte stream (the binary's
//!   stdin and stdout).
//! - [`http`]: Streamable HTTP: one core per HTTP session, SSE streams, the
//!   stateless 2026-07-28 requests, the request checks and limits.

pub mod http;
pub mod stdio;
