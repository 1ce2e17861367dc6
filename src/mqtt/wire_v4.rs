//! MQTT 3.1.1 through rumqttc's `v4` client: one of the two [`Wire`]s.

use super::adapter::{
    event_loop_access, held_request, outgoing, own, Ev, Wire, MAX_INFLIGHT, MAX_PACKET,
    REQUEST_CHANNEL,
};
use super::ledger::{HeldKind, HeldRequest};
use super::model::*;
use super::reasons::*;
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::SystemTime;

/// rumqttc's MQTT 3.1.1 implementation.
pub(crate) struct V4;

fn qos_u8(q: rumqttc::QoS) -> u8 {
    q as u8
}

fn qos(q: u8) -> rumqttc::QoS {
    match q {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

impl Wire for V4 {
    type Client = rumqttc::AsyncClient;
    type EventLoop = rumqttc::EventLoop;
    type Request = rumqttc::Request;
    const PROTOCOL: Protocol = Protocol::V311;

    fn build(
        spec: &ConnectSpec,
        transport: &rumqttc::Transport,
    ) -> (Self::Client, Self::EventLoop) {
        let mut o = rumqttc::MqttOptions::new(spec.client_id.clone(), spec.host.clone(), spec.port);
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
        (c, el)
    }

    event_loop_access!(mqtt_options, map_v4_err, rumqttc::Request);

    fn resubmit(c: &Self::Client, r: Self::Request) -> bool {
        use rumqttc::Request as R;
        match r {
            R::Publish(p) => c.try_publish(p.topic, p.qos, p.retain, p.payload).is_ok(),
            R::Subscribe(s) => c.try_subscribe_many(s.filters).is_ok(),
            R::Unsubscribe(u) => u.topics.into_iter().all(|t| c.try_unsubscribe(t).is_ok()),
            R::Disconnect(_) => c.try_disconnect().is_ok(),
            _ => false,
        }
    }

    fn publish(
        c: &Self::Client,
        topic: &str,
        payload: Bytes,
        q: u8,
        retain: bool,
        _props: Option<V5Props>,
    ) -> bool {
        c.try_publish(topic, qos(q), retain, payload).is_ok()
    }
}

/// A rumqttc 3.1.1 event in the common shape.
fn event(ev: rumqttc::Event) -> Ev {
    use rumqttc::{Event, Incoming as I};
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
        Event::Outgoing(o) => outgoing(o),
        _ => Ev::Other,
    }
}

held_request!(rumqttc::Request);
