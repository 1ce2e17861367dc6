//! One broker connection: a task that owns the rumqttc event loop (MQTT 5 or
//! 3.1.1) and a cloneable handle that tools use to publish and subscribe.
//!
//! rumqttc does not tell the caller which packet id its publish got. It does
//! emit `Outgoing::Publish(pkid)` (and `Subscribe`/`Unsubscribe`) in exactly
//! the order requests entered its channel, so every request is pushed onto a
//! FIFO of waiters *under the same lock* as the non-blocking send; the event
//! task pops the FIFO on each outgoing event and then matches the ack by pkid.
//! Retransmissions after a reconnect reuse a pkid we already track, which is
//! how they are told apart from new requests.

use crate::secret::{Sealed, Vault};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use rumqttc::v5 as r5;

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
    /// Clean start / clean session.
    pub clean_start: bool,
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
    fn is_empty(&self) -> bool {
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
    #[error("the broker refused the connection: {0}")]
    Refused(String),
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

/// An open subscription; unsubscribes (if no one else holds its filters) on drop.
pub struct Subscription {
    /// The connection it lives on.
    conn: Connection,
    /// Where its messages arrive.
    pub route: RouteHandle,
    /// Per filter: what the broker granted.
    pub granted: Vec<(String, SubAckCode)>,
}

impl Subscription {
    /// Messages lost because the consumer fell behind.
    pub fn dropped(&self) -> u64 {
        self.route.dropped.load(Ordering::Relaxed)
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.conn.unroute(self.route.id);
    }
}

/// A message route: where messages matching any of `filters` are delivered (once).
struct Route {
    /// Route id (one per subscriber).
    id: u64,
    /// The MQTT filters to match topics against (shared subscriptions by inner filter).
    filters: Vec<String>,
    /// Topics matching these filters are never delivered (policy denies).
    exclude: Vec<String>,
    /// Bounded delivery channel; full means the subscriber is slow.
    tx: mpsc::Sender<Arc<Message>>,
    /// Messages that did not fit into `tx`.
    dropped: Arc<AtomicU64>,
}

/// Handle given to a subscriber; dropping it does not unsubscribe (call `unroute`).
pub struct RouteHandle {
    /// The route id for `unroute`.
    pub id: u64,
    /// Receives matching messages.
    pub rx: mpsc::Receiver<Arc<Message>>,
    /// Messages lost because `rx` was full.
    pub dropped: Arc<AtomicU64>,
}

type PubWaiter = Option<oneshot::Sender<PublishOutcome>>;
type SubWaiter = Option<oneshot::Sender<Vec<SubAckCode>>>;

#[derive(Default)]
struct Pending {
    /// Publishes sent to rumqttc but not yet given a pkid, in channel order.
    pub_fifo: VecDeque<(u8, PubWaiter)>,
    /// Publishes with a pkid, waiting for PUBACK/PUBCOMP.
    pub_by_pkid: HashMap<u16, PubWaiter>,
    /// Subscribes in channel order, then by pkid.
    sub_fifo: VecDeque<SubWaiter>,
    sub_by_pkid: HashMap<u16, SubWaiter>,
    /// Unsubscribes in channel order, then by pkid.
    unsub_fifo: VecDeque<Option<oneshot::Sender<()>>>,
    unsub_by_pkid: HashMap<u16, Option<oneshot::Sender<()>>>,
}

struct Status {
    state: LinkState,
    reconnects: u64,
    last_error: Option<String>,
    /// Bumped on every (re)connect so subscribers can detect gaps.
    epoch: u64,
}

/// Broker-side subscriptions, reference-counted per filter, replayed on reconnect.
#[derive(Default)]
struct Filters {
    by_filter: HashMap<String, (u8, usize)>,
}

struct Shared {
    pending: Mutex<Pending>,
    status: Mutex<Status>,
    routes: Mutex<Vec<Route>>,
    filters: Mutex<Filters>,
    next_route: AtomicU64,
    received: AtomicU64,
    state_tx: tokio::sync::watch::Sender<u64>,
    /// Recent messages per topic (for `topic_history`).
    history: Mutex<super::history::History>,
    /// A `$` filter whose SUBACK is outstanding; if the broker drops us
    /// meanwhile (rumqttd does), the filter is not replayed and `$` filters
    /// are refused from then on.
    dollar_probe: Mutex<Option<String>>,
    /// Set once the broker dropped us for a `$` filter.
    dollar_refused: std::sync::atomic::AtomicBool,
    /// Swallows the extra copies that overlapping subscriptions cause.
    dedup: Mutex<super::dedup::Dedup>,
    /// A connection to the embedded rumqttd.
    embedded: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
enum Client {
    V4(rumqttc::AsyncClient),
    V5(r5::AsyncClient),
}

/// A live broker connection. Cheap to clone; the last clone does not close it:
/// call [`Connection::close`].
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    client: Client,
    protocol: Protocol,
    stop: CancellationToken,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

/// What CONNACK told us.
#[derive(Debug, Clone)]
pub struct Connected {
    /// The protocol in use after any fallback.
    pub protocol: Protocol,
    /// True when 5 was refused and 3.1.1 used.
    pub fell_back: bool,
    /// CONNACK session-present flag.
    pub session_present: bool,
}

const REQUEST_CHANNEL: usize = 4096;
/// QoS 1/2 publishes awaiting acknowledgement per connection.
const MAX_INFLIGHT: u16 = 100;
const MAX_PACKET: usize = 256 * 1024 * 1024;

/// Normalised events of both protocol versions.
enum Ev {
    ConnAck { session_present: bool },
    Publish(Message),
    PubAck { pkid: u16, reason: u8 },
    PubRec { pkid: u16, reason: u8 },
    PubComp { pkid: u16, reason: u8 },
    SubAck { pkid: u16, codes: Vec<SubAckCode> },
    UnsubAck { pkid: u16 },
    Disconnect { reason: String },
    OutPublish(u16),
    OutSubscribe(u16),
    OutUnsubscribe(u16),
    Other,
}

enum Loop {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<r5::EventLoop>),
}

/// A payload that owns its memory: rumqttc hands out slices of its read
/// buffer, and keeping one small message alive would pin the whole buffer.
fn own(b: Bytes) -> Bytes {
    if b.len() < 64 * 1024 {
        Bytes::copy_from_slice(&b)
    } else {
        b
    }
}

fn qos_u8(q: rumqttc::QoS) -> u8 {
    q as u8
}

fn qos4(q: u8) -> rumqttc::QoS {
    match q {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

fn qos5(q: u8) -> r5::mqttbytes::QoS {
    match q {
        0 => r5::mqttbytes::QoS::AtMostOnce,
        1 => r5::mqttbytes::QoS::AtLeastOnce,
        _ => r5::mqttbytes::QoS::ExactlyOnce,
    }
}

/// Wire values of MQTT 5 reason codes, for results and messages.
fn v5_connect_refusal(code: r5::mqttbytes::v5::ConnectReturnCode) -> String {
    use r5::mqttbytes::v5::ConnectReturnCode as C;
    let hint = match code {
        C::BadUserNamePassword => "bad user name or password; check username/password",
        C::NotAuthorized => "not authorized; the user may not connect",
        C::ClientIdentifierNotValid | C::BadClientId => {
            "client id rejected; pass another client_id"
        }
        C::UnsupportedProtocolVersion | C::RefusedProtocolVersion => {
            "protocol version not supported"
        }
        C::ServerUnavailable | C::ServiceUnavailable | C::ServerBusy => {
            "the broker is unavailable or busy; retry later"
        }
        C::Banned => "this client is banned",
        _ => "",
    };
    if hint.is_empty() {
        format!("{code:?}")
    } else {
        format!("{code:?} ({hint})")
    }
}

fn v4_connect_refusal(code: rumqttc::ConnectReturnCode) -> String {
    use rumqttc::ConnectReturnCode as C;
    let hint = match code {
        C::BadUserNamePassword => "bad user name or password; check username/password",
        C::NotAuthorized => "not authorized; the user may not connect",
        C::BadClientId => "client id rejected; pass another client_id",
        C::RefusedProtocolVersion => "protocol version not supported",
        C::ServiceUnavailable => "the broker is unavailable; retry later",
        C::Success => "",
    };
    format!("{code:?} ({hint})")
}

impl Loop {
    async fn poll(&mut self) -> Result<Ev, ConnectError> {
        match self {
            Loop::V4(el) => {
                // The address is formatted only on error: poll runs per packet.
                let ev = match el.poll().await {
                    Ok(ev) => ev,
                    Err(e) => {
                        let (host, port) = el.mqtt_options.broker_address();
                        let addr = format!("{host}:{port}");
                        return Err(explain_tls(&addr, map_v4_err(&addr, e)));
                    }
                };
                use rumqttc::{Event, Incoming as I, Outgoing as O};
                Ok(match ev {
                    Event::Incoming(I::ConnAck(c)) => Ev::ConnAck {
                        session_present: c.session_present,
                    },
                    Event::Incoming(I::Publish(p)) => Ev::Publish(Message {
                        topic: p.topic,
                        payload: own(p.payload),
                        qos: qos_u8(p.qos),
                        retain: p.retain,
                        received_at: SystemTime::now(),
                        props: None,
                    }),
                    Event::Incoming(I::PubAck(a)) => Ev::PubAck {
                        pkid: a.pkid,
                        reason: 0,
                    },
                    Event::Incoming(I::PubRec(a)) => Ev::PubRec {
                        pkid: a.pkid,
                        reason: 0,
                    },
                    Event::Incoming(I::PubComp(a)) => Ev::PubComp {
                        pkid: a.pkid,
                        reason: 0,
                    },
                    Event::Incoming(I::SubAck(s)) => Ev::SubAck {
                        pkid: s.pkid,
                        codes: s
                            .return_codes
                            .iter()
                            .map(|c| match c {
                                rumqttc::SubscribeReasonCode::Success(q) => {
                                    SubAckCode::Granted(qos_u8(*q))
                                }
                                rumqttc::SubscribeReasonCode::Failure => SubAckCode::Refused(0x80),
                            })
                            .collect(),
                    },
                    Event::Incoming(I::UnsubAck(u)) => Ev::UnsubAck { pkid: u.pkid },
                    Event::Incoming(I::Disconnect) => Ev::Disconnect {
                        reason: "broker sent DISCONNECT".into(),
                    },
                    Event::Outgoing(O::Publish(p)) => Ev::OutPublish(p),
                    Event::Outgoing(O::Subscribe(p)) => Ev::OutSubscribe(p),
                    Event::Outgoing(O::Unsubscribe(p)) => Ev::OutUnsubscribe(p),
                    _ => Ev::Other,
                })
            }
            Loop::V5(el) => {
                let ev = match el.poll().await {
                    Ok(ev) => ev,
                    Err(e) => {
                        let (host, port) = el.options.broker_address();
                        let addr = format!("{host}:{port}");
                        return Err(explain_tls(&addr, map_v5_err(&addr, e)));
                    }
                };
                use r5::mqttbytes::v5::Packet as P;
                use r5::Event;
                use rumqttc::Outgoing as O;
                Ok(match ev {
                    Event::Incoming(P::ConnAck(c)) => Ev::ConnAck {
                        session_present: c.session_present,
                    },
                    Event::Incoming(P::Publish(p)) => {
                        let props = p.properties.map(|pp| V5Props {
                            content_type: pp.content_type,
                            payload_format_indicator: pp.payload_format_indicator,
                            message_expiry_interval: pp.message_expiry_interval,
                            response_topic: pp.response_topic,
                            correlation_data: pp.correlation_data,
                            user_properties: pp.user_properties,
                        });
                        Ev::Publish(Message {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: own(p.payload),
                            qos: p.qos as u8,
                            retain: p.retain,
                            received_at: SystemTime::now(),
                            props: props.filter(|p| !p.is_empty()).map(Box::new),
                        })
                    }
                    Event::Incoming(P::PubAck(a)) => Ev::PubAck {
                        pkid: a.pkid,
                        reason: puback_code(a.reason),
                    },
                    Event::Incoming(P::PubRec(a)) => Ev::PubRec {
                        pkid: a.pkid,
                        reason: pubrec_code(a.reason),
                    },
                    Event::Incoming(P::PubComp(a)) => Ev::PubComp {
                        pkid: a.pkid,
                        reason: if matches!(a.reason, r5::mqttbytes::v5::PubCompReason::Success) {
                            0
                        } else {
                            0x92
                        },
                    },
                    Event::Incoming(P::SubAck(s)) => Ev::SubAck {
                        pkid: s.pkid,
                        codes: s.return_codes.iter().map(|c| suback_code(*c)).collect(),
                    },
                    Event::Incoming(P::UnsubAck(u)) => Ev::UnsubAck { pkid: u.pkid },
                    Event::Incoming(P::Disconnect(d)) => Ev::Disconnect {
                        reason: format!("broker sent DISCONNECT ({:?})", d.reason_code),
                    },
                    Event::Outgoing(O::Publish(p)) => Ev::OutPublish(p),
                    Event::Outgoing(O::Subscribe(p)) => Ev::OutSubscribe(p),
                    Event::Outgoing(O::Unsubscribe(p)) => Ev::OutUnsubscribe(p),
                    _ => Ev::Other,
                })
            }
        }
    }

    /// Puts the plaintext password into the options just before a (re)connect.
    fn arm_credentials(&mut self, spec: &ConnectSpec, vault: &Vault) {
        let Some(user) = &spec.username else { return };
        let pass = spec.password.as_ref().and_then(|s| vault.open(s).ok());
        let pass = pass.as_ref().map(|p| p.expose()).unwrap_or("");
        match self {
            Loop::V4(el) => {
                el.mqtt_options.set_credentials(user.clone(), pass);
            }
            Loop::V5(el) => {
                el.options.set_credentials(user.clone(), pass);
            }
        }
    }

    /// Overwrites the stored password once the broker accepted it.
    fn disarm_credentials(&mut self, spec: &ConnectSpec) {
        let Some(user) = &spec.username else { return };
        match self {
            Loop::V4(el) => {
                el.mqtt_options.set_credentials(user.clone(), "");
            }
            Loop::V5(el) => {
                el.options.set_credentials(user.clone(), "");
            }
        }
    }
}

fn puback_code(r: r5::mqttbytes::v5::PubAckReason) -> u8 {
    use r5::mqttbytes::v5::PubAckReason as R;
    match r {
        R::Success => 0x00,
        R::NoMatchingSubscribers => 0x10,
        R::UnspecifiedError => 0x80,
        R::ImplementationSpecificError => 0x83,
        R::NotAuthorized => 0x87,
        R::TopicNameInvalid => 0x90,
        R::PacketIdentifierInUse => 0x91,
        R::QuotaExceeded => 0x97,
        R::PayloadFormatInvalid => 0x99,
    }
}

fn pubrec_code(r: r5::mqttbytes::v5::PubRecReason) -> u8 {
    use r5::mqttbytes::v5::PubRecReason as R;
    match r {
        R::Success => 0x00,
        R::NoMatchingSubscribers => 0x10,
        R::UnspecifiedError => 0x80,
        R::ImplementationSpecificError => 0x83,
        R::NotAuthorized => 0x87,
        R::TopicNameInvalid => 0x90,
        R::PacketIdentifierInUse => 0x91,
        R::QuotaExceeded => 0x97,
        R::PayloadFormatInvalid => 0x99,
    }
}

fn suback_code(c: r5::mqttbytes::v5::SubscribeReasonCode) -> SubAckCode {
    use r5::mqttbytes::v5::SubscribeReasonCode as C;
    match c {
        C::Success(q) => SubAckCode::Granted(q as u8),
        C::Failure | C::Unspecified => SubAckCode::Refused(0x80),
        C::ImplementationSpecific => SubAckCode::Refused(0x83),
        C::NotAuthorized => SubAckCode::Refused(0x87),
        C::TopicFilterInvalid => SubAckCode::Refused(0x8F),
        C::PkidInUse => SubAckCode::Refused(0x91),
        C::QuotaExceeded => SubAckCode::Refused(0x97),
        C::SharedSubscriptionsNotSupported => SubAckCode::Refused(0x9E),
        C::SubscriptionIdNotSupported => SubAckCode::Refused(0xA1),
        C::WildcardSubscriptionsNotSupported => SubAckCode::Refused(0xA2),
    }
}

fn map_io(addr: &str, e: std::io::Error) -> ConnectError {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
            ConnectError::ClosedBeforeConnAck(addr.to_string())
        }
        _ => ConnectError::Unreachable {
            addr: addr.to_string(),
            reason: e.to_string(),
        },
    }
}

/// Turns TLS failures, wherever rumqttc reports them, into advice.
fn explain_tls(addr: &str, e: ConnectError) -> ConnectError {
    let text = e.to_string();
    let hint = if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        "the broker's certificate is not signed by a trusted CA; set tls.ca_file to the CA that issued it"
    } else if text.contains("NotValidForName") {
        "the broker's certificate is not valid for this host name; connect with the name in the certificate"
    } else if text.contains("Expired") {
        "the broker's certificate has expired (or the clock is wrong)"
    } else if text.contains("CertificateRequired") {
        "the broker requires a client certificate; set tls.client_cert and tls.client_key"
    } else if text.contains("alert")
        && (text.contains("BadCertificate")
            || text.contains("UnknownCA")
            || text.contains("DecryptError"))
    {
        "the broker rejected the client certificate; check tls.client_cert and tls.client_key"
    } else if text.contains("InvalidContentType") || text.contains("CorruptMessage") {
        "the port does not speak TLS; use mqtt:// or the broker's TLS port"
    } else {
        return e;
    };
    let detail = match &e {
        ConnectError::Tls { reason, .. } | ConnectError::Other { reason, .. } => reason.clone(),
        _ => text,
    };
    ConnectError::Tls {
        addr: addr.to_string(),
        reason: format!("{hint} (details: {detail})"),
    }
}

