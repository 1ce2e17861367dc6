//! Which request waits for which acknowledgement, kept free of I/O so that
//! drops, reconnects and packet-id reuse are tested as plain function calls.
//!
//! rumqttc assigns packet ids itself and does not return them, but it emits
//! `Outgoing::Publish(pkid)` (and `Subscribe`/`Unsubscribe`) in the order
//! requests left its channel. So a request's waiter enters a FIFO when the
//! request enters the channel, and moves to a packet-id table when its
//! outgoing event names the id. The ack then finds it by id.
//!
//! The FIFO stays in step with rumqttc only if the connection task also
//! controls what happens to requests across a drop, because rumqttc throws
//! away everything it was holding when the broker answers a reconnect with
//! `session present = 0`, without saying so. Hence the contract:
//! 1. On a drop the task hands every event rumqttc had already produced to
//!    the ledger first (they happened on the old connection), then calls
//!    [`PublishLedger::connection_lost`], and takes rumqttc's pending list
//!    (in-flight publishes and releases, then never-sent requests) into its
//!    own hands.
//! 2. On the next CONNACK it calls [`PublishLedger::reconnected`] with that
//!    list; the ledger says which requests to give back to rumqttc and which
//!    waiters are resolved now. With a resumed session, in-flight publishes
//!    are re-sent under their own packet ids (and acknowledged then); with a
//!    new session they are `Unknown` (the broker may or may not have them),
//!    and never-sent requests are sent on the new connection in their order.
//!
//! No packet id and no waiter from before a drop can be matched to a new
//! request after it: every id in the table either belongs to a publish that
//! is re-sent under that id in the resumed session, or is removed.

use super::model::{PublishOutcome, UnknownReason};
use std::collections::{HashMap, VecDeque};

/// What a request that rumqttc gave back after a drop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldKind {
    /// A QoS 1/2 publish already written to the old connection, by packet id.
    InFlightPublish(u16),
    /// A QoS 2 release (PUBREL) already written, by packet id.
    InFlightRelease(u16),
    /// A publish that never left the client.
    UnsentPublish,
    /// A SUBSCRIBE that never left the client.
    UnsentSubscribe,
    /// An UNSUBSCRIBE that never left the client.
    UnsentUnsubscribe,
    /// A DISCONNECT that never left the client: send it again.
    UnsentDisconnect,
    /// Anything else (pings, acks): not worth sending again.
    Other,
}

/// What the ledger needs to know about a request rumqttc gave back after a drop.
pub trait HeldRequest {
    /// Which kind of request it is.
    fn kind(&self) -> HeldKind;
    /// Marks a publish as a retransmission (MQTT's DUP flag).
    fn mark_duplicate(&mut self);
}

/// A waiter together with the outcome it is resolved with.
pub type Resolution<W> = (W, PublishOutcome);

/// A publish with a packet id, waiting for its acknowledgement.
#[derive(Debug)]
struct InFlight<W> {
    /// Who waits; `None` when nobody does.
    waiter: Option<W>,
    /// 1 or 2: which acknowledgement ends it (PUBACK, or PUBREC then PUBCOMP).
    qos: u8,
    /// True between a drop and the re-send in a resumed session: the id is
    /// ours until then, and its re-send is not a new publish.
    awaiting_resend: bool,
}

/// Which acknowledgement arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// PUBACK: ends a QoS 1 publish.
    PubAck,
    /// PUBREC: the broker has a QoS 2 publish; PUBREL/PUBCOMP follow.
    PubRec,
    /// PUBCOMP: ends a QoS 2 publish.
    PubComp,
}

/// The publish side of the ledger. `W` is whoever waits for an outcome (a
/// oneshot sender in the client, a plain number in tests).
#[derive(Debug)]
pub struct PublishLedger<W> {
    /// Publishes in rumqttc's channel (or given back to it), in channel order:
    /// QoS and waiter.
    queued: VecDeque<(u8, Option<W>)>,
    /// Publishes with a packet id, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    by_pkid: HashMap<u16, InFlight<W>>,
    /// QoS 2 publishes past PUBREC, waiting for PUBCOMP. Kept apart because
    /// rumqttc frees the packet id at PUBREC and may give it to a new publish
    /// while the release is still outstanding.
    releasing: HashMap<u16, InFlight<W>>,
}

