//! What MQTT 5 and 3.1.1 share, written once: a [`Wire`] says what differs
//! in rumqttc's two implementations (`wire_v4.rs`, `wire_v5.rs`); the event
//! loop wrapper [`Loop`], the first connect and the reconnect hand-over to
//! the ledger are generic over it. The handle's [`Client`] picks a wire.

use super::ledger::{HeldRequest, Ledger, Resolution};
use super::model::*;
use super::wire_v4::V4;
use super::wire_v5::V5;
use crate::secret::Vault;
use bytes::Bytes;
use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

/// Capacity of rumqttc's request channel.
pub(crate) const REQUEST_CHANNEL: usize = 4096;
/// QoS 1/2 publishes awaiting acknowledgement per connection.
pub(crate) const MAX_INFLIGHT: u16 = 100;
/// Largest packet accepted or sent.
pub(crate) const MAX_PACKET: usize = 256 * 1024 * 1024;

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

/// A payload that owns its memory: rumqttc hands out slices of its read
/// buffer, and keeping one small message alive would pin the whole buffer.
pub(crate) fn own(b: Bytes) -> Bytes {
    if b.len() < 64 * 1024 {
        Bytes::copy_from_slice(&b)
    } else {
        b
    }
}

/// What differs between rumqttc's MQTT 3.1.1 and MQTT 5 implementations.
/// Everything else is written once, generic over it.
pub(crate) trait Wire: Send + 'static {
    /// rumqttc's request handle.
    type Client: Clone + Send + Sync + 'static;
    /// rumqttc's event loop.
    type EventLoop: Send + 'static;
    /// A request as rumqttc queues it.
    type Request: HeldRequest + Send + 'static;
    /// The protocol this wire speaks.
    const PROTOCOL: Protocol;

    /// The handle and event loop for `spec`, not yet connected.
    fn build(spec: &ConnectSpec, transport: &rumqttc::Transport)
        -> (Self::Client, Self::EventLoop);
    /// The next event, in the common shape; errors with advice.
    fn poll(el: &mut Self::EventLoop) -> impl Future<Output = Result<Ev, ConnectError>> + Send;
    /// Sets the credentials of the next CONNECT.
    fn set_credentials(el: &mut Self::EventLoop, user: &str, pass: &str);
    /// Events produced but not yet handed out (see [`Loop::drain_events`]).
    fn drain_events(el: &mut Self::EventLoop) -> Vec<Ev>;
    /// rumqttc's pending list (sent before its channel).
    fn pending(el: &mut Self::EventLoop) -> &mut VecDeque<Self::Request>;
    /// The publish rumqttc parked because its packet id was busy.
    fn take_collision(el: &mut Self::EventLoop) -> Option<Self::Request>;
    /// Reconnects resume the broker session from now on, if the protocol can.
    fn resume_sessions_from_now(_el: &mut Self::EventLoop) {}
    /// Puts a never-sent request back into the channel as it was.
    fn resubmit(c: &Self::Client, r: Self::Request) -> bool;
    /// Queues a publish; false when the channel refused it.
    fn publish(
        c: &Self::Client,
        topic: &str,
        payload: Bytes,
        qos: u8,
        retain: bool,
        props: Option<V5Props>,
    ) -> bool;
    /// Queues a SUBSCRIBE for one filter.
    fn subscribe(c: &Self::Client, filter: &str, qos: u8) -> bool;
    /// Queues an UNSUBSCRIBE for one filter.
    fn unsubscribe(c: &Self::Client, filter: &str) -> bool;
    /// Queues a DISCONNECT.
    fn disconnect(c: &Self::Client) -> bool;
}