fn map_v4_err(addr: &str, e: rumqttc::ConnectionError) -> ConnectError {
    use rumqttc::ConnectionError as E;
    match e {
        E::ConnectionRefused(code) => ConnectError::Refused(v4_connect_refusal(code)),
        E::Io(io) => map_io(addr, io),
        E::NetworkTimeout | E::FlushTimeout => ConnectError::Timeout {
            addr: addr.to_string(),
            ms: 0,
        },
        E::Tls(t) => ConnectError::Tls {
            addr: addr.to_string(),
            reason: t.to_string(),
        },
        E::MqttState(rumqttc::StateError::Io(io)) => map_io(addr, io),
        E::MqttState(rumqttc::StateError::ConnectionAborted) => {
            ConnectError::ClosedBeforeConnAck(addr.to_string())
        }
        other => ConnectError::Other {
            addr: addr.to_string(),
            reason: other.to_string(),
        },
    }
}

fn map_v5_err(addr: &str, e: r5::ConnectionError) -> ConnectError {
    use r5::ConnectionError as E;
    match e {
        E::ConnectionRefused(code) => ConnectError::Refused(v5_connect_refusal(code)),
        E::Io(io) => map_io(addr, io),
        E::Timeout(_) => ConnectError::Timeout {
            addr: addr.to_string(),
            ms: 0,
        },
        E::Tls(t) => ConnectError::Tls {
            addr: addr.to_string(),
            reason: t.to_string(),
        },
        E::MqttState(r5::StateError::Io(io)) => map_io(addr, io),
        E::MqttState(r5::StateError::ConnectionAborted) => {
            ConnectError::ClosedBeforeConnAck(addr.to_string())
        }
        other => ConnectError::Other {
            addr: addr.to_string(),
            reason: other.to_string(),
        },
    }
}

