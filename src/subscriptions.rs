//! Background subscriptions: a task per subscription moves messages from its
//! route into a buffer bounded by count and bytes, numbers them (the cursor
//! of `read_messages`), counts what it had to drop, and notes reconnects as
//! gaps. Dropping the subscription stops the task and unsubscribes.

use crate::mqtt::client::{Message, Subscription};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::Notify;

/// At most this many background subscriptions per session.
pub const MAX_PER_SESSION: usize = 64;

/// A reconnect seen by a subscription.
#[derive(Debug, Clone)]
pub struct Gap {
    /// When the connection came back.
    pub at: SystemTime,
    /// The last sequence number before it.
    pub after_seq: u64,
    /// Human-readable reason.
    pub reason: String,
}

/// The buffer and counters of one subscription.
#[derive(Debug, Default)]
pub struct Buffer {
    /// Buffered messages with their sequence numbers, oldest first.
    pub msgs: VecDeque<(u64, Arc<Message>)>,
    /// Payload bytes buffered.
    pub bytes: usize,
    /// Sequence number of the newest message (0 = none yet).
    pub last_seq: u64,
    /// Reconnects seen.
    pub gaps: Vec<Gap>,
    /// Route drops already given sequence numbers (they show up as lost).
    pub channel_drops_seen: u64,
}

/// What one read returns.
#[derive(Debug)]
pub struct ReadOut {
    /// Messages with their sequence numbers.
    pub msgs: Vec<(u64, Arc<Message>)>,
    /// Messages after the cursor that were lost.
    pub lost: u64,
    /// Reconnects in the range read.
    pub gaps: Vec<Gap>,
    /// More are buffered after these.
    pub more: bool,
    /// The cursor to continue from.
    pub next: u64,
}

/// One background subscription.
pub struct BgSub {
    /// `sub_` + 64 random bits.
    pub id: String,
    /// The owning session.
    pub session_id: String,
    /// Its filters.
    pub filters: Vec<String>,
    /// Requested QoS.
    pub qos: u8,
    /// When it started.
    pub created_at: SystemTime,
    /// Buffer caps: messages and bytes.
    pub limits: (usize, usize),
    /// Shared with the task.
    pub buffer: Arc<Mutex<Buffer>>,
    /// Woken on every new message (for `wait_ms`).
    pub notify: Arc<Notify>,
    /// The pump task; owns the [`Subscription`].
    task: tokio::task::JoinHandle<()>,
    /// The highest sequence number a read has returned (what counts as read).
    read_upto: std::sync::atomic::AtomicU64,
}

