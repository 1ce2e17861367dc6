//! One broker connection: a task that owns the rumqttc event loop (MQTT 5 or
//! 3.1.1) and a cloneable handle that tools use to publish and subscribe.
//!
//! Which request waits for which acknowledgement is decided by
//! [`super::ledger`]; every request enters rumqttc's channel under the same
//! lock as its waiter enters the ledger, so both keep one order. The event
//! task feeds the ledger every outgoing event and ack, and hands it control
//! of rumqttc's pending requests at each drop and reconnect.

use super::adapter::{Client, Loop, Wire};
use super::ledger::{Ledger, Resolution};
use super::wire_v4::V4;
use super::wire_v5::V5;
use crate::secret::Vault;
use crate::sync::lock;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use super::model::*;

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
pub(super) struct Route {
    /// Route id (one per subscriber).
    pub(super) id: u64,
    /// The MQTT filters to match topics against (shared subscriptions by inner filter).
    pub(super) filters: Vec<String>,
    /// Topics matching these filters are never delivered (policy denies).
    pub(super) exclude: Vec<String>,
    /// Bounded delivery channel; full means the subscriber is slow.
    pub(super) tx: mpsc::Sender<Arc<Message>>,
    /// Messages that did not fit into `tx`.
    pub(super) dropped: Arc<AtomicU64>,
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

/// The ledger with the waiters the tools hold: an outcome per publish, the
/// reason codes per SUBSCRIBE, nothing but the arrival of an UNSUBACK.
pub(super) type Waits =
    Ledger<oneshot::Sender<PublishOutcome>, oneshot::Sender<Vec<SubAckCode>>, oneshot::Sender<()>>;

/// MQTT 5 session expiry asked for on external brokers: long enough to ride
/// out a broker restart, short enough that the sessions of ended processes
/// (whose client ids are random) do not pile up on the broker.
pub const SESSION_EXPIRY_SECS: u32 = 120;

/// Sends each resolved outcome to its waiter (a waiter that gave up is fine).
pub(super) fn resolve(done: Vec<Resolution<oneshot::Sender<PublishOutcome>>>) {
    for (w, outcome) in done {
        let _ = w.send(outcome);
    }
}

/// The link as the tools see it.
pub(super) struct Status {
    pub(super) state: LinkState,
    pub(super) reconnects: u64,
    pub(super) last_error: Option<String>,
    /// Bumped on every (re)connect so subscribers can detect gaps.
    pub(super) epoch: u64,
}

/// Broker-side subscriptions, reference-counted per filter, replayed on reconnect.
#[derive(Default)]
pub(super) struct Filters {
    pub(super) by_filter: HashMap<String, (u8, usize)>,
}

/// What the handle and the event task share.
pub(super) struct Shared {
    /// Who waits for which acknowledgement; also the lock that keeps the
    /// channel order and the ledger order the same.
    pub(super) pending: Mutex<Waits>,
    pub(super) status: Mutex<Status>,
    pub(super) routes: Mutex<Vec<Route>>,
    pub(super) filters: Mutex<Filters>,
    pub(super) next_route: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) state_tx: tokio::sync::watch::Sender<u64>,
    /// Recent messages per topic (for `topic_history`).
    pub(super) history: Mutex<super::history::History>,
    /// A `$` filter whose SUBACK is outstanding; if the broker drops us
    /// meanwhile (rumqttd does), the filter is not replayed and `$` filters
    /// are refused from then on.
    pub(super) dollar_probe: Mutex<Option<String>>,
    /// Set once the broker dropped us for a `$` filter.
    pub(super) dollar_refused: std::sync::atomic::AtomicBool,
    /// Swallows the extra copies that overlapping subscriptions cause.
    pub(super) dedup: Mutex<super::dedup::Dedup>,
    /// A connection to the embedded rumqttd.
    pub(super) embedded: std::sync::atomic::AtomicBool,
}

/// A live broker connection. Cheap to clone; the last clone does not close it:
/// call [`Connection::close`].
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    pub(super) client: Client,
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

impl Connection {
    /// Connects (with fallback to 3.1.1 when allowed) and spawns the event task.
    /// Returns only after CONNACK.
    pub async fn connect(
        spec: ConnectSpec,
        vault: Arc<Vault>,
    ) -> Result<(Connection, Connected), ConnectError> {
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
        if spec.protocol == Protocol::V5 {
            let (c, mut el) = Loop::<V5>::build(&spec, &transport);
            match el.first_connack(&spec, &vault).await {
                Ok(sp) => return Ok(Self::start(el, Client::V5(c), spec, vault, false, sp)),
                Err(e) if spec.allow_fallback && super::reasons::worth_fallback(&e) => {
                    tracing::debug!(error = %e, "MQTT 5 refused; trying 3.1.1");
                }
                Err(e) => return Err(e),
            }
        }
        let fell_back = spec.protocol == Protocol::V5;
        let (c, mut el) = Loop::<V4>::build(&spec, &transport);
        let sp = el.first_connack(&spec, &vault).await?;
        Ok(Self::start(el, Client::V4(c), spec, vault, fell_back, sp))
    }

