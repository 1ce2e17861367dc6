//! MQTT 5 through rumqttc's `v5` client: one of the two [`Wire`]s.

use super::adapter::{
    event_loop_access, held_request, outgoing, own, Ev, Wire, MAX_INFLIGHT, MAX_PACKET,
    REQUEST_CHANNEL,
};
use super::ledger::{HeldKind, HeldRequest};
use super::model::*;
use super::reasons::*;
use bytes::Bytes;
use rumqttc::v5 as r5;
use std::collections::VecDeque;
use std::time::SystemTime;

/// rumqttc's MQTT 5 implementation.
pub(crate) struct V5;

fn qos(q: u8) -> r5::mqttbytes::QoS {
    match q {
        0 => r5::mqttbytes::QoS::AtMostOnce,
        1 => r5::mqttbytes::QoS::AtLeastOnce,
        _ => r5::mqttbytes::QoS::ExactlyOnce,
    }
}

impl Wire for V5 {
    type Client = r5::AsyncClient;
    type EventLoop = r5::EventLoop;
    type Request = r5::Request;
    const PROTOCOL: Protocol = Protocol::V5;

    fn build(
        spec: &ConnectSpec,
        transport: &rumqttc::Transport,
    ) -> (Self::Client, Self::EventLoop) {
        let mut o = r5::MqttOptions::new(spec.client_id.clone(), spec.host.clone(), spec.port);
        o.set_keep_alive(spec.keep_alive)
            .set_clean_start(
                spec.clean_start && !(spec.fresh_client_id && spec.session_expiry.is_some()),
            )
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
        r5::AsyncClient::new(o, REQUEST_CHANNEL)
    }

    event_loop_access!(options, map_v5_err, r5::Request);

    fn resume_sessions_from_now(el: &mut Self::EventLoop) {
        if el.options.session_expiry_interval().is_some_and(|s| s > 0) {
            el.options.set_clean_start(false);
        }
    }

    fn resubmit(c: &Self::Client, r: Self::Request) -> bool {
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

    fn publish(
        c: &Self::Client,
        topic: &str,
        payload: Bytes,
        q: u8,
        retain: bool,
        props: Option<V5Props>,
    ) -> bool {
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
            Some(pp) => c.try_publish_with_properties(topic, qos(q), retain, payload, pp),
            None => c.try_publish(topic, qos(q), retain, payload),
        }
        .is_ok()
    }
}

/// A rumqttc MQTT 5 event in the common shape.
fn event(ev: r5::Event) -> Ev {
    use r5::mqttbytes::v5::Packet as P;
    use r5::Event;
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
        Event::Outgoing(o) => outgoing(o),
        _ => Ev::Other,
    }
}

held_request!(r5::Request);
