//! The transports, side by side: each parses a client's messages once, at
//! its edge, hands them to the MCP core ([`crate::mcp::Server`]) as typed
//! requests and notifications, and writes the typed messages the core sends
//! back, serialized once.
//!
//! - [`stdio`]: newline-delimited JSON-RPC on a byte stream (the binary's
//!   stdin and stdout).

pub mod stdio;