impl Drop for BgSub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BgSub {
    /// Starts pumping `sub` into a bounded buffer.
    pub fn start(
        id: String,
        session_id: String,
        filters: Vec<String>,
        qos: u8,
        mut sub: Subscription,
        limits: (usize, usize),
    ) -> BgSub {
        let buffer = Arc::new(Mutex::new(Buffer::default()));
        let notify = Arc::new(Notify::new());
        let (b, n) = (buffer.clone(), notify.clone());
        let mut epochs = sub.connection().epoch_watch();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = sub.route.rx.recv() => {
                        let Some(m) = m else { return };
                        let drops = sub.dropped();
                        let mut buf = crate::sync::lock(&b);
                        if drops > buf.channel_drops_seen {
                            let lost = drops - buf.channel_drops_seen;
                            buf.channel_drops_seen = drops;
                            buf.last_seq += lost;
                        }
                        buf.last_seq += 1;
                        let seq = buf.last_seq;
                        buf.bytes += m.payload.len();
                        buf.msgs.push_back((seq, m));
                        while buf.msgs.len() > limits.0 || (buf.bytes > limits.1 && buf.msgs.len() > 1) {
                            if let Some((_, old)) = buf.msgs.pop_front() {
                                buf.bytes -= old.payload.len();
                            }
                        }
                        drop(buf);
                        n.notify_waiters();
                    }
                    changed = epochs.changed() => {
                        if changed.is_err() { return; }
                        let reconnects = *epochs.borrow_and_update();
                        let mut buf = crate::sync::lock(&b);
                        let after_seq = buf.last_seq;
                        buf.gaps.push(Gap {
                            at: SystemTime::now(),
                            after_seq,
                            reason: format!("the connection to the broker was re-established (connection #{reconnects}); messages published while it was down may be missing"),
                        });
                        if buf.gaps.len() > 100 {
                            buf.gaps.remove(0);
                        }
                    }
                }
            }
        });
        BgSub {
            id,
            session_id,
            filters,
            qos,
            created_at: SystemTime::now(),
            limits,
            buffer,
            notify,
            task,
            read_upto: Default::default(),
        }
    }

    /// Messages after `since` (at most `limit`), how many after `since` were
    /// lost, gaps after `since`, whether more remain.
    pub fn read(&self, since: u64, limit: usize) -> ReadOut {
        let out = self.read_inner(since, limit);
        if let Some((last, _)) = out.msgs.last() {
            self.read_upto
                .fetch_max(*last, std::sync::atomic::Ordering::Relaxed);
        }
        out
    }

    /// Buffered messages no read has returned yet.
    pub fn unread(&self) -> usize {
        let upto = self.read_upto.load(std::sync::atomic::Ordering::Relaxed);
        crate::sync::lock(&self.buffer)
            .msgs
            .iter()
            .filter(|(s, _)| *s > upto)
            .count()
    }

    fn read_inner(&self, since: u64, limit: usize) -> ReadOut {
        let buf = crate::sync::lock(&self.buffer);
        let out: Vec<(u64, Arc<Message>)> = buf
            .msgs
            .iter()
            .filter(|(s, _)| *s > since)
            .take(limit)
            .cloned()
            .collect();
        // Every sequence number in (since, next] that is not returned was lost.
        let (next, lost) = match out.last() {
            Some((last, _)) => (*last, last - since - out.len() as u64),
            None => (since.max(buf.last_seq), buf.last_seq.saturating_sub(since)),
        };
        let more = buf.msgs.back().is_some_and(|(s, _)| *s > next);
        let empty = out.is_empty();
        let gaps = buf
            .gaps
            .iter()
            .filter(|g| g.after_seq >= since && (empty || g.after_seq < next))
            .cloned()
            .collect();
        ReadOut {
            msgs: out,
            lost,
            gaps,
            more,
            next,
        }
    }

    /// (buffered, buffered bytes, last seq, reconnects, lost so far).
    pub fn stats(&self) -> (usize, usize, u64, usize, u64) {
        let buf = crate::sync::lock(&self.buffer);
        let first_kept = buf
            .msgs
            .front()
            .map(|(s, _)| *s)
            .unwrap_or(buf.last_seq + 1);
        (
            buf.msgs.len(),
            buf.bytes,
            buf.last_seq,
            buf.gaps.len(),
            first_kept.saturating_sub(1),
        )
    }

    /// Sequence numbers received in all (including lost ones).
    pub fn total(&self) -> u64 {
        crate::sync::lock(&self.buffer).last_seq
    }

    /// Messages counted as dropped by the route so far.
    pub fn dropped_total(&self) -> u64 {
        crate::sync::lock(&self.buffer).channel_drops_seen
    }
}

/// A session's background subscriptions.
#[derive(Default)]
pub struct Registry {
    /// By id.
    subs: Mutex<HashMap<String, Arc<BgSub>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registry({} subscriptions)", self.len())
    }
}

impl Registry {
    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        crate::sync::lock(&self.subs).len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds one.
    pub fn insert(&self, s: BgSub) -> Arc<BgSub> {
        let s = Arc::new(s);
        crate::sync::lock(&self.subs).insert(s.id.clone(), s.clone());
        s
    }

    /// Looks one up.
    pub fn get(&self, id: &str) -> Option<Arc<BgSub>> {
        crate::sync::lock(&self.subs).get(id).cloned()
    }

    /// Removes one (stopping it when the last reference goes).
    pub fn remove(&self, id: &str) -> Option<Arc<BgSub>> {
        crate::sync::lock(&self.subs).remove(id)
    }

    /// All, oldest first.
    pub fn all(&self) -> Vec<Arc<BgSub>> {
        let mut v: Vec<_> = crate::sync::lock(&self.subs).values().cloned().collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        v
    }
}