/// The [`Wire`] methods both wires write alike: rumqttc's two `EventLoop`s
/// and `AsyncClient`s have the same fields and methods under different
/// types (and name their options field differently), which no trait bound
/// can reach. Expanded inside each `impl Wire`, with the options field, the
/// error mapping of [`super::reasons`] and the request type; `event`, `qos`
/// and the TLS helpers are the wire module's own.
macro_rules! event_loop_access {
    ($options:ident, $map_err:ident, $($request:ident)::+) => {
        async fn poll(el: &mut Self::EventLoop) -> Result<Ev, ConnectError> {
            match el.poll().await {
                Ok(ev) => Ok(event(ev)),
                Err(e) => {
                    // The address is formatted only on error: poll runs per packet.
                    let (host, port) = el.$options.broker_address();
                    let addr = format!("{host}:{port}");
                    let hint = tls_advice(&e);
                    Err(explain_tls(&addr, hint, $map_err(&addr, e)))
                }
            }
        }

        fn set_credentials(el: &mut Self::EventLoop, user: &str, pass: &str) {
            el.$options.set_credentials(user, pass);
        }

        fn drain_events(el: &mut Self::EventLoop) -> Vec<Ev> {
            el.state.events.drain(..).map(event).collect()
        }

        fn pending(el: &mut Self::EventLoop) -> &mut VecDeque<Self::Request> {
            &mut el.pending
        }

        fn take_collision(el: &mut Self::EventLoop) -> Option<Self::Request> {
            el.state.collision.take().map($($request)::+::Publish)
        }

        fn subscribe(c: &Self::Client, filter: &str, q: u8) -> bool {
            c.try_subscribe(filter, qos(q)).is_ok()
        }

        fn unsubscribe(c: &Self::Client, filter: &str) -> bool {
            c.try_unsubscribe(filter).is_ok()
        }

        fn disconnect(c: &Self::Client) -> bool {
            c.try_disconnect().is_ok()
        }
    };
}
pub(crate) use event_loop_access;

/// [`HeldRequest`] for one of rumqttc's two `Request` enums (same variant
/// names, different types).
macro_rules! held_request {
    ($($request:ident)::+) => {
        impl HeldRequest for $($request)::+ {
            fn kind(&self) -> HeldKind {
                use $($request)::+ as R;
                match self {
                    R::Publish(p) if p.pkid != 0 => HeldKind::InFlightPublish(p.pkid),
                    R::Publish(_) => HeldKind::UnsentPublish,
                    R::PubRel(r) => HeldKind::InFlightRelease(r.pkid),
                    R::Subscribe(_) => HeldKind::UnsentSubscribe,
                    R::Unsubscribe(_) => HeldKind::UnsentUnsubscribe,
                    // A tuple variant in 3.1.1, a unit variant in 5.
                    R::Disconnect { .. } => HeldKind::UnsentDisconnect,
                    _ => HeldKind::Other,
                }
            }

            fn mark_duplicate(&mut self) {
                if let $($request)::+::Publish(p) = self {
                    p.dup = true;
                }
            }
        }
    };
}
pub(crate) use held_request;

/// What the connection wrote, in the common shape (both protocols report it
/// with rumqttc's one `Outgoing` type).
pub(crate) fn outgoing(o: rumqttc::Outgoing) -> Ev {
    use rumqttc::Outgoing as O;
    match o {
        O::Publish(p) => Ev::OutPublish(p),
        O::Subscribe(p) => Ev::OutSubscribe(p),
        O::Unsubscribe(p) => Ev::OutUnsubscribe(p),
        _ => Ev::Other,
    }
}

/// A request handle of either protocol.
#[derive(Clone)]
pub(crate) enum Client {
    V4(<V4 as Wire>::Client),
    V5(<V5 as Wire>::Client),
}

/// rumqttc's channel did not take a request. rumqttc reports a full and a
/// closed channel alike (`ClientError::TryRequest`), so the handle, which
/// knows whether its event task is alive, decides which it was.
#[derive(Debug)]
pub(crate) struct ChannelRefused;

fn accepted(ok: bool) -> Result<(), ChannelRefused> {
    if ok {
        Ok(())
    } else {
        Err(ChannelRefused)
    }
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
        accepted(match self {
            Client::V4(c) => V4::publish(c, topic, payload, qos, retain, props),
            Client::V5(c) => V5::publish(c, topic, payload, qos, retain, props),
        })
    }

    /// Queues a SUBSCRIBE for one filter.
    pub(crate) fn subscribe(&self, filter: &str, qos: u8) -> Result<(), ChannelRefused> {
        accepted(match self {
            Client::V4(c) => V4::subscribe(c, filter, qos),
            Client::V5(c) => V5::subscribe(c, filter, qos),
        })
    }

    /// Queues an UNSUBSCRIBE for one filter.
    pub(crate) fn unsubscribe(&self, filter: &str) -> Result<(), ChannelRefused> {
        accepted(match self {
            Client::V4(c) => V4::unsubscribe(c, filter),
            Client::V5(c) => V5::unsubscribe(c, filter),
        })
    }

    /// Queues a DISCONNECT.
    pub(crate) fn disconnect(&self) -> Result<(), ChannelRefused> {
        accepted(match self {
            Client::V4(c) => V4::disconnect(c),
            Client::V5(c) => V5::disconnect(c),
        })
    }
}

