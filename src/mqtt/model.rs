//! The MQTT model shared by the client, the tools and the resources: what a
//! connection is asked to do and what it reports back. No I/O here.

use crate::secret::Sealed;
use bytes::Bytes;
use std::time::{Duration, SystemTime};

/// Which MQTT protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 5.0.
    V5,
    /// MQTT 3.1.1.
    V311,
}

impl Protocol {
    /// The wire name used in tool results: "5" or "3.1.1".
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V5 => "5",
            Protocol::V311 => "3.1.1",
        }
    }
}

/// Everything needed to (re)connect. The password stays sealed.
#[derive(Debug, Clone)]
pub struct ConnectSpec {
    /// Broker host name or address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// TLS settings; None for plain TCP.
    pub tls: Option<super::tls::TlsSettings>,
    /// User name, if any (not secret, but never logged with the password).
    pub username: Option<String>,
    /// Password sealed by the process vault.
    pub password: Option<Sealed>,
    /// MQTT client id.
    pub client_id: String,
    /// Protocol to try first.
    pub protocol: Protocol,
    /// Try 3.1.1 when the broker refuses 5.
    pub allow_fallback: bool,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// Clean start / clean session for the first connect.
    pub clean_start: bool,
    /// True when the client id was generated for this connection: no
    /// earlier session can exist under it, so an MQTT 5 session with an
    /// expiry can be asked to persist from the first CONNECT (Mosquitto
    /// saves a session across its restarts only when clean start is off).
    pub fresh_client_id: bool,
    /// MQTT 5 session expiry in seconds: with one, reconnects resume the
    /// broker session, so the broker and this client re-send what was in
    /// flight at a drop. `None` for brokers that would keep such sessions
    /// forever (the embedded rumqttd has no expiry).
    pub session_expiry: Option<u32>,
    /// Deadline for the first CONNACK.
    pub connect_timeout: Duration,
}

/// MQTT 5 properties of a received or published message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V5Props {
    /// Content-Type.
    pub content_type: Option<String>,
    /// Payload format indicator (1 = UTF-8).
    pub payload_format_indicator: Option<u8>,
    /// Message expiry in seconds.
    pub message_expiry_interval: Option<u32>,
    /// Response topic for request/response.
    pub response_topic: Option<String>,
    /// Correlation data for request/response.
    pub correlation_data: Option<Bytes>,
    /// User properties, in order.
    pub user_properties: Vec<(String, String)>,
}

impl V5Props {
    pub(crate) fn is_empty(&self) -> bool {
        self == &V5Props::default()
    }
}

/// A message received from the broker.
#[derive(Debug, Clone)]
pub struct Message {
    /// The topic it was published to.
    pub topic: String,
    /// Raw payload bytes (shared, never copied per subscriber).
    pub payload: Bytes,
    /// Delivery QoS (0, 1, 2).
    pub qos: u8,
    /// Retained flag as delivered (true for stored retained messages).
    pub retain: bool,
    /// When our event loop took it off the wire.
    pub received_at: SystemTime,
    /// MQTT 5 properties, when any were set.
    pub props: Option<Box<V5Props>>,
}

/// Connection state as shown to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// CONNACK received, traffic flows.
    Connected,
    /// Dropped; the task is retrying with backoff.
    Reconnecting,
    /// Closed by us; the session is gone.
    Closed,
}

impl LinkState {
    /// The wire name used in tool results.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connected => "connected",
            LinkState::Reconnecting => "reconnecting",
            LinkState::Closed => "closed",
        }
    }
}

