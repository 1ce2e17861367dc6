//! MQTT: the connection task, broker URLs, topic names and filters.

pub mod adapter;
pub mod client;
pub mod dedup;
pub mod history;
pub mod ledger;
pub mod model;
pub mod reasons;
pub mod task;
pub mod tls;
pub mod topic;
pub mod url;
pub mod wire_v4;
pub mod wire_v5;
