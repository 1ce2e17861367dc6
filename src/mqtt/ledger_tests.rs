//! The ledger against drops, reconnects, packet-id reuse and out-of-order
//! acks, and a property test that drives it beside a model of rumqttc's
//! own bookkeeping (ids wrap at the in-flight window, a parked collision,
//! the pending list taken at a drop) and a broker that acks in any order.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A publish as rumqttc holds it: message id, QoS, packet id (0 until
/// assigned), DUP.
#[derive(Debug, Clone)]
struct Req {
    id: u32,
    qos: u8,
    pkid: u16,
    dup: bool,
}

impl HeldRequest for Req {
    fn kind(&self) -> HeldKind {
        if self.pkid != 0 {
            HeldKind::InFlightPublish(self.pkid)
        } else {
            HeldKind::UnsentPublish
        }
    }
    fn mark_duplicate(&mut self) {
        self.dup = true;
    }
}

type L = Ledger<u32, (), ()>;

fn acked(r: Option<Resolution<u32>>) -> Option<u32> {
    match r {
        Some((w, PublishOutcome::Acknowledged { .. })) => Some(w),
        _ => None,
    }
}

fn unsent(id: u32) -> Req {
    Req {
        id,
        qos: 1,
        pkid: 0,
        dup: false,
    }
}

fn flying(id: u32, pkid: u16) -> Req {
    Req {
        id,
        qos: 1,
        pkid,
        dup: false,
    }
}

#[test]
fn a_waiter_left_from_before_a_new_session_never_takes_a_later_ack() {
    let mut l = L::default();
    for id in 1..=3 {
        l.publishes.submitted(1, Some(id));
    }
    assert!(l.publishes.outgoing(1).is_empty());
    assert!(l.publishes.outgoing(2).is_empty());
    l.connection_lost();
    // Message 4 was submitted while the link was down: it is in the channel
    // ahead of the re-submitted message 3.
    l.publishes.submitted(1, Some(4));
    let mut channel = Vec::new();
    let r = l.reconnected(
        false,
        vec![flying(1, 1), flying(2, 2), unsent(3)],
        None,
        |q| {
            channel.push(q.id);
            true
        },
    );
    assert!(r.pending.is_empty());
    assert_eq!(channel, vec![3]);
    let mut lost: Vec<u32> = r.resolved.iter().map(|(w, _)| *w).collect();
    lost.sort();
    assert_eq!(lost, vec![1, 2]);
    assert!(r.resolved.iter().all(|(_, o)| matches!(
        o,
        PublishOutcome::Unknown {
            reason: UnknownReason::SessionLost
        }
    )));
    // rumqttc continues its ids: 4 goes out first as pkid 3, then 3 as pkid 4.
    assert!(l.publishes.outgoing(3).is_empty());
    assert!(l.publishes.outgoing(4).is_empty());
    assert_eq!(acked(l.publishes.acknowledged(3, Ack::PubAck, 0)), Some(4));
    assert_eq!(acked(l.publishes.acknowledged(4, Ack::PubAck, 0)), Some(3));
    assert!(l.publishes.is_empty());
}

#[test]
fn a_resumed_session_resends_under_the_same_ids_and_acks_them() {
    let mut l = L::default();
    l.publishes.submitted(1, Some(1));
    l.publishes.submitted(1, Some(2));
    l.publishes.outgoing(1);
    l.publishes.outgoing(2);
    l.connection_lost();
    let r = l.reconnected(true, vec![flying(1, 1), flying(2, 2)], None, |_| true);
    assert!(r.resolved.is_empty());
    assert_eq!(r.pending.len(), 2);
    assert!(r.pending.iter().all(|q| q.dup));
    // The re-sends are not new publishes: nothing is popped.
    l.publishes.submitted(1, Some(3));
    assert!(l.publishes.outgoing(1).is_empty());
    assert!(l.publishes.outgoing(2).is_empty());
    assert_eq!(acked(l.publishes.acknowledged(2, Ack::PubAck, 0)), Some(2));
    assert_eq!(acked(l.publishes.acknowledged(1, Ack::PubAck, 0)), Some(1));
    assert_eq!(l.publishes.len(), (1, 0, 0));
}