fn build(spec: &ConnectSpec, protocol: Protocol, transport: &rumqttc::Transport) -> (Client, Loop) {
    match protocol {
        Protocol::V311 => {
            let mut o =
                rumqttc::MqttOptions::new(spec.client_id.clone(), spec.host.clone(), spec.port);
            o.set_keep_alive(spec.keep_alive)
                .set_clean_session(spec.clean_start)
                .set_max_packet_size(MAX_PACKET, MAX_PACKET)
                .set_request_channel_capacity(REQUEST_CHANNEL)
                .set_inflight(MAX_INFLIGHT);
            o.set_transport(transport.clone());
            let (c, mut el) = rumqttc::AsyncClient::new(o, REQUEST_CHANNEL);
            let mut net = rumqttc::NetworkOptions::new();
            net.set_connection_timeout(spec.connect_timeout.as_secs().max(1));
            net.set_tcp_nodelay(true);
            el.set_network_options(net);
            (Client::V4(c), Loop::V4(Box::new(el)))
        }
        Protocol::V5 => {
            let mut o = r5::MqttOptions::new(spec.client_id.clone(), spec.host.clone(), spec.port);
            o.set_keep_alive(spec.keep_alive)
                .set_clean_start(spec.clean_start)
                .set_max_packet_size(Some(MAX_PACKET as u32))
                .set_request_channel_capacity(REQUEST_CHANNEL)
                .set_connection_timeout(spec.connect_timeout.as_secs().max(1))
                // rumqttc's v5 state preallocates one slot per possible
                // in-flight packet id: 65,535 by default, 14 MB per session.
                .set_outgoing_inflight_upper_limit(MAX_INFLIGHT);
            o.set_transport(transport.clone());
            let mut net = rumqttc::NetworkOptions::new();
            net.set_tcp_nodelay(true);
            o.set_network_options(net);
            let (c, el) = r5::AsyncClient::new(o, REQUEST_CHANNEL);
            (Client::V5(c), Loop::V5(Box::new(el)))
        }
    }
}

