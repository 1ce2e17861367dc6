//! The event task of one connection: it owns rumqttc's event loop, applies
//! every event to the shared state, and carries the ledger across drops
//! and reconnects (see [`super::ledger`] for why it must).

use super::adapter::{self, Ev, Loop, Wire};
use super::client::{resolve, Connection, Shared};
use super::ledger::Ack;
use super::model::*;
use crate::secret::Vault;
use crate::sync::lock;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Hands one message to every route whose filters match it (once each).
pub(super) fn deliver(shared: &Shared, msg: Message) {
    shared.received.fetch_add(1, Ordering::Relaxed);
    if !msg.retain {
        let matching = lock(&shared.filters)
            .by_filter
            .keys()
            .filter(|k| crate::mqtt::topic::matches(k, &msg.topic))
            .count();
        if matching > 1 {
            let new = lock(&shared.dedup).admit(
                &msg.topic,
                &msg.payload,
                matching,
                std::time::Instant::now(),
            );
            if !new {
                return;
            }
        }
    }
    let msg = Arc::new(msg);
    lock(&shared.history).record(&msg);
    let routes = lock(&shared.routes);
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

/// Applies one event of the connection to the shared state.
fn handle(shared: &Shared, ev: Ev) {
    let ack = |pkid, ack, reason| {
        let mut p = lock(&shared.pending);
        resolve(
            p.publishes
                .acknowledged(pkid, ack, reason)
                .into_iter()
                .collect(),
        );
    };
    match ev {
        Ev::Publish(m) => deliver(shared, m),
        Ev::OutPublish(pkid) => {
            let mut p = lock(&shared.pending);
            resolve(p.publishes.outgoing(pkid));
        }
        Ev::PubAck { pkid, reason } => ack(pkid, Ack::PubAck, reason),
        Ev::PubRec { pkid, reason } => ack(pkid, Ack::PubRec, reason),
        Ev::PubComp { pkid, reason } => ack(pkid, Ack::PubComp, reason),
        Ev::OutSubscribe(pkid) => {
            lock(&shared.pending).subscribes.outgoing(pkid);
        }
        Ev::SubAck { pkid, codes } => {
            *lock(&shared.dollar_probe) = None;
            let w = lock(&shared.pending).subscribes.acknowledged(pkid);
            if let Some(w) = w {
                let _ = w.send(codes);
            }
        }
        Ev::OutUnsubscribe(pkid) => {
            lock(&shared.pending).unsubscribes.outgoing(pkid);
        }
        Ev::UnsubAck { pkid } => {
            let w = lock(&shared.pending).unsubscribes.acknowledged(pkid);
            if let Some(w) = w {
                let _ = w.send(());
            }
        }
        _ => {}
    }
}

pub(super) async fn run_loop<W: Wire>(
    el: &mut Loop<W>,
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
            Ok(Ev::ConnAck { session_present }) => {
                el.disarm_credentials(&spec);
                attempt = 0;
                {
                    let mut p = lock(&shared.pending);
                    resolve(el.resume(session_present, &mut p));
                }
                let epoch = {
                    let mut s = lock(&shared.status);
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
                let filters: Vec<(String, u8)> = lock(&shared.filters)
                    .by_filter
                    .iter()
                    .map(|(k, v)| (k.clone(), v.0))
                    .collect();
                for (f, q) in filters {
                    let _ = conn.send_subscribe(&f, q, false);
                }
            }
            Ok(Ev::Disconnect { reason }) => {
                lock(&shared.status).last_error = Some(reason);
            }
            Ok(ev) => handle(&shared, ev),
            Err(e) => {
                let closed = {
                    let mut s = lock(&shared.status);
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
                // What rumqttc read or wrote before the drop happened before
                // it; then the ledger learns of the drop, and rumqttc's
                // pending requests are ours until the next CONNACK.
                for ev in el.drain_events() {
                    handle(&shared, ev);
                }
                lock(&shared.pending).connection_lost();
                el.take_pending();
                let probe = lock(&shared.dollar_probe).take();
                if let Some(f) = probe {
                    tracing::warn!("the broker dropped the connection after a subscription to {f:?}; not using $ filters on it again");
                    shared.dollar_refused.store(true, Ordering::Relaxed);
                    lock(&shared.filters).by_filter.remove(&f);
                }
                tracing::warn!(client_id = %spec.client_id, error = %e, "connection to {}:{} lost; retrying", spec.host, spec.port);
                let wait = adapter::backoff(attempt);
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
    lock(&shared.status).state = LinkState::Closed;
    // Wake every waiter: their requests will never be answered now.
    let done = lock(&shared.pending).close();
    resolve(done);
}
