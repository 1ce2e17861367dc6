//! Overlapping subscriptions: when two of our filters match a topic, many
//! brokers (rumqttd, Mosquitto 2) send one copy per matching subscription,
//! possibly interleaved with other traffic. Every subscriber must still see
//! each message once. For a live (non-retained) message matched by `k > 1` of
//! our broker-level filters we expect `k - 1` identical copies within a short
//! window and swallow them. A broker that sends one copy only is recognised
//! when the expected copies never come; from then on nothing is swallowed.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// How long after the first copy the others are expected.
const WINDOW: Duration = Duration::from_secs(2);
/// Most fingerprints remembered.
const CAP: usize = 16 * 1024;

/// What we learned about the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Not seen an overlapping delivery yet: expect copies.
    Unknown,
    /// The broker sends one copy per matching subscription.
    Duplicating,
    /// The broker sends one copy in all: never swallow.
    Merging,
}

/// Duplicate suppression state of one connection.
#[derive(Debug)]
pub struct Dedup {
    /// Copies still expected, by (topic, payload) fingerprint.
    pending: HashMap<u64, (u32, Instant)>,
    /// Fingerprints in insertion order, for expiry.
    order: VecDeque<(u64, Instant)>,
    /// The broker's behaviour, once known.
    mode: Mode,
}

impl Default for Dedup {
    fn default() -> Self {
        Self {
            pending: HashMap::new(),
            order: VecDeque::new(),
            mode: Mode::Unknown,
        }
    }
}

/// Copies may differ in QoS and flags, never in topic and payload.
fn fingerprint(topic: &str, payload: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    topic.hash(&mut h);
    payload.hash(&mut h);
    h.finish()
}

impl Dedup {
    /// The broker's behaviour as learned so far.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn expire(&mut self, now: Instant) {
        while let Some((fp, at)) = self.order.front().copied() {
            if now.duration_since(at) < WINDOW && self.order.len() <= CAP {
                break;
            }
            self.order.pop_front();
            if let Some((left, when)) = self.pending.get(&fp).copied() {
                if when == at {
                    self.pending.remove(&fp);
                    if left > 0 && self.mode == Mode::Unknown {
                        self.mode = Mode::Merging;
                    }
                }
            }
        }
    }

    /// Decides whether a live message is new (true: deliver it) or a copy
    /// caused by overlapping subscriptions (false). `matching` is how many of
    /// our broker-level filters match its topic.
    pub fn admit(&mut self, topic: &str, payload: &[u8], matching: usize, now: Instant) -> bool {
        self.expire(now);
        if matching <= 1 || self.mode == Mode::Merging {
            return true;
        }
        let fp = fingerprint(topic, payload);
        if let Some((left, _)) = self.pending.get_mut(&fp) {
            if *left > 0 {
                *left -= 1;
                self.mode = Mode::Duplicating;
                if *left == 0 {
                    self.pending.remove(&fp);
                }
                return false;
            }
        }
        self.pending.insert(fp, (matching as u32 - 1, now));
        self.order.push_back((fp, now));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swallows_copies_of_a_duplicating_broker() {
        let mut d = Dedup::default();
        let t = Instant::now();
        assert!(d.admit("a/b", b"on", 2, t));
        assert!(d.admit("a/c", b"x", 2, t), "other traffic in between");
        assert!(!d.admit("a/b", b"on", 2, t), "the copy");
        assert!(!d.admit("a/c", b"x", 2, t));
        assert_eq!(d.mode(), Mode::Duplicating);
        // The same payload published twice arrives four times: two are new.
        let n = (0..4).filter(|_| d.admit("a/b", b"on", 2, t)).count();
        assert_eq!(n, 2);
        assert!(
            d.admit("a/b", b"on", 1, t),
            "one matching filter: nothing to swallow"
        );
    }

    #[test]
    fn learns_a_merging_broker() {
        let mut d = Dedup::default();
        let t = Instant::now();
        assert!(d.admit("a/b", b"on", 3, t));
        let later = t + WINDOW + Duration::from_millis(1);
        assert!(d.admit("x", b"y", 1, later));
        assert_eq!(d.mode(), Mode::Merging);
        assert!(d.admit("a/b", b"on", 3, later));
        assert!(
            d.admit("a/b", b"on", 3, later),
            "a merging broker's repeats are real messages"
        );
    }
}