/// Errors after which 3.1.1 is worth a try: refusals of the protocol, or a
/// broker that closes the socket (what 3.1.1-only brokers often do with v5).
fn worth_fallback(e: &ConnectError) -> bool {
    match e {
        ConnectError::Refused(r) => r.contains("ProtocolVersion"),
        ConnectError::ClosedBeforeConnAck(_) | ConnectError::Other { .. } => true,
        _ => false,
    }
}

async fn first_connack(
    el: &mut Loop,
    spec: &ConnectSpec,
    vault: &Vault,
) -> Result<bool, ConnectError> {
    el.arm_credentials(spec, vault);
    let addr = format!("{}:{}", spec.host, spec.port);
    let fut = async {
        loop {
            match el.poll().await? {
                Ev::ConnAck { session_present } => return Ok(session_present),
                _ => continue,
            }
        }
    };
    let res = match tokio::time::timeout(spec.connect_timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout {
            addr: addr.clone(),
            ms: spec.connect_timeout.as_millis(),
        }),
    };
    el.disarm_credentials(spec);
    res.map_err(|e| match e {
        ConnectError::Timeout { addr, .. } => ConnectError::Timeout {
            addr,
            ms: spec.connect_timeout.as_millis(),
        },
        e => e,
    })
}

/// Backoff between reconnect attempts: 100 ms doubling to 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(6)).min(5_000))
}

