//! bitsperity-mqtt-mcp: an MCP server that gives AI assistants safe, fast
//! access to MQTT brokers.
//!
//! # Layout
//! Requests enter at a transport, pass the MCP core, and reach tools that
//! use broker connections. Each module, one idea:
//!
//! Transports and protocol
//! - [`transport`]: the transports side by side; each parses a message once
//!   and talks to the core in typed messages.
//!   - `stdio.rs`: newline-delimited JSON-RPC on stdin/stdout; the bounded line reader.
//!   - `http/`: Streamable HTTP: one core per HTTP session, each POST answered
//!     through its own reply slot; `checks.rs` (Origin, token, version),
//!     `session.rs`, `post.rs`, `stateless.rs` (2026-07-28 without a
//!     session), `sse.rs` (GET and listen streams), `limits.rs` (the session
//!     cap, the header and body deadlines).
//! - [`jsonrpc`]: JSON-RPC 2.0 on the wire: typed ids and errors, the one
//!   parse of a message, the one writer of messages.
//! - [`mcp`]: the MCP core: typed requests in, typed messages out, no I/O.
//!   - `mod.rs`: the `Server`: admission, tasks, cancellation, shutdown.
//!   - `message.rs`: the typed outgoing messages and the `Sink` they go through.
//!   - `method.rs`: the one table of method names and what each method is.
//!   - `params.rs`: typed params, parsed once per request.
//!   - `lifecycle.rs`: era detection, `initialize`, version negotiation, capabilities, `tools/list`.
//!   - `dispatch.rs`: the one `match` that runs a request, and each era's finish.
//!   - `listen.rs`: `subscriptions/listen` (2026-07-28).
//!   - `resources.rs`: live topics as resources, and completion.
//!   - `prompts.rs`: the prompts. `logging.rs`: `notifications/message`.
//!
//! Tools and what they share
//! - [`tools`]: the contract generated from `schema/` by `build.rs` (types,
//!   table, validators), and the handlers, one file per tool family;
//!   `deadline.rs`: the one deadline of a call, from its schema's time fields.
//! - [`app`]: the runtime shared by requests: sessions, vault, configuration,
//!   the background `default` session.
//! - [`session`]: session ids, idle TTL and reaper, the session cap.
//! - [`subscriptions`]: background subscriptions with bounded buffers and cursors.
//! - [`payload`]: payloads in (text, JSON, base64, hex) and out (decoded safely).
//! - [`decoders`]: payload decoders by configuration (protobuf, msgpack,
//!   cbor, json, text, raw), mapped to topic filters.
//! - [`sparkplug`]: Sparkplug B messages decoded by topic namespace, and the
//!   alias names learned from births.
//! - [`policy`]: read-only mode, topic allow/deny lists, caps, rate limits.
//! - [`profiles`]: the TOML config file with broker profiles.
//! - [`audit`]: the audit log of publishes, clears and refusals.
//! - [`config`]: server-wide settings.
//! - [`secret`]: AES-256-GCM sealing of passwords, redacted secret strings.
//! - [`sync`]: the one way a mutex is locked (poisoning recovered).
//!
//! MQTT
//! - [`mqtt`]: one broker connection and the MQTT rules around it.
//!   - `model.rs`: what a connection is asked and reports (messages, outcomes, errors).
//!   - `ledger.rs`: which request waits for which acknowledgement; no I/O.
//!   - `adapter.rs`: the parts written once for both protocols, over a `Wire`;
//!     `wire_v4.rs`, `wire_v5.rs`: the two wires (rumqttc's 3.1.1 and 5).
//!   - `client.rs`: the handle tools hold. `task.rs`: the event task.
//!   - `reasons.rs`: refusals, reason codes and error advice in words.
//!   - `history.rs`, `dedup.rs`: recent messages per topic; copies of overlapping subscriptions.
//!   - `topic.rs`, `url.rs`, `tls.rs`: topic rules, broker URLs, TLS settings.
//! - [`broker`]: the embedded rumqttd broker.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod app;
pub mod audit;
pub mod broker;
pub mod config;
pub mod decoders;
pub mod jsonrpc;
pub mod mcp;
pub mod mqtt;
pub mod payload;
pub mod policy;
pub mod profiles;
pub mod secret;
pub mod session;
pub mod sparkplug;
pub mod subscriptions;
pub mod sync;
pub mod tools;
pub mod transport;