#[test]
fn an_id_the_session_did_not_give_back_is_unknown_even_when_resumed() {
    let mut l = L::default();
    l.publishes.submitted(1, Some(1));
    l.publishes.outgoing(7);
    l.connection_lost();
    let r = l.reconnected(true, Vec::<Req>::new(), None, |_| true);
    assert_eq!(r.resolved.len(), 1);
    assert!(l.publishes.is_empty());
}

#[test]
fn ids_wrapping_hundreds_of_times_after_a_drop_stay_in_step() {
    let mut l = L::default();
    for id in 0..20 {
        l.publishes.submitted(1, Some(id));
        l.publishes.outgoing(id as u16 + 1);
    }
    l.connection_lost();
    let held: Vec<Req> = (0..20).map(|i| flying(i, i as u16 + 1)).collect();
    let r = l.reconnected(false, held, None, |_| true);
    assert_eq!(r.resolved.len(), 20);
    let mut pkid = 20u16;
    for id in 100..1100u32 {
        pkid = pkid % 100 + 1;
        l.publishes.submitted(1, Some(id));
        assert!(l.publishes.outgoing(pkid).is_empty());
        assert_eq!(
            acked(l.publishes.acknowledged(pkid, Ack::PubAck, 0)),
            Some(id)
        );
    }
    assert!(l.publishes.is_empty());
}

#[test]
fn acks_out_of_order_find_their_own_publish() {
    let mut l = L::default();
    for id in 1..=5 {
        l.publishes.submitted(1, Some(id));
        l.publishes.outgoing(id as u16);
    }
    for pkid in [3u16, 1, 5, 2, 4] {
        assert_eq!(
            acked(l.publishes.acknowledged(pkid, Ack::PubAck, 0)),
            Some(pkid as u32)
        );
    }
    assert_eq!(acked(l.publishes.acknowledged(3, Ack::PubAck, 0)), None);
}

#[test]
fn a_refusal_is_rejected_and_qos0_is_sent() {
    let mut l = L::default();
    l.publishes.submitted(0, Some(1));
    l.publishes.submitted(1, Some(2));
    assert!(matches!(
        l.publishes.outgoing(0).as_slice(),
        [(1, PublishOutcome::Sent)]
    ));
    l.publishes.outgoing(9);
    assert!(matches!(
        l.publishes.acknowledged(9, Ack::PubAck, 0x87),
        Some((2, PublishOutcome::Rejected { reason_code: 0x87 }))
    ));
}

#[test]
fn a_release_and_a_new_publish_on_the_same_id_are_told_apart() {
    let mut l = L::default();
    l.publishes.submitted(2, Some(1));
    l.publishes.outgoing(5);
    assert!(l.publishes.acknowledged(5, Ack::PubRec, 0).is_none());
    // rumqttc frees id 5 at PUBREC: a QoS 1 publish may take it.
    l.publishes.submitted(1, Some(2));
    assert!(l.publishes.outgoing(5).is_empty());
    assert_eq!(acked(l.publishes.acknowledged(5, Ack::PubComp, 0)), Some(1));
    assert_eq!(acked(l.publishes.acknowledged(5, Ack::PubAck, 0)), Some(2));
    assert!(l.publishes.is_empty());
}

#[test]
fn a_reused_id_ends_the_old_waiter_as_unknown() {
    let mut l = L::default();
    l.publishes.submitted(1, Some(1));
    l.publishes.submitted(1, Some(2));
    l.publishes.outgoing(4);
    let done = l.publishes.outgoing(4);
    assert!(matches!(
        done.as_slice(),
        [(
            1,
            PublishOutcome::Unknown {
                reason: UnknownReason::PacketIdReused
            }
        )]
    ));
    assert_eq!(acked(l.publishes.acknowledged(4, Ack::PubAck, 0)), Some(2));
}

