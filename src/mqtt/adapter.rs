//! The one place where MQTT 5 and 3.1.1 differ: rumqttc's two clients and
//! event loops behind one [`Client`] and one [`Loop`], their events turned
//! into one [`Ev`], their errors into [`ConnectError`]s, and the first
//! connect with its fallback and backoff.

use super::ledger::{HeldKind, HeldRequest};
use super::model::*;
use super::reasons::*;
use crate::secret::Vault;
use bytes::Bytes;
use std::time::{Duration, SystemTime};

use rumqttc::v5 as r5;

/// A request handle of either protocol.
#[derive(Clone)]
pub(crate) enum Client {
    V4(rumqttc::AsyncClient),
    V5(r5::AsyncClient),
}

pub(crate) const REQUEST_CHANNEL: usize = 4096;
/// QoS 1/2 publishes awaiting acknowledgement per connection.
const MAX_INFLIGHT: u16 = 100;
const MAX_PACKET: usize = 256 * 1024 * 1024;

/// Normalised events of both protocol versions.
pub(crate) enum Ev {
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

pub(crate) enum Loop {
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

impl Loop {
    pub(crate) async fn poll(&mut self) -> Result<Ev, ConnectError> {
        match self {
            Loop::V4(el) => {
                // The address is formatted only on error: poll runs per packet.
                let ev = match el.poll().await {
                    Ok(ev) => ev,
                    Err(e) => {
                        let (host, port) = el.mqtt_options.broker_address();
                        let addr = format!("{host}:{port}");
                        let hint = tls_advice(&e);
                        return Err(explain_tls(&addr, hint, map_v4_err(&addr, e)));
                    }
                };
                Ok(ev4(ev))
            }
            Loop::V5(el) => {
                let ev = match el.poll().await {
                    Ok(ev) => ev,
                    Err(e) => {
                        let (host, port) = el.options.broker_address();
                        let addr = format!("{host}:{port}");
                        let hint = tls_advice(&e);
                        return Err(explain_tls(&addr, hint, map_v5_err(&addr, e)));
                    }
                };
                Ok(ev5(ev))
            }
        }
    }