impl Connection {
    /// Connects (with fallback to 3.1.1 when allowed) and spawns the event task.
    /// Returns only after CONNACK.
    pub async fn connect(
        spec: ConnectSpec,
        vault: Arc<Vault>,
    ) -> Result<(Connection, Connected), ConnectError> {
        let (client, mut el, protocol, fell_back, session_present) = {
            let transport = match &spec.tls {
                None => rumqttc::Transport::tcp(),
                Some(t) => {
                    let cfg = super::tls::client_config(t).map_err(|reason| ConnectError::Tls {
                        addr: format!("{}:{}", spec.host, spec.port),
                        reason,
                    })?;
                    rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(cfg))
                }
            };
            let (c, mut el) = build(&spec, spec.protocol, &transport);
            match first_connack(&mut el, &spec, &vault).await {
                Ok(sp) => (c, el, spec.protocol, false, sp),
                Err(e)
                    if spec.protocol == Protocol::V5
                        && spec.allow_fallback
                        && worth_fallback(&e) =>
                {
                    tracing::debug!(error = %e, "MQTT 5 refused; trying 3.1.1");
                    drop(el);
                    let (c, mut el) = build(&spec, Protocol::V311, &transport);
                    match first_connack(&mut el, &spec, &vault).await {
                        Ok(sp) => (c, el, Protocol::V311, true, sp),
                        Err(e2) => return Err(e2),
                    }
                }
                Err(e) => return Err(e),
            }
        };
        let (state_tx, _) = tokio::sync::watch::channel(1);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            status: Mutex::new(Status {
                state: LinkState::Connected,
                reconnects: 0,
                last_error: None,
                epoch: 1,
            }),
            routes: Mutex::new(Vec::new()),
            filters: Mutex::new(Filters::default()),
            next_route: AtomicU64::new(1),
            received: AtomicU64::new(0),
            state_tx,
            history: Mutex::new(super::history::History::new(Default::default())),
            dollar_probe: Mutex::new(None),
            dollar_refused: std::sync::atomic::AtomicBool::new(false),
            dedup: Mutex::new(Default::default()),
            embedded: std::sync::atomic::AtomicBool::new(false),
        });
        let stop = CancellationToken::new();
        let conn = Connection {
            shared: shared.clone(),
            client: client.clone(),
            protocol,
            stop: stop.clone(),
            task: Arc::new(Mutex::new(None)),
        };
        let resub = conn.clone();
        let task = tokio::spawn(async move {
            run_loop(&mut el, spec, vault, shared, stop, resub).await;
        });
        if let Ok(mut t) = conn.task.lock() {
            *t = Some(task);
        }
        Ok((
            conn,
            Connected {
                protocol,
                fell_back,
                session_present,
            },
        ))
    }

    /// The protocol in use.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// State, reconnect count and last error.
    pub fn status(&self) -> (LinkState, u64, Option<String>) {
        match self.shared.status.lock() {
            Ok(s) => (s.state, s.reconnects, s.last_error.clone()),
            Err(_) => (LinkState::Closed, 0, None),
        }
    }

    /// Connection epoch: increases on every reconnect (gap detection).
    pub fn epoch(&self) -> u64 {
        self.shared.status.lock().map(|s| s.epoch).unwrap_or(0)
    }

    /// Watch that changes on every (re)connect.
    pub fn epoch_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.state_tx.subscribe()
    }

    /// Total messages received on this connection.
    pub fn received(&self) -> u64 {
        self.shared.received.load(Ordering::Relaxed)
    }

    /// Publishes and waits for the outcome. The returned receiver resolves when
    /// the broker acknowledged (or for QoS 0 when written).
    pub fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        qos: u8,
        retain: bool,
        props: Option<V5Props>,
    ) -> Result<oneshot::Receiver<PublishOutcome>, RequestError> {
        if self.stop.is_cancelled() {
            return Err(RequestError::Closed);
        }
        let (tx, rx) = oneshot::channel();
        let mut p = self
            .shared
            .pending
            .lock()
            .map_err(|_| RequestError::Closed)?;
        let sent = match &self.client {
            Client::V4(c) => c
                .try_publish(topic, qos4(qos), retain, payload)
                .map_err(|e| e.to_string()),
            Client::V5(c) => {
                let pp = props.map(|v| r5::mqttbytes::v5::PublishProperties {
                    payload_format_indicator: v.payload_format_indicator,
                    message_expiry_interval: v.message_expiry_interval,
                    response_topic: v.response_topic,
                    correlation_data: v.correlation_data,
                    user_properties: v.user_properties,
                    content_type: v.content_type,
                    ..Default::default()
                });
                match pp {
                    Some(pp) => {
                        c.try_publish_with_properties(topic, qos5(qos), retain, payload, pp)
                    }
                    None => c.try_publish(topic, qos5(qos), retain, payload),
                }
                .map_err(|e| e.to_string())
            }
        };
        match sent {
            Ok(()) => {
                p.pub_fifo.push_back((qos, Some(tx)));
                Ok(rx)
            }
            Err(e) if e.to_lowercase().contains("full") => Err(RequestError::Busy),
            Err(_) => Err(RequestError::Closed),
        }
    }

    /// Registers one route for `filters` and sends SUBSCRIBE for each (also
    /// for filters other routes hold: that makes the broker resend retained
    /// messages for the newcomer). Returns the route and one SUBACK receiver
    /// per filter.
    #[allow(clippy::type_complexity)]
    pub fn subscribe(
        &self,
        filters: &[(String, u8)],
        exclude: &[String],
        depth: usize,
    ) -> Result<(RouteHandle, Vec<oneshot::Receiver<Vec<SubAckCode>>>), RequestError> {
        if self.stop.is_cancelled() {
            return Err(RequestError::Closed);
        }
        if filters
            .iter()
            .any(|(f, _)| super::topic::is_dollar_filter(f))
            && self.shared.dollar_refused.load(Ordering::Relaxed)
        {
            return Err(RequestError::DollarRefused);
        }
        let (tx, rx) = mpsc::channel(depth.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let id = self.shared.next_route.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut r) = self.shared.routes.lock() {
            r.push(Route {
                id,
                filters: filters.iter().map(|(f, _)| f.clone()).collect(),
                exclude: exclude.to_vec(),
                tx,
                dropped: dropped.clone(),
            });
        }
        let mut acks = Vec::with_capacity(filters.len());
        for (filter, qos) in filters {
            let qos = {
                let mut f = self
                    .shared
                    .filters
                    .lock()
                    .map_err(|_| RequestError::Closed)?;
                let e = f.by_filter.entry(filter.clone()).or_insert((*qos, 0));
                e.1 += 1;
                e.0 = e.0.max(*qos);
                e.0
            };
            if super::topic::is_dollar_filter(filter) {
                if let Ok(mut d) = self.shared.dollar_probe.lock() {
                    *d = Some(filter.clone());
                }
            }
            match self.send_subscribe(filter, qos, true) {
                Ok(Some(rx)) => acks.push(rx),
                Ok(None) => {}
                Err(e) => {
                    self.unroute(id);
                    return Err(e);
                }
            }
        }
        Ok((RouteHandle { id, rx, dropped }, acks))
    }

    /// Subscribes and waits for every SUBACK (at most `timeout`). The returned
    /// guard unsubscribes when dropped, so a cancelled call leaves nothing behind.
    pub async fn open_subscription(
        &self,
        filters: &[(String, u8)],
        exclude: &[String],
        depth: usize,
        timeout: Duration,
    ) -> Result<Subscription, SubscribeError> {
        let (handle, acks) = self
            .subscribe(filters, exclude, depth)
            .map_err(SubscribeError::Request)?;
        let mut sub = Subscription {
            conn: self.clone(),
            route: handle,
            granted: Vec::new(),
        };
        let waited = tokio::time::timeout(timeout, async {
            let mut out = Vec::new();
            for rx in acks {
                out.push(rx.await.ok().and_then(|codes| codes.first().copied()));
            }
            out
        })
        .await;
        let codes = match waited {
            Ok(c) => c,
            Err(_) => return Err(SubscribeError::Timeout(timeout.as_millis())),
        };
        for ((filter, _), code) in filters.iter().zip(codes) {
            match code {
                Some(c) => sub.granted.push((filter.clone(), c)),
                None if super::topic::is_dollar_filter(filter)
                    && self.shared.dollar_refused.load(Ordering::Relaxed) =>
                {
                    return Err(SubscribeError::Request(RequestError::DollarRefused))
                }
                None => return Err(SubscribeError::Request(RequestError::Lost)),
            }
        }
        if let Some((f, SubAckCode::Refused(code))) = sub
            .granted
            .iter()
            .find(|(_, c)| matches!(c, SubAckCode::Refused(_)))
        {
            return Err(SubscribeError::Refused {
                filter: f.clone(),
                code: *code,
            });
        }
        Ok(sub)
    }

    fn send_subscribe(
        &self,
        filter: &str,
        qos: u8,
        wait: bool,
    ) -> Result<Option<oneshot::Receiver<Vec<SubAckCode>>>, RequestError> {
        let mut p = self
            .shared
            .pending
            .lock()
            .map_err(|_| RequestError::Closed)?;
        let res = match &self.client {
            Client::V4(c) => c
                .try_subscribe(filter, qos4(qos))
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_subscribe(filter, qos5(qos))
                .map_err(|e| e.to_string()),
        };
        match res {
            Ok(()) => {
                if wait {
                    let (tx, rx) = oneshot::channel();
                    p.sub_fifo.push_back(Some(tx));
                    Ok(Some(rx))
                } else {
                    p.sub_fifo.push_back(None);
                    Ok(None)
                }
            }
            Err(e) if e.to_lowercase().contains("full") => Err(RequestError::Busy),
            Err(_) => Err(RequestError::Closed),
        }
    }

    /// Removes a route; unsubscribes each filter that no other route holds.
    pub fn unroute(&self, id: u64) {
        let filters = {
            let Ok(mut r) = self.shared.routes.lock() else {
                return;
            };
            let Some(pos) = r.iter().position(|x| x.id == id) else {
                return;
            };
            r.remove(pos).filters
        };
        for filter in filters {
            let last = {
                let Ok(mut f) = self.shared.filters.lock() else {
                    return;
                };
                match f.by_filter.get_mut(&filter) {
                    Some(e) if e.1 > 1 => {
                        e.1 -= 1;
                        false
                    }
                    Some(_) => {
                        f.by_filter.remove(&filter);
                        true
                    }
                    None => false,
                }
            };
            if !last || self.stop.is_cancelled() {
                continue;
            }
            let Ok(mut p) = self.shared.pending.lock() else {
                return;
            };
            let res = match &self.client {
                Client::V4(c) => c.try_unsubscribe(filter).is_ok(),
                Client::V5(c) => c.try_unsubscribe(filter).is_ok(),
            };
            if res {
                p.unsub_fifo.push_back(None);
            }
        }
    }

    /// The last `n` messages seen on `topic` by any subscription of this connection.
    pub fn history(&self, topic: &str, n: usize) -> Vec<Arc<Message>> {
        self.shared
            .history
            .lock()
            .map(|h| h.last(topic, n))
            .unwrap_or_default()
    }

    /// Topics seen by this connection: name, messages remembered, latest message.
    pub fn topics_seen(&self) -> Vec<(String, usize, Arc<Message>)> {
        self.shared
            .history
            .lock()
            .map(|h| h.summary())
            .unwrap_or_default()
    }

    /// How many topics this connection has seen.
    pub fn topic_count(&self) -> usize {
        self.shared
            .history
            .lock()
            .map(|h| h.topic_count())
            .unwrap_or(0)
    }

    /// True once the broker dropped us for subscribing to a `$` filter.
    pub fn dollar_refused(&self) -> bool {
        self.shared.dollar_refused.load(Ordering::Relaxed)
    }

    /// Marks `$` filters as refused without trying (the embedded rumqttd drops such clients).
    pub fn refuse_dollar_filters(&self) {
        self.shared.dollar_refused.store(true, Ordering::Relaxed);
    }

    /// Marks this as a connection to the embedded broker (see [`Connection::is_embedded`]).
    pub fn mark_embedded(&self) {
        self.shared.embedded.store(true, Ordering::Relaxed);
        self.refuse_dollar_filters();
    }

    /// True for connections to the embedded rumqttd, whose quirks need guards.
    pub fn is_embedded(&self) -> bool {
        self.shared.embedded.load(Ordering::Relaxed)
    }

    /// True if one of this connection's broker-level filters matches `topic`.
    pub fn subscribed_to(&self, topic: &str) -> bool {
        self.shared
            .filters
            .lock()
            .map(|f| f.by_filter.keys().any(|k| super::topic::matches(k, topic)))
            .unwrap_or(false)
    }

    /// Sends DISCONNECT, waits briefly for it to leave, and stops the task.
    pub async fn close(&self) {
        if let Ok(mut s) = self.shared.status.lock() {
            s.state = LinkState::Closed;
        }
        let _ = match &self.client {
            Client::V4(c) => c.try_disconnect().is_ok(),
            Client::V5(c) => c.try_disconnect().is_ok(),
        };
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(mut task) = task {
            if tokio::time::timeout(Duration::from_millis(300), &mut task)
                .await
                .is_err()
            {
                self.stop.cancel();
                let _ = tokio::time::timeout(Duration::from_millis(200), task).await;
            }
        }
        self.stop.cancel();
        if let Ok(mut r) = self.shared.routes.lock() {
            r.clear();
        }
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.stop.is_cancelled()
    }
}