#[test]
fn a_parked_collision_goes_back_first_and_keeps_its_place() {
    let mut l = L::default();
    l.publishes.submitted(1, Some(1));
    l.publishes.outgoing(1);
    // Message 2 collided on id 1 (parked), message 3 is still in the channel.
    l.publishes.submitted(1, Some(2));
    l.publishes.submitted(1, Some(3));
    l.connection_lost();
    let mut channel = Vec::new();
    let r = l.reconnected(
        false,
        vec![flying(1, 1), unsent(3)],
        Some(flying(2, 1)),
        |q| {
            channel.push(q.id);
            true
        },
    );
    assert_eq!(channel, vec![2, 3]);
    assert_eq!(r.resolved.len(), 1);
    l.publishes.outgoing(2);
    l.publishes.outgoing(3);
    assert_eq!(acked(l.publishes.acknowledged(3, Ack::PubAck, 0)), Some(3));
    assert_eq!(acked(l.publishes.acknowledged(2, Ack::PubAck, 0)), Some(2));
}

#[test]
fn a_request_that_cannot_be_queued_again_is_resolved_not_left_behind() {
    let mut l = L::default();
    l.publishes.submitted(1, Some(1));
    l.subscribes.submitted(Some(()));
    l.connection_lost();
    let r = l.reconnected(false, vec![unsent(1)], None, |_| false);
    assert!(matches!(
        r.resolved.as_slice(),
        [(
            1,
            PublishOutcome::Unknown {
                reason: UnknownReason::NotRequeued
            }
        )]
    ));
    assert!(l.publishes.is_empty());
}

#[test]
fn close_resolves_every_waiter() {
    let mut l = L::default();
    l.publishes.submitted(1, Some(1));
    l.publishes.submitted(2, Some(2));
    l.publishes.outgoing(1);
    let done = l.close();
    assert_eq!(done.len(), 2);
    assert!(l.publishes.is_empty());
}

/// rumqttc's in-flight window in the model (its ids run 1..=WINDOW).
const WINDOW: u16 = 4;

/// rumqttc's bookkeeping for publishes, a broker, and the ledger beside them.
#[derive(Default)]
struct Sim {
    ledger: L,
    channel: VecDeque<Req>,
    pending: VecDeque<Req>,
    outgoing: BTreeMap<u16, Req>,
    collision: Option<Req>,
    last_pkid: u16,
    connected: bool,
    held: Vec<Req>,
    /// Acks the broker owes on this connection: (pkid, message).
    owed: Vec<(u16, u32)>,
    received: HashSet<u32>,
    outcomes: HashMap<u32, PublishOutcome>,
    qos: HashMap<u32, u8>,
    next_id: u32,
    every_session_resumed: bool,
    every_requeue_accepted: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Submit(u8),
    Send,
    Ack(usize),
    Drop,
    Reconnect { session_present: bool, accept: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..=1).prop_map(Op::Submit),
        4 => Just(Op::Send),
        4 => (0usize..8).prop_map(Op::Ack),
        1 => Just(Op::Drop),
        1 => (any::<bool>(), prop::bool::weighted(0.9))
            .prop_map(|(session_present, accept)| Op::Reconnect { session_present, accept }),
    ]
}

impl Sim {
    fn new() -> Sim {
        Sim {
            connected: true,
            every_session_resumed: true,
            every_requeue_accepted: true,
            ..Sim::default()
        }
    }

    fn record(&mut self, done: Vec<Resolution<u32>>) {
        for (id, outcome) in done {
            if matches!(outcome, PublishOutcome::Sent) {
                assert_eq!(self.qos[&id], 0, "only QoS 0 is merely sent");
            }
            if matches!(outcome, PublishOutcome::Acknowledged { .. }) {
                assert!(
                    self.received.contains(&id),
                    "acknowledged but never received: {id}"
                );
            }
            assert!(
                self.outcomes.insert(id, outcome).is_none(),
                "{id} resolved twice"
            );
        }
    }

    fn next_pkid(&mut self) -> u16 {
        let next = self.last_pkid + 1;
        if next == WINDOW {
            self.last_pkid = 0;
        } else {
            self.last_pkid = next;
        }
        next
    }