impl<W> Default for PublishLedger<W> {
    fn default() -> Self {
        PublishLedger {
            queued: VecDeque::new(),
            by_pkid: HashMap::new(),
            releasing: HashMap::new(),
        }
    }
}

fn unknown<W>(waiter: W, reason: UnknownReason) -> Resolution<W> {
    (waiter, PublishOutcome::Unknown { reason })
}

impl<W> PublishLedger<W> {
    /// A publish entered rumqttc's channel. Call under the same lock as the
    /// send, so the FIFO order is the channel order.
    pub fn submitted(&mut self, qos: u8, waiter: Option<W>) {
        self.queued.push_back((qos, waiter));
    }

    /// rumqttc wrote a publish (`pkid` 0 for QoS 0). Returns the waiters this
    /// resolves: a QoS 0 publish is `Sent`; a packet id that rumqttc reused
    /// while we still held it (which it should never do) ends the old waiter
    /// as `Unknown` rather than letting it take the new publish's ack.
    pub fn outgoing(&mut self, pkid: u16) -> Vec<Resolution<W>> {
        let mut done = Vec::new();
        if pkid != 0 {
            if let Some(entry) = self.by_pkid.get_mut(&pkid) {
                if entry.awaiting_resend {
                    entry.awaiting_resend = false;
                    return done;
                }
                if let Some(old) = self.by_pkid.remove(&pkid).and_then(|e| e.waiter) {
                    done.push(unknown(old, UnknownReason::PacketIdReused));
                }
            }
        }
        let Some((qos, waiter)) = self.queued.pop_front() else {
            return done;
        };
        if qos == 0 || pkid == 0 {
            if let Some(w) = waiter {
                done.push((w, PublishOutcome::Sent));
            }
        } else {
            self.by_pkid.insert(
                pkid,
                InFlight {
                    waiter,
                    qos,
                    awaiting_resend: false,
                },
            );
        }
        done
    }

    /// An acknowledgement for `pkid` with its reason code (MQTT 5; 0 on 3.1.1).
    /// Only the acknowledgement that ends the publish's own exchange resolves
    /// it: a PUBCOMP never ends a QoS 1 publish that reused the id.
    pub fn acknowledged(&mut self, pkid: u16, ack: Ack, reason: u8) -> Option<Resolution<W>> {
        let entry = match ack {
            Ack::PubAck => {
                if self.by_pkid.get(&pkid)?.qos != 1 {
                    return None;
                }
                self.by_pkid.remove(&pkid)?
            }
            Ack::PubRec => {
                if self.by_pkid.get(&pkid)?.qos != 2 {
                    return None;
                }
                let entry = self.by_pkid.remove(&pkid)?;
                if reason < 0x80 {
                    self.releasing.insert(pkid, entry);
                    return None;
                }
                entry
            }
            Ack::PubComp => self.releasing.remove(&pkid)?,
        };
        let waiter = entry.waiter?;
        let outcome = if reason >= 0x80 {
            PublishOutcome::Rejected {
                reason_code: reason,
            }
        } else {
            PublishOutcome::Acknowledged {
                reason_code: reason,
            }
        };
        Some((waiter, outcome))
    }

    /// The connection dropped. Every publish with a packet id now waits for
    /// the next CONNACK to learn whether the broker kept the session.
    pub fn connection_lost(&mut self) {
        for entry in self.by_pkid.values_mut().chain(self.releasing.values_mut()) {
            entry.awaiting_resend = true;
        }
    }

