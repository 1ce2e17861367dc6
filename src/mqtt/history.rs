//! The last messages seen per topic on one connection, for `topic_history`:
//! bounded by topics, by messages per topic and by bytes, oldest topic first
//! out, so a busy broker cannot grow it.

use super::model::Message;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Limits of the history.
#[derive(Debug, Clone, Copy)]
pub struct HistoryLimits {
    /// Topics remembered.
    pub max_topics: usize,
    /// Messages remembered per topic.
    pub per_topic: usize,
    /// Payload bytes remembered in all.
    pub max_bytes: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            max_topics: 2000,
            per_topic: 100,
            max_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Per-topic rings of recent messages.
#[derive(Debug, Default)]
pub struct History {
    /// Messages per topic, oldest first.
    topics: HashMap<String, VecDeque<Arc<Message>>>,
    /// Topics in order of first sight, for eviction.
    order: VecDeque<String>,
    /// Payload bytes held.
    bytes: usize,
    /// The limits.
    limits: HistoryLimits,
}

impl History {
    /// An empty history with these limits.
    pub fn new(limits: HistoryLimits) -> Self {
        Self {
            limits,
            ..Default::default()
        }
    }

    /// Remembers a message.
    pub fn record(&mut self, m: &Arc<Message>) {
        let size = m.payload.len();
        if size > self.limits.max_bytes {
            return;
        }
        // Look up before inserting: the topic string is copied only for a new topic.
        let ring = match self.topics.get_mut(&m.topic) {
            Some(ring) => ring,
            None => {
                while self.order.len() >= self.limits.max_topics {
                    self.evict_oldest_topic();
                }
                self.order.push_back(m.topic.clone());
                self.topics.entry(m.topic.clone()).or_default()
            }
        };
        ring.push_back(m.clone());
        self.bytes += size;
        if ring.len() > self.limits.per_topic {
            if let Some(old) = ring.pop_front() {
                self.bytes -= old.payload.len();
            }
        }
        while self.bytes > self.limits.max_bytes && !self.order.is_empty() {
            let Some(first) = self.order.front().cloned() else {
                break;
            };
            let ring = self.topics.entry(first).or_default();
            if let Some(old) = ring.pop_front() {
                self.bytes -= old.payload.len();
            }
            if ring.is_empty() {
                self.evict_oldest_topic();
            }
        }
    }

    fn evict_oldest_topic(&mut self) {
        if let Some(t) = self.order.pop_front() {
            if let Some(ring) = self.topics.remove(&t) {
                self.bytes -= ring.iter().map(|m| m.payload.len()).sum::<usize>();
            }
        }
    }

    /// The last `n` messages on `topic`, oldest first.
    pub fn last(&self, topic: &str, n: usize) -> Vec<Arc<Message>> {
        self.topics
            .get(topic)
            .map(|r| r.iter().skip(r.len().saturating_sub(n)).cloned().collect())
            .unwrap_or_default()
    }

    /// Topics remembered: name, messages remembered, latest message; sorted by name.
    pub fn summary(&self) -> Vec<(String, usize, Arc<Message>)> {
        let mut v: Vec<_> = self
            .topics
            .iter()
            .filter_map(|(t, r)| r.back().map(|m| (t.clone(), r.len(), m.clone())))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Number of topics remembered.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// Topics remembered, with their latest message.
    pub fn topics(&self) -> Vec<(String, Arc<Message>)> {
        self.topics
            .iter()
            .filter_map(|(t, r)| r.back().map(|m| (t.clone(), m.clone())))
            .collect()
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::SystemTime;

    fn msg(topic: &str, payload: &[u8]) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload: Bytes::copy_from_slice(payload),
            qos: 0,
            retain: false,
            received_at: SystemTime::now(),
            props: None,
        })
    }

    #[test]
    fn bounded_by_topics_messages_and_bytes() {
        let mut h = History::new(HistoryLimits {
            max_topics: 2,
            per_topic: 3,
            max_bytes: 10,
        });
        for i in 0..5u8 {
            h.record(&msg("a", &[i]));
        }
        assert_eq!(
            h.last("a", 10)
                .iter()
                .map(|m| m.payload[0])
                .collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        h.record(&msg("b", b"x"));
        h.record(&msg("c", b"y"));
        assert!(h.last("a", 10).is_empty(), "oldest topic evicted");
        assert_eq!(h.topics().len(), 2);
        h.record(&msg("c", b"123456789"));
        assert!(h.bytes() <= 10);
        h.record(&msg("d", &[0; 11]));
        assert!(
            h.last("d", 1).is_empty(),
            "a payload larger than the whole budget is not kept"
        );
    }
}