    /// rumqttc's `outgoing_publish` plus the broker receiving it.
    fn write(&mut self, mut r: Req) {
        if r.qos == 0 {
            let done = self.ledger.publishes.outgoing(0);
            self.received.insert(r.id);
            self.record(done);
            return;
        }
        if r.pkid == 0 {
            r.pkid = self.next_pkid();
        }
        if self.outgoing.contains_key(&r.pkid) {
            self.collision = Some(r);
            return;
        }
        self.outgoing.insert(r.pkid, r.clone());
        let done = self.ledger.publishes.outgoing(r.pkid);
        self.record(done);
        self.received.insert(r.id);
        self.owed.push((r.pkid, r.id));
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Submit(qos) => {
                self.next_id += 1;
                let id = self.next_id;
                self.qos.insert(id, qos);
                self.ledger.publishes.submitted(qos, Some(id));
                self.channel.push_back(Req {
                    id,
                    qos,
                    pkid: 0,
                    dup: false,
                });
            }
            Op::Send if self.connected => {
                let r = if let Some(r) = self.pending.pop_front() {
                    r
                } else if self.outgoing.len() < WINDOW as usize && self.collision.is_none() {
                    match self.channel.pop_front() {
                        Some(r) => r,
                        None => return,
                    }
                } else {
                    return;
                };
                self.write(r);
            }
            Op::Ack(i) if self.connected && !self.owed.is_empty() => {
                let (pkid, id) = self.owed.remove(i % self.owed.len());
                let Some(r) = self.outgoing.remove(&pkid) else {
                    return;
                };
                assert_eq!(r.id, id);
                let done = self.ledger.publishes.acknowledged(pkid, Ack::PubAck, 0);
                if let Some((w, _)) = &done {
                    assert_eq!(*w, id, "an ack resolved another message");
                }
                self.record(done.into_iter().collect());
                if self.collision.as_ref().is_some_and(|c| c.pkid == pkid) {
                    if let Some(c) = self.collision.take() {
                        self.write(c);
                    }
                }
            }
            Op::Drop if self.connected => {
                self.connected = false;
                self.owed.clear();
                // rumqttc's clean(): pending first, then in-flight, then the channel.
                let mut held: Vec<Req> = self.pending.drain(..).collect();
                held.extend(std::mem::take(&mut self.outgoing).into_values());
                held.extend(self.channel.drain(..));
                self.ledger.connection_lost();
                self.held.extend(held);
            }
            Op::Reconnect {
                session_present,
                accept,
            } if !self.connected => self.reconnect(session_present, accept),
            _ => {}
        }
    }

    fn reconnect(&mut self, session_present: bool, accept: bool) {
        self.connected = true;
        self.every_session_resumed &= session_present;
        self.every_requeue_accepted &= accept;
        let held = std::mem::take(&mut self.held);
        let collision = self.collision.take();
        let mut resubmitted = Vec::new();
        let r = self
            .ledger
            .reconnected(session_present, held, collision, |mut q| {
                if accept {
                    q.pkid = 0;
                    q.dup = false;
                    resubmitted.push(q);
                }
                accept
            });
        self.channel.extend(resubmitted);
        let later: Vec<Req> = self.pending.drain(..).collect();
        self.pending = r.pending.into_iter().chain(later).collect();
        self.record(r.resolved);
    }

    /// Runs until everything submitted has an outcome.
    fn settle(&mut self) {
        if !self.connected {
            self.reconnect(true, true);
        }
        for _ in 0..10_000 {
            if self.ledger.publishes.is_empty() {
                break;
            }
            if !self.owed.is_empty() {
                self.apply(Op::Ack(0));
            } else {
                self.apply(Op::Send);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the interleaving of publishes, drops, reconnects and acks:
    /// an ack resolves only its own message, nothing resolves twice,
    /// everything resolves in the end, and with resumed sessions nothing
    /// is unknown.
    #[test]
    fn outcomes_stay_true_over_random_interleavings(ops in prop::collection::vec(op(), 1..200)) {
        let mut sim = Sim::new();
        for op in ops {
            sim.apply(op);
        }
        sim.settle();
        prop_assert!(sim.ledger.publishes.is_empty(), "waiters left: {:?}", sim.ledger.publishes.len());
        prop_assert_eq!(sim.outcomes.len() as u32, sim.next_id);
        if sim.every_session_resumed && sim.every_requeue_accepted {
            let unknown = sim.outcomes.values().filter(|o| matches!(o, PublishOutcome::Unknown { .. })).count();
            prop_assert_eq!(unknown, 0);
        }
    }
}