/// rumqttc's event loop, with what it had pending at the last drop held
/// until the next CONNACK says whether the broker kept the session.
pub(crate) struct Loop<W: Wire> {
    /// rumqttc's event loop.
    el: W::EventLoop,
    /// rumqttc's request handle, for requests that go back into its channel.
    client: W::Client,
    /// Taken from rumqttc at drops (see `ledger`).
    held: Vec<W::Request>,
}

impl<W: Wire> Loop<W> {
    /// The handle and the loop for `spec`, not yet connected.
    pub(crate) fn build(spec: &ConnectSpec, transport: &rumqttc::Transport) -> (W::Client, Self) {
        let (client, el) = W::build(spec, transport);
        let lp = Loop {
            el,
            client: client.clone(),
            held: Vec::new(),
        };
        (client, lp)
    }

    /// The next event; connects first when the connection is down.
    pub(crate) async fn poll(&mut self) -> Result<Ev, ConnectError> {
        W::poll(&mut self.el).await
    }

    /// Puts the plaintext password into the options just before a (re)connect.
    pub(crate) fn arm_credentials(&mut self, spec: &ConnectSpec, vault: &Vault) {
        let Some(user) = &spec.username else { return };
        let pass = spec.password.as_ref().and_then(|s| vault.open(s).ok());
        let pass = pass.as_ref().map(|p| p.expose()).unwrap_or("");
        W::set_credentials(&mut self.el, user, pass);
    }

    /// Overwrites the stored password once the broker accepted it.
    pub(crate) fn disarm_credentials(&mut self, spec: &ConnectSpec) {
        if let Some(user) = &spec.username {
            W::set_credentials(&mut self.el, user, "");
        }
    }

    /// Events rumqttc produced on a connection that has just dropped but
    /// not yet handed out: they happened before the drop and must be applied
    /// before it.
    pub(crate) fn drain_events(&mut self) -> Vec<Ev> {
        W::drain_events(&mut self.el)
    }

    /// Takes what rumqttc would re-send (or, on a new session, silently drop)
    /// after the reconnect.
    pub(crate) fn take_pending(&mut self) {
        let pending = W::pending(&mut self.el);
        self.held.extend(pending.drain(..));
    }

    /// After a CONNACK that follows a drop: lets the ledger decide what is
    /// re-sent (rumqttc's pending list), what goes back through the channel,
    /// and which publish waiters are resolved now.
    pub(crate) fn resume<P, S, U>(
        &mut self,
        session_present: bool,
        ledger: &mut Ledger<P, S, U>,
    ) -> Vec<Resolution<P>> {
        let held = std::mem::take(&mut self.held);
        let collision = W::take_collision(&mut self.el);
        let client = &self.client;
        let r = ledger.reconnected(session_present, held, collision, |q| W::resubmit(client, q));
        let pending = W::pending(&mut self.el);
        let later = std::mem::take(pending);
        *pending = r.pending.into_iter().chain(later).collect();
        r.resolved
    }

    /// From now on, reconnects ask the broker to resume the session (MQTT 5
    /// with a session expiry): the first connect started a clean one.
    pub(crate) fn resume_sessions_from_now(&mut self) {
        W::resume_sessions_from_now(&mut self.el);
    }

    /// Connects and waits for the first CONNACK (at most the spec's deadline).
    pub(crate) async fn first_connack(
        &mut self,
        spec: &ConnectSpec,
        vault: &Vault,
    ) -> Result<bool, ConnectError> {
        self.arm_credentials(spec, vault);
        let fut = async {
            loop {
                if let Ev::ConnAck { session_present } = self.poll().await? {
                    return Ok(session_present);
                }
            }
        };
        let res = match tokio::time::timeout(spec.connect_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout {
                addr: format!("{}:{}", spec.host, spec.port),
                ms: spec.connect_timeout.as_millis(),
            }),
        };
        self.disarm_credentials(spec);
        res.map_err(|e| match e {
            ConnectError::Timeout { addr, .. } => ConnectError::Timeout {
                addr,
                ms: spec.connect_timeout.as_millis(),
            },
            e => e,
        })
    }
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