fn deliver(shared: &Shared, msg: Message) {
    shared.received.fetch_add(1, Ordering::Relaxed);
    if !msg.retain {
        let matching = shared
            .filters
            .lock()
            .map(|f| {
                f.by_filter
                    .keys()
                    .filter(|k| crate::mqtt::topic::matches(k, &msg.topic))
                    .count()
            })
            .unwrap_or(1);
        if matching > 1 {
            let new = shared
                .dedup
                .lock()
                .map(|mut d| {
                    d.admit(
                        &msg.topic,
                        &msg.payload,
                        matching,
                        std::time::Instant::now(),
                    )
                })
                .unwrap_or(true);
            if !new {
                return;
            }
        }
    }
    let msg = Arc::new(msg);
    if let Ok(mut h) = shared.history.lock() {
        h.record(&msg);
    }
    let Ok(routes) = shared.routes.lock() else {
        return;
    };
    for r in routes.iter() {
        if r.filters
            .iter()
            .any(|f| crate::mqtt::topic::matches(f, &msg.topic))
            && !r
                .exclude
                .iter()
                .any(|f| crate::mqtt::topic::matches(f, &msg.topic))
            && r.tx.try_send(msg.clone()).is_err()
        {
            r.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn handle(shared: &Shared, ev: Ev) {
    match ev {
        Ev::Publish(m) => deliver(shared, m),
        Ev::OutPublish(pkid) => {
            let Ok(mut p) = shared.pending.lock() else {
                return;
            };
            if pkid != 0 && p.pub_by_pkid.contains_key(&pkid) {
                return; // retransmission after reconnect
            }
            if let Some((qos, w)) = p.pub_fifo.pop_front() {
                if qos == 0 || pkid == 0 {
                    if let Some(w) = w {
                        let _ = w.send(PublishOutcome::Sent);
                    }
                } else {
                    p.pub_by_pkid.insert(pkid, w);
                }
            }
        }
        Ev::PubAck { pkid, reason } | Ev::PubComp { pkid, reason } => {
            let Ok(mut p) = shared.pending.lock() else {
                return;
            };
            if let Some(Some(w)) = p.pub_by_pkid.remove(&pkid) {
                let _ = w.send(if reason >= 0x80 {
                    PublishOutcome::Rejected {
                        reason_code: reason,
                    }
                } else {
                    PublishOutcome::Acknowledged {
                        reason_code: reason,
                    }
                });
            }
        }
        Ev::PubRec { pkid, reason } if reason >= 0x80 => {
            let Ok(mut p) = shared.pending.lock() else {
                return;
            };
            if let Some(Some(w)) = p.pub_by_pkid.remove(&pkid) {
                let _ = w.send(PublishOutcome::Rejected {
                    reason_code: reason,
                });
            }
        }
        Ev::OutSubscribe(pkid) => {
            let Ok(mut p) = shared.pending.lock() else {
                return;
            };
            if let Some(w) = p.sub_fifo.pop_front() {
                p.sub_by_pkid.insert(pkid, w);
            }
        }
        Ev::SubAck { pkid, codes } => {
            if let Ok(mut d) = shared.dollar_probe.lock() {
                *d = None;
            }
            let Ok(mut p) = shared.pending.lock() else {
                return;
            };
            if let Some(Some(w)) = p.sub_by_pkid.remove(&pkid) {
                let _ = w.send(codes);
            }
        }
        Ev::OutUnsubscribe(pkid) => {
            let Ok(mut p) = shared.pending.lock() else {
                return;
            };
            if let Some(w) = p.unsub_fifo.pop_front() {
                p.unsub_by_pkid.insert(pkid, w);
            }
        }
        Ev::UnsubAck { pkid } => {
            let Ok(mut p) = shared.pending.lock() else {
                return;
            };
            if let Some(Some(w)) = p.unsub_by_pkid.remove(&pkid) {
                let _ = w.send(());
            }
        }
        _ => {}
    }
}

async fn run_loop(
    el: &mut Loop,
    spec: ConnectSpec,
    vault: Arc<Vault>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    conn: Connection,
) {
    let mut attempt: u32 = 0;
    loop {
        let ev = tokio::select! {
            _ = stop.cancelled() => break,
            ev = el.poll() => ev,
        };
        match ev {
            Ok(Ev::ConnAck { .. }) => {
                el.disarm_credentials(&spec);
                attempt = 0;
                let epoch = {
                    let Ok(mut s) = shared.status.lock() else {
                        break;
                    };
                    if s.state == LinkState::Closed {
                        break;
                    }
                    s.state = LinkState::Connected;
                    s.reconnects += 1;
                    s.epoch += 1;
                    s.epoch
                };
                tracing::info!(client_id = %spec.client_id, "reconnected to {}:{}", spec.host, spec.port);
                let _ = shared.state_tx.send(epoch);
                // Clean sessions lose their subscriptions: replay them.
                let filters: Vec<(String, u8)> = shared
                    .filters
                    .lock()
                    .map(|f| f.by_filter.iter().map(|(k, v)| (k.clone(), v.0)).collect())
                    .unwrap_or_default();
                for (f, q) in filters {
                    let _ = conn.send_subscribe(&f, q, false);
                }
            }
            Ok(Ev::Disconnect { reason }) => {
                if let Ok(mut s) = shared.status.lock() {
                    s.last_error = Some(reason);
                }
            }
            Ok(ev) => handle(&shared, ev),
            Err(e) => {
                let closed = {
                    let Ok(mut s) = shared.status.lock() else {
                        break;
                    };
                    if s.state == LinkState::Closed {
                        true
                    } else {
                        s.state = LinkState::Reconnecting;
                        s.last_error = Some(e.to_string());
                        false
                    }
                };
                if closed {
                    break;
                }
                // SUBSCRIBE/UNSUBSCRIBE already written die with the connection:
                // release their waiters (an empty SUBACK means "lost").
                if let Ok(mut p) = shared.pending.lock() {
                    p.sub_by_pkid.clear();
                    p.unsub_by_pkid.clear();
                }
                if let Some(f) = shared.dollar_probe.lock().ok().and_then(|mut d| d.take()) {
                    tracing::warn!("the broker dropped the connection after a subscription to {f:?}; not using $ filters on it again");
                    shared.dollar_refused.store(true, Ordering::Relaxed);
                    if let Ok(mut fs) = shared.filters.lock() {
                        fs.by_filter.remove(&f);
                    }
                }
                tracing::warn!(client_id = %spec.client_id, error = %e, "connection to {}:{} lost; retrying", spec.host, spec.port);
                let wait = backoff(attempt);
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                el.arm_credentials(&spec, &vault);
            }
        }
    }
    el.disarm_credentials(&spec);
    if let Ok(mut s) = shared.status.lock() {
        s.state = LinkState::Closed;
    }
    // Wake every waiter: their requests will never be answered now.
    if let Ok(mut p) = shared.pending.lock() {
        *p = Pending::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(10), Duration::from_millis(5_000));
    }

    #[test]
    fn fallback_only_for_protocol_problems() {
        assert!(worth_fallback(&ConnectError::ClosedBeforeConnAck(
            "x".into()
        )));
        assert!(worth_fallback(&ConnectError::Refused(
            "UnsupportedProtocolVersion".into()
        )));
        assert!(!worth_fallback(&ConnectError::Refused(
            "BadUserNamePassword".into()
        )));
        assert!(!worth_fallback(&ConnectError::Unreachable {
            addr: "x".into(),
            reason: "y".into()
        }));
    }
}