    /// Puts the plaintext password into the options just before a (re)connect.
    pub(crate) fn arm_credentials(&mut self, spec: &ConnectSpec, vault: &Vault) {
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
    pub(crate) fn disarm_credentials(&mut self, spec: &ConnectSpec) {
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

/// A rumqttc 3.1.1 event in the common shape.
fn ev4(ev: rumqttc::Event) -> Ev {
    use rumqttc::{Event, Incoming as I, Outgoing as O};
    match ev {
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
                    rumqttc::SubscribeReasonCode::Success(q) => SubAckCode::Granted(qos_u8(*q)),
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
    }
}

/// A rumqttc MQTT 5 event in the common shape.
fn ev5(ev: r5::Event) -> Ev {
    use r5::mqttbytes::v5::Packet as P;
    use r5::Event;
    use rumqttc::Outgoing as O;
    match ev {
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
    }
}

/// What rumqttc had pending when the connection dropped, taken out of its
/// hands so that a new session cannot silently discard it (see `ledger`).
pub(crate) enum Held {
    /// 3.1.1 requests.
    V4(Vec<rumqttc::Request>),
    /// MQTT 5 requests.
    V5(Vec<r5::Request>),
}

impl HeldRequest for rumqttc::Request {
    fn kind(&self) -> HeldKind {
        use rumqttc::Request as R;
        match self {
            R::Publish(p) if p.pkid != 0 => HeldKind::InFlightPublish(p.pkid),
            R::Publish(_) => HeldKind::UnsentPublish,
            R::PubRel(r) => HeldKind::InFlightRelease(r.pkid),
            R::Subscribe(_) => HeldKind::UnsentSubscribe,
            R::Unsubscribe(_) => HeldKind::UnsentUnsubscribe,
            R::Disconnect(_) => HeldKind::UnsentDisconnect,
            _ => HeldKind::Other,
        }
    }

    fn mark_duplicate(&mut self) {
        if let rumqttc::Request::Publish(p) = self {
            p.dup = true;
        }
    }
}

impl HeldRequest for r5::Request {
    fn kind(&self) -> HeldKind {
        use r5::Request as R;
        match self {
            R::Publish(p) if p.pkid != 0 => HeldKind::InFlightPublish(p.pkid),
            R::Publish(_) => HeldKind::UnsentPublish,
            R::PubRel(r) => HeldKind::InFlightRelease(r.pkid),
            R::Subscribe(_) => HeldKind::UnsentSubscribe,
            R::Unsubscribe(_) => HeldKind::UnsentUnsubscribe,
            R::Disconnect => HeldKind::UnsentDisconnect,
            _ => HeldKind::Other,
        }
    }

    fn mark_duplicate(&mut self) {
        if let r5::Request::Publish(p) = self {
            p.dup = true;
        }
    }
}

/// rumqttc's channel did not take a request. rumqttc reports a full and a
/// closed channel alike (`ClientError::TryRequest`), so the handle, which
/// knows whether its event task is alive, decides which it was.
#[derive(Debug)]
pub(crate) struct ChannelRefused;

fn request_error(_: rumqttc::ClientError) -> ChannelRefused {
    ChannelRefused
}

fn request_error5(_: r5::ClientError) -> ChannelRefused {
    ChannelRefused
}

impl Client {
    /// Queues a publish without waiting.
    pub(crate) fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        qos: u8,
        retain: bool,
        props: Option<V5Props>,
    ) -> Result<(), ChannelRefused> {
        match self {
            Client::V4(c) => c
                .try_publish(topic, qos4(qos), retain, payload)
                .map_err(request_error),
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
                .map_err(request_error5)
            }
        }
    }

    /// Queues a SUBSCRIBE for one filter.
    pub(crate) fn subscribe(&self, filter: &str, qos: u8) -> Result<(), ChannelRefused> {
        match self {
            Client::V4(c) => c.try_subscribe(filter, qos4(qos)).map_err(request_error),
            Client::V5(c) => c.try_subscribe(filter, qos5(qos)).map_err(request_error5),
        }
    }

    /// Queues an UNSUBSCRIBE for one filter.
    pub(crate) fn unsubscribe(&self, filter: &str) -> Result<(), ChannelRefused> {
        match self {
            Client::V4(c) => c.try_unsubscribe(filter).map_err(request_error),
            Client::V5(c) => c.try_unsubscribe(filter).map_err(request_error5),
        }
    }

    /// Queues a DISCONNECT.
    pub(crate) fn disconnect(&self) -> Result<(), ChannelRefused> {
        match self {
            Client::V4(c) => c.try_disconnect().map_err(request_error),
            Client::V5(c) => c.try_disconnect().map_err(request_error5),
        }
    }
}

/// Puts a never-sent 3.1.1 request back into the channel, as it was.
fn resubmit4(c: &rumqttc::AsyncClient, r: rumqttc::Request) -> bool {
    use rumqttc::Request as R;
    match r {
        R::Publish(p) => c.try_publish(p.topic, p.qos, p.retain, p.payload).is_ok(),
        R::Subscribe(s) => c.try_subscribe_many(s.filters).is_ok(),
        R::Unsubscribe(u) => u.topics.into_iter().all(|t| c.try_unsubscribe(t).is_ok()),
        R::Disconnect(_) => c.try_disconnect().is_ok(),
        _ => false,
    }
}

/// Puts a never-sent MQTT 5 request back into the channel, as it was.
fn resubmit5(c: &r5::AsyncClient, r: r5::Request) -> bool {
    use r5::Request as R;
    match r {
        R::Publish(p) => {
            let topic = String::from_utf8_lossy(&p.topic).into_owned();
            match p.properties {
                Some(pp) => c
                    .try_publish_with_properties(topic, p.qos, p.retain, p.payload, pp)
                    .is_ok(),
                None => c.try_publish(topic, p.qos, p.retain, p.payload).is_ok(),
            }
        }
        R::Subscribe(s) => c.try_subscribe_many(s.filters).is_ok(),
        R::Unsubscribe(u) => u.filters.into_iter().all(|t| c.try_unsubscribe(t).is_ok()),
        R::Disconnect => c.try_disconnect().is_ok(),
        _ => false,
    }
}

impl Loop {
    /// Events rumqttc produced on a connection that has just dropped but
    /// not yet handed out: they happened before the drop and must be applied
    /// before it.
    pub(crate) fn drain_events(&mut self) -> Vec<Ev> {
        match self {
            Loop::V4(el) => el.state.events.drain(..).map(ev4).collect(),
            Loop::V5(el) => el.state.events.drain(..).map(ev5).collect(),
        }
    }