    /// Spawns the event task of a connection whose first CONNACK arrived.
    fn start<W: Wire>(
        mut el: Loop<W>,
        client: Client,
        spec: ConnectSpec,
        vault: Arc<Vault>,
        fell_back: bool,
        session_present: bool,
    ) -> (Connection, Connected) {
        el.resume_sessions_from_now();
        let (state_tx, _) = tokio::sync::watch::channel(1);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Waits::default()),
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
            client,
            protocol: W::PROTOCOL,
            stop: stop.clone(),
            task: Arc::new(Mutex::new(None)),
        };
        let resub = conn.clone();
        let task = tokio::spawn(async move {
            super::task::run_loop(&mut el, spec, vault, shared, stop, resub).await;
        });
        *lock(&conn.task) = Some(task);
        (
            conn,
            Connected {
                protocol: W::PROTOCOL,
                fell_back,
                session_present,
            },
        )
    }

    /// The protocol in use.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// State, reconnect count and last error.
    pub fn status(&self) -> (LinkState, u64, Option<String>) {
        let s = lock(&self.shared.status);
        (s.state, s.reconnects, s.last_error.clone())
    }

    /// Connection epoch: increases on every reconnect (gap detection).
    pub fn epoch(&self) -> u64 {
        lock(&self.shared.status).epoch
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
        let mut p = lock(&self.shared.pending);
        self.client
            .publish(topic, payload, qos, retain, props)
            .map_err(|_| self.refused())?;
        p.publishes.submitted(qos, Some(tx));
        Ok(rx)
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
        lock(&self.shared.routes).push(Route {
            id,
            filters: filters.iter().map(|(f, _)| f.clone()).collect(),
            exclude: exclude.to_vec(),
            tx,
            dropped: dropped.clone(),
        });
        let mut acks = Vec::with_capacity(filters.len());
        for (filter, qos) in filters {
            let qos = {
                let mut f = lock(&self.shared.filters);
                let e = f.by_filter.entry(filter.clone()).or_insert((*qos, 0));
                e.1 += 1;
                e.0 = e.0.max(*qos);
                e.0
            };
            if super::topic::is_dollar_filter(filter) {
                *lock(&self.shared.dollar_probe) = Some(filter.clone());
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

    pub(super) fn send_subscribe(
        &self,
        filter: &str,
        qos: u8,
        wait: bool,
    ) -> Result<Option<oneshot::Receiver<Vec<SubAckCode>>>, RequestError> {
        let mut p = lock(&self.shared.pending);
        self.client
            .subscribe(filter, qos)
            .map_err(|_| self.refused())?;
        if wait {
            let (tx, rx) = oneshot::channel();
            p.subscribes.submitted(Some(tx));
            Ok(Some(rx))
        } else {
            p.subscribes.submitted(None);
            Ok(None)
        }
    }

    /// Removes a route; unsubscribes each filter that no other route holds.
    pub fn unroute(&self, id: u64) {
        let filters = {
            let mut r = lock(&self.shared.routes);
            let Some(pos) = r.iter().position(|x| x.id == id) else {
                return;
            };
            r.remove(pos).filters
        };
        for filter in filters {
            let last = {
                let mut f = lock(&self.shared.filters);
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
            let mut p = lock(&self.shared.pending);
            if self.client.unsubscribe(&filter).is_ok() {
                p.unsubscribes.submitted(None);
            }
        }
    }

    /// The last `n` messages seen on `topic` by any subscription of this connection.
    pub fn history(&self, topic: &str, n: usize) -> Vec<Arc<Message>> {
        lock(&self.shared.history).last(topic, n)
    }

    /// Topics seen by this connection: name, messages remembered, latest message.
    pub fn topics_seen(&self) -> Vec<(String, usize, Arc<Message>)> {
        lock(&self.shared.history).summary()
    }

    /// How many topics this connection has seen.
    pub fn topic_count(&self) -> usize {
        lock(&self.shared.history).topic_count()
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
        lock(&self.shared.filters)
            .by_filter
            .keys()
            .any(|k| super::topic::matches(k, topic))
    }

    /// Sends DISCONNECT, waits briefly for it to leave, and stops the task.
    pub async fn close(&self) {
        lock(&self.shared.status).state = LinkState::Closed;
        let _ = self.client.disconnect();
        let task = lock(&self.task).take();
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
        lock(&self.shared.routes).clear();
    }

    /// Why rumqttc's channel refused a request: while the event task runs it
    /// can only have been full.
    fn refused(&self) -> RequestError {
        let running = lock(&self.task).as_ref().is_some_and(|t| !t.is_finished());
        if self.stop.is_cancelled() || !running {
            RequestError::Closed
        } else {
            RequestError::Busy
        }
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.stop.is_cancelled()
    }
}
