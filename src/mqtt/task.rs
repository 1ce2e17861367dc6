//! The event task of one connection: it owns rumqttc's event loop, applies
//! every event to the shared state, and carries the ledger across drops
//! and reconnects (see [`super::ledger`] for why it must).

use super::adapter::{self, Ev, Loop, Wire};
use super::client::{resolve, Connection, Shared};
use super::ledger::Ack;
use super::model::*;
use crate::secret::Vault;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Hands one message to every route whose filters match it (once each).
pub(super) fn deliver(shared: &Shared, msg: Message) {
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

/// Applies one event of the connection to the shared state.
fn handle(shared: &Shared, ev: Ev) {
    let ack = |pkid, ack, reason| {
        if let Ok(mut p) = shared.pending.lock() {
            resolve(
                p.publishes
                    .acknowledged(pkid, ack, reason)
                    .into_iter()
                    .collect(),
            );
        }
    };
    match ev {
        Ev::Publish(m) => deliver(shared, m),
        Ev::OutPublish(pkid) => {
            if let Ok(mut p) = shared.pending.lock() {
                resolve(p.publishes.outgoing(pkid));
            }
        }
        Ev::PubAck { pkid, reason } => ack(pkid, Ack::PubAck, reason),
        Ev::PubRec { pkid, reason } => ack(pkid, Ack::PubRec, reason),
        Ev::PubComp { pkid, reason } => ack(pkid, Ack::PubComp, reason),
        Ev::OutSubscribe(pkid) => {
            if let Ok(mut p) = shared.pending.lock() {
                p.subscribes.outgoing(pkid);
            }
        }
        Ev::SubAck { pkid, codes } => {
            if let Ok(mut d) = shared.dollar_probe.lock() {
                *d = None;
            }
            let w = shared
                .pending
                .lock()
                .ok()
                .and_then(|mut p| p.subscribes.acknowledged(pkid));
            if let Some(w) = w {
                let _ = w.send(codes);
            }
        }
        Ev::OutUnsubscribe(pkid) => {
            if let Ok(mut p) = shared.pending.lock() {
                p.unsubscribes.outgoing(pkid);
            }
        }
        Ev::UnsubAck { pkid } => {
            let w = shared
                .pending
                .lock()
                .ok()
                .and_then(|mut p| p.unsubscribes.acknowledged(pkid));
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
                if let Ok(mut p) = shared.pending.lock() {
                    resolve(el.resume(session_present, &mut p));
                }
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
                // What rumqttc read or wrote before the drop happened before
                // it; then the ledger learns of the drop, and rumqttc's
                // pending requests are ours until the next CONNACK.
                for ev in el.drain_events() {
                    handle(&shared, ev);
                }
                if let Ok(mut p) = shared.pending.lock() {
                    p.connection_lost();
                }
                el.take_pending();
                if let Some(f) = shared.dollar_probe.lock().ok().and_then(|mut d| d.take()) {
                    tracing::warn!("the broker dropped the connection after a subscription to {f:?}; not using $ filters on it again");
                    shared.dollar_refused.store(true, Ordering::Relaxed);
                    if let Ok(mut fs) = shared.filters.lock() {
                        fs.by_filter.remove(&f);
                    }
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
    if let Ok(mut s) = shared.status.lock() {
        s.state = LinkState::Closed;
    }
    // Wake every waiter: their requests will never be answered now.
    let done = shared
        .pending
        .lock()
        .map(|mut p| p.close())
        .unwrap_or_default();
    resolve(done);
}