    /// A CONNACK after a drop: resolves what the broker's answer decides.
    /// With a new session every publish that held a packet id is `Unknown`
    /// (the broker may or may not have it; re-sending it as new could deliver
    /// a QoS 2 message twice). With a resumed session, those whose request
    /// rumqttc gave back wait for their re-send (`resent` publishes,
    /// `rereleased` releases); any other id can no longer be acknowledged.
    fn session_decided(
        &mut self,
        session_present: bool,
        resent: &[u16],
        rereleased: &[u16],
    ) -> Vec<Resolution<W>> {
        let stale = |map: &HashMap<u16, InFlight<W>>, kept: &[u16]| -> Vec<u16> {
            map.iter()
                .filter(|(k, e)| !session_present || (e.awaiting_resend && !kept.contains(k)))
                .map(|(k, _)| *k)
                .collect()
        };
        let stale_pub = stale(&self.by_pkid, resent);
        let stale_rel = stale(&self.releasing, rereleased);
        let mut done = Vec::new();
        for pkid in stale_pub {
            done.extend(self.by_pkid.remove(&pkid).and_then(|e| e.waiter));
        }
        for pkid in stale_rel {
            done.extend(self.releasing.remove(&pkid).and_then(|e| e.waiter));
        }
        // A release re-sent in a resumed session is answered by PUBCOMP alone.
        for pkid in rereleased {
            if let Some(e) = self.releasing.get_mut(pkid) {
                e.awaiting_resend = false;
            }
        }
        done.into_iter()
            .map(|w| unknown(w, UnknownReason::SessionLost))
            .collect()
    }

    /// Moves the waiter of the oldest never-sent publish to the back, where
    /// its re-submission enters the channel (behind what was submitted while
    /// the link was down).
    fn requeue_unsent(&mut self, resubmitted: bool) -> Option<Resolution<W>> {
        let (qos, waiter) = self.queued.pop_front()?;
        if resubmitted {
            self.queued.push_back((qos, waiter));
            return None;
        }
        waiter.map(|w| unknown(w, UnknownReason::NotRequeued))
    }

    /// The connection task ended: nothing will be answered any more.
    pub fn close(&mut self) -> Vec<Resolution<W>> {
        let queued = self.queued.drain(..).filter_map(|(_, w)| w);
        let flying = self.by_pkid.drain().filter_map(|(_, e)| e.waiter);
        let releasing = self.releasing.drain().filter_map(|(_, e)| e.waiter);
        queued
            .chain(flying)
            .chain(releasing)
            .map(|w| unknown(w, UnknownReason::Closed))
            .collect()
    }

    /// Publishes waiting for a packet id, for PUBACK/PUBREC, and for PUBCOMP.
    pub fn len(&self) -> (usize, usize, usize) {
        (self.queued.len(), self.by_pkid.len(), self.releasing.len())
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queued.is_empty() && self.by_pkid.is_empty() && self.releasing.is_empty()
    }
}

/// Every acknowledgement one connection waits for: publishes (`P` waits
/// for an outcome), subscribes (`S`) and unsubscribes (`U`).
#[derive(Debug)]
pub struct Ledger<P, S, U> {
    /// Publishes.
    pub publishes: PublishLedger<P>,
    /// SUBSCRIBE requests.
    pub subscribes: AckQueue<S>,
    /// UNSUBSCRIBE requests.
    pub unsubscribes: AckQueue<U>,
}

impl<P, S, U> Default for Ledger<P, S, U> {
    fn default() -> Self {
        Ledger {
            publishes: PublishLedger::default(),
            subscribes: AckQueue::default(),
            unsubscribes: AckQueue::default(),
        }
    }
}

/// What to do after a reconnect, decided by [`Ledger::reconnected`].
#[derive(Debug)]
pub struct Resume<R, P> {
    /// Requests for rumqttc's pending list (sent before its channel), in
    /// order: the re-sends of a resumed session, each under its own id.
    pub pending: Vec<R>,
    /// Publish waiters resolved now.
    pub resolved: Vec<Resolution<P>>,
}

impl<P, S, U> Ledger<P, S, U> {
    /// The connection dropped. Call after every event rumqttc produced on the
    /// old connection has been handled.
    pub fn connection_lost(&mut self) {
        self.publishes.connection_lost();
        self.subscribes.connection_lost();
        self.unsubscribes.connection_lost();
    }