    /// Takes what rumqttc would re-send (or, on a new session, silently drop)
    /// after the reconnect, appending to what is already held.
    pub(crate) fn take_pending(&mut self, held: &mut Option<Held>) {
        match (self, held) {
            (Loop::V4(el), Some(Held::V4(h))) => h.extend(el.pending.drain(..)),
            (Loop::V5(el), Some(Held::V5(h))) => h.extend(el.pending.drain(..)),
            (Loop::V4(el), slot) => *slot = Some(Held::V4(el.pending.drain(..).collect())),
            (Loop::V5(el), slot) => *slot = Some(Held::V5(el.pending.drain(..).collect())),
        }
    }

    /// After a CONNACK that follows a drop: lets the ledger decide what is
    /// re-sent (rumqttc's pending list), what goes back through the channel,
    /// and which publish waiters are resolved now. Later reconnects resume
    /// the broker session when it has an expiry.
    pub(crate) fn resume<P, S, U>(
        &mut self,
        client: &Client,
        session_present: bool,
        held: Option<Held>,
        ledger: &mut super::ledger::Ledger<P, S, U>,
    ) -> Vec<super::ledger::Resolution<P>> {
        match (self, client) {
            (Loop::V4(el), Client::V4(c)) => {
                let held = match held {
                    Some(Held::V4(h)) => h,
                    _ => Vec::new(),
                };
                let collision = el.state.collision.take().map(rumqttc::Request::Publish);
                let r = ledger.reconnected(session_present, held, collision, |q| resubmit4(c, q));
                let later = std::mem::take(&mut el.pending);
                el.pending = r.pending.into_iter().chain(later).collect();
                r.resolved
            }
            (Loop::V5(el), Client::V5(c)) => {
                let held = match held {
                    Some(Held::V5(h)) => h,
                    _ => Vec::new(),
                };
                let collision = el.state.collision.take().map(r5::Request::Publish);
                let r = ledger.reconnected(session_present, held, collision, |q| resubmit5(c, q));
                let later = std::mem::take(&mut el.pending);
                el.pending = r.pending.into_iter().chain(later).collect();
                r.resolved
            }
            // A client and loop of different protocols are never built together.
            _ => Vec::new(),
        }
    }

    /// From now on, reconnects ask the broker to resume the session (MQTT 5
    /// with a session expiry): the first connect started a clean one.
    pub(crate) fn resume_sessions_from_now(&mut self) {
        if let Loop::V5(el) = self {
            if el.options.session_expiry_interval().is_some_and(|s| s > 0) {
                el.options.set_clean_start(false);
            }
        }
    }
}

pub(crate) fn build(
    spec: &ConnectSpec,
    protocol: Protocol,
    transport: &rumqttc::Transport,
) -> (Client, Loop) {
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
                .set_session_expiry_interval(spec.session_expiry)
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

pub(crate) async fn first_connack(
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
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(6)).min(5_000))
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
}