/// Why connecting failed; each message tells the model what to change.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The broker answered CONNACK with a refusal.
    #[error("the broker refused the connection: {reason}")]
    Refused {
        /// The CONNACK code and what to change.
        reason: String,
        /// True when the refusal names the protocol version (3.1.1 may work).
        protocol_version: bool,
    },
    /// TCP connect failed.
    #[error("cannot reach {addr}: {reason}. Check host and port, and that the broker is running")]
    Unreachable {
        /// host:port.
        addr: String,
        /// The OS error.
        reason: String,
    },
    /// The socket closed before CONNACK.
    #[error("the broker at {0} closed the connection before accepting it; this usually means bad credentials, a rejected client id, or an unsupported protocol version")]
    ClosedBeforeConnAck(String),
    /// No CONNACK within the deadline.
    #[error("no answer (CONNACK) from {addr} within {ms} ms; the host may drop packets or not speak MQTT on that port")]
    Timeout {
        /// host:port.
        addr: String,
        /// The deadline.
        ms: u128,
    },
    /// TLS setup or handshake failed.
    #[error("TLS failed with {addr}: {reason}")]
    Tls {
        /// host:port.
        addr: String,
        /// Why.
        reason: String,
    },
    /// Anything else the MQTT layer reported.
    #[error("connection to {addr} failed: {reason}")]
    Other {
        /// host:port.
        addr: String,
        /// Why.
        reason: String,
    },
}

/// Outcome of a publish, as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// QoS 0: written to the socket.
    Sent,
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) received; v5 reason code.
    Acknowledged {
        /// 0 on success; on MQTT 5 the broker's reason code (< 0x80 is success).
        reason_code: u8,
    },
    /// The broker refused it (MQTT 5 reason code ≥ 0x80).
    Rejected {
        /// The reason code.
        reason_code: u8,
    },
    /// Nothing proves whether the broker has it.
    Unknown {
        /// Why not.
        reason: UnknownReason,
    },
}

/// Why a publish's outcome is unknown; each says what the model can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnknownReason {
    /// It was on the wire when the connection dropped, and the broker did not
    /// keep the session (or the server speaks MQTT 3.1.1 with a clean session).
    SessionLost,
    /// It was queued when the connection dropped and could not be queued again.
    NotRequeued,
    /// The client reused its packet id before an acknowledgement arrived.
    PacketIdReused,
    /// The session was closed before the broker answered.
    Closed,
    /// No acknowledgement within the call's deadline.
    Timeout,
    /// The call was cancelled while waiting.
    Cancelled,
}

impl UnknownReason {
    /// What happened and what to do, for tool results.
    pub fn explain(self) -> &'static str {
        match self {
            UnknownReason::SessionLost => "the connection to the broker dropped while the message was in flight and the broker did not keep the session, so nothing proves it arrived; check with a subscriber (or read_messages) before publishing again if duplicates matter",
            UnknownReason::NotRequeued => "the connection dropped before the message was sent and it could not be queued again; it was most likely not published: publish it again",
            UnknownReason::PacketIdReused => "the MQTT client reused the message's packet id before the broker acknowledged it, so its acknowledgement cannot be told apart; check with a subscriber",
            UnknownReason::Closed => "the session was closed before the broker answered",
            UnknownReason::Timeout => "no acknowledgement arrived within timeout_ms; the broker may still acknowledge it (raise timeout_ms, or check with a subscriber)",
            UnknownReason::Cancelled => "the call was cancelled before the broker answered",
        }
    }
}

/// Outcome of one filter in a SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubAckCode {
    /// Granted with this QoS.
    Granted(u8),
    /// Refused with this reason code (0x80 on 3.1.1).
    Refused(u8),
}

/// Errors of requests on an established connection.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The session was closed.
    #[error("the session is closed; open a new one with establish_connection")]
    Closed,
    /// Too many requests queued on this connection.
    #[error("too many requests are queued on this connection; retry shortly")]
    Busy,
    /// The event loop went away while we waited.
    #[error("the connection dropped before the broker answered; the outcome is unknown")]
    Lost,
    /// The broker does not allow `$` filters (it dropped the connection for one).
    #[error("this broker does not allow subscriptions to $ topics (such as $SYS/#); it dropped the connection for one. Subscribe to ordinary topics instead")]
    DollarRefused,
}

/// Why a subscription could not be opened.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The request could not be sent or was lost.
    #[error(transparent)]
    Request(RequestError),
    /// No SUBACK in time.
    #[error("the broker did not confirm the subscription (SUBACK) within {0} ms")]
    Timeout(u128),
    /// The broker refused a filter.
    #[error("the broker refused the subscription to {filter:?} (reason code 0x{code:02X}); the user may lack permission or the filter is not allowed")]
    Refused {
        /// The filter.
        filter: String,
        /// Reason code.
        code: u8,
    },
}