    /// A CONNACK after a drop. `held` is what rumqttc had pending at the drop,
    /// in its order; `collision` the publish it had parked because its packet
    /// id was still in flight (taken out of rumqttc's state; it never left).
    ///
    /// Never-sent requests go back through rumqttc's bounded channel via
    /// `resubmit` (true when accepted), behind whatever was submitted while
    /// the link was down, and their waiters move to the back of their FIFO
    /// to match. rumqttc's pending list ignores its in-flight window, so only
    /// re-sends that own their packet id go there: that keeps rumqttc from
    /// handing out an id twice.
    pub fn reconnected<R: HeldRequest>(
        &mut self,
        session_present: bool,
        held: Vec<R>,
        collision: Option<R>,
        mut resubmit: impl FnMut(R) -> bool,
    ) -> Resume<R, P> {
        let mut pending = Vec::new();
        let mut resent = Vec::new();
        let mut rereleased = Vec::new();
        let mut unsent = Vec::new();
        for mut r in held {
            match r.kind() {
                HeldKind::InFlightPublish(pkid)
                    if session_present && self.publishes.by_pkid.contains_key(&pkid) =>
                {
                    r.mark_duplicate();
                    resent.push(pkid);
                    pending.push(r);
                }
                HeldKind::InFlightRelease(pkid)
                    if session_present && self.publishes.releasing.contains_key(&pkid) =>
                {
                    rereleased.push(pkid);
                    pending.push(r);
                }
                HeldKind::InFlightPublish(_) | HeldKind::InFlightRelease(_) | HeldKind::Other => {}
                _ => unsent.push(r),
            }
        }
        let mut resolved = self
            .publishes
            .session_decided(session_present, &resent, &rereleased);
        // The parked publish never reached the wire (its id only names the
        // slot it waited for) and its waiter heads the FIFO: it is the first
        // never-sent publish.
        if let Some(c) = collision {
            let ok = resubmit(c);
            resolved.extend(self.publishes.requeue_unsent(ok));
        }
        for r in unsent {
            match r.kind() {
                HeldKind::UnsentPublish => {
                    let ok = resubmit(r);
                    resolved.extend(self.publishes.requeue_unsent(ok));
                }
                HeldKind::UnsentSubscribe => {
                    let ok = resubmit(r);
                    self.subscribes.requeue_front(ok);
                }
                HeldKind::UnsentUnsubscribe => {
                    let ok = resubmit(r);
                    self.unsubscribes.requeue_front(ok);
                }
                _ => {
                    resubmit(r);
                }
            }
        }
        Resume { pending, resolved }
    }

    /// The connection task ended: every publish waiter, resolved `Unknown`.
    pub fn close(&mut self) -> Vec<Resolution<P>> {
        self.subscribes.close();
        self.unsubscribes.close();
        self.publishes.close()
    }
}

/// SUBSCRIBE or UNSUBSCRIBE waiters: FIFO until the outgoing event names the
/// packet id, then by id. Neither is re-sent by rumqttc after a drop once
/// written, so a drop releases the written ones (their waiters see the
/// sender dropped: "lost") and keeps the never-sent ones in order.
#[derive(Debug)]
pub struct AckQueue<W> {
    /// Requests in rumqttc's channel, in order; `None` when nobody waits.
    queued: VecDeque<Option<W>>,
    /// Written requests by packet id.
    by_pkid: HashMap<u16, Option<W>>,
}

impl<W> Default for AckQueue<W> {
    fn default() -> Self {
        AckQueue {
            queued: VecDeque::new(),
            by_pkid: HashMap::new(),
        }
    }
}

impl<W> AckQueue<W> {
    /// A request entered rumqttc's channel.
    pub fn submitted(&mut self, waiter: Option<W>) {
        self.queued.push_back(waiter);
    }

    /// rumqttc wrote the next request with `pkid`.
    pub fn outgoing(&mut self, pkid: u16) {
        if let Some(w) = self.queued.pop_front() {
            self.by_pkid.insert(pkid, w);
        }
    }

    /// The ack for `pkid` arrived: its waiter, if someone waits.
    pub fn acknowledged(&mut self, pkid: u16) -> Option<W> {
        self.by_pkid.remove(&pkid).flatten()
    }

    /// The connection dropped: written requests will never be answered.
    pub fn connection_lost(&mut self) {
        self.by_pkid.clear();
    }

    /// Moves the front waiter (a never-sent request) to the back when its
    /// request was submitted again; drops it (the caller sees "lost") if not.
    fn requeue_front(&mut self, resubmitted: bool) {
        if let Some(w) = self.queued.pop_front() {
            if resubmitted {
                self.queued.push_back(w);
            }
        }
    }

    /// The connection task ended.
    pub fn close(&mut self) {
        self.queued.clear();
        self.by_pkid.clear();
    }
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
