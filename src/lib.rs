//! bitsperity-mqtt-mcp: an MCP server that gives AI assistants safe, fast
//! access to MQTT brokers.
//!
//! # Layout
//! - [`jsonrpc`]: JSON-RPC 2.0 framing, ids, error codes, the bounded line reader.
//! - [`mcp`]: the server loop over any byte stream: lifecycle, version
//!   negotiation, dispatch, cancellation, log notifications.
//! - [`tools`]: the contract generated from `schema/` by `build.rs` (types,
//!   table, dispatch), argument validation, and one file per tool family.
//! - [`app`]: the runtime shared by requests: sessions, vault, configuration,
//!   the background `default` session.
//! - [`session`]: session ids, idle TTL and reaper, the session cap.
//! - [`secret`]: AES-256-GCM sealing of passwords, redacted secret strings.
//! - [`mqtt`]: the client task that owns the rumqttc event loop, broker URLs,
//!   topic validation and matching.
//! - [`broker`]: the embedded rumqttd broker.
//! - [`config`]: server settings.
//! - [`payload`]: payloads in (text, JSON, base64, hex) and out (decoded safely).
//! - [`subscriptions`]: background subscriptions with bounded buffers and cursors.
//! - [`profiles`]: the TOML config file with broker profiles.
//! - [`policy`]: read-only mode, topic allow/deny lists, caps, rate limits.
//! - [`audit`]: the audit log of publishes, clears and refusals.
//! - [`mcp::resources`]: live topics as MCP resources, prompts, completion.
//! - [`http`]: the Streamable HTTP transport: one core server per HTTP
//!   session over an in-memory pipe, SSE for server messages, Origin and
//!   bearer-token checks; `http/limits.rs`: the session cap and the header
//!   and body deadlines.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod app;
pub mod audit;
pub mod broker;
pub mod config;
pub mod http;
pub mod jsonrpc;
pub mod mcp;
pub mod mqtt;
pub mod payload;
pub mod policy;
pub mod profiles;
pub mod secret;
pub mod session;
pub mod subscriptions;
pub mod tools;
