//! What a session may do: read-only mode, topic allow/deny lists for publish
//! and subscribe (MQTT filters; a deny wins), payload and collect caps, and a
//! publish rate limit. Pure logic, checked by the tools before they touch the
//! broker.

use crate::mqtt::topic;
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The policy as written in the config file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Refuse every tool that writes to the broker.
    #[serde(default)]
    pub read_only: bool,
    /// Topics that may be published to (filters); empty = all.
    #[serde(default)]
    pub publish_allow: Vec<String>,
    /// Topics that may never be published to (filters).
    #[serde(default)]
    pub publish_deny: Vec<String>,
    /// Filters that may be subscribed to; empty = all but `$` topics.
    #[serde(default)]
    pub subscribe_allow: Vec<String>,
    /// Filters that may never be subscribed to.
    #[serde(default)]
    pub subscribe_deny: Vec<String>,
    /// Largest payload a publish may carry.
    pub max_payload_bytes: Option<usize>,
    /// Most messages one collect may return.
    pub max_collect_messages: Option<usize>,
    /// Most publishes per session per minute.
    pub max_publishes_per_minute: Option<u32>,
}

/// Why the policy refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A filter in the config is not a valid MQTT filter.
    #[error("policy filter {0:?} is invalid: {1}")]
    BadFilter(String, topic::TopicError),
    /// Writes are disabled.
    #[error("this session is read-only by policy ({0}): publishing, clearing retained messages and requests are disabled. Ask the operator to change the profile, or use read-only tools")]
    ReadOnly(String),
    /// Topic not allowed for publish.
    #[error("publishing to {topic:?} is not allowed by policy ({who}){hint}")]
    PublishDenied {
        /// The topic.
        topic: String,
        /// Profile name.
        who: String,
        /// What is allowed.
        hint: String,
    },
    /// Filter not allowed for subscribe.
    #[error("subscribing to {filter:?} is not allowed by policy ({who}){hint}")]
    SubscribeDenied {
        /// The filter.
        filter: String,
        /// Profile name.
        who: String,
        /// What is allowed.
        hint: String,
    },
    /// Payload over the cap.
    #[error("the payload is {size} bytes; the policy ({who}) allows at most {max}")]
    PayloadTooLarge {
        /// Actual size.
        size: usize,
        /// Cap.
        max: usize,
        /// Profile name.
        who: String,
    },
    /// Rate limit hit.
    #[error("the policy ({who}) allows {max} publishes per minute; try again in {wait_s} s")]
    RateLimited {
        /// The limit.
        max: u32,
        /// Seconds until a slot frees.
        wait_s: u64,
        /// Profile name.
        who: String,
    },
}

/// A checked policy for one profile (or for ad-hoc sessions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Shown in refusals: `profile "x"` or `ad-hoc sessions`.
    pub who: String,
    /// The rules.
    pub rules: PolicyConfig,
}

impl Policy {
    /// Validates every filter in `rules`.
    pub fn new(who: impl Into<String>, rules: PolicyConfig) -> Result<Self, PolicyError> {
        for f in rules
            .publish_allow
            .iter()
            .chain(&rules.publish_deny)
            .chain(&rules.subscribe_allow)
            .chain(&rules.subscribe_deny)
        {
            topic::validate_filter(f).map_err(|e| PolicyError::BadFilter(f.clone(), e))?;
        }
        Ok(Self {
            who: who.into(),
            rules,
        })
    }

    /// Everything allowed.
    pub fn permissive(who: impl Into<String>) -> Self {
        Self {
            who: who.into(),
            rules: PolicyConfig::default(),
        }
    }

    /// Read-only mode.
    pub fn read_only(&self) -> bool {
        self.rules.read_only
    }

    /// May the session write at all?
    pub fn check_write(&self) -> Result<(), PolicyError> {
        if self.rules.read_only {
            return Err(PolicyError::ReadOnly(self.who.clone()));
        }
        Ok(())
    }

    /// May `topic` be published to with a payload of `size` bytes?
    pub fn check_publish(&self, topic_name: &str, size: usize) -> Result<(), PolicyError> {
        self.check_write()?;
        let denied = self
            .rules
            .publish_deny
            .iter()
            .any(|d| topic::matches(d, topic_name));
        let allowed = self.rules.publish_allow.is_empty()
            || self
                .rules
                .publish_allow
                .iter()
                .any(|a| topic::matches(a, topic_name));
        if denied || !allowed {
            return Err(PolicyError::PublishDenied {
                topic: topic_name.into(),
                who: self.who.clone(),
                hint: hint(&self.rules.publish_allow),
            });
        }
        if let Some(max) = self.rules.max_payload_bytes {
            if size > max {
                return Err(PolicyError::PayloadTooLarge {
                    size,
                    max,
                    who: self.who.clone(),
                });
            }
        }
        Ok(())
    }

    /// May `filter` be subscribed to? With an allow list, `$` filters need an explicit entry (`#` does not cover `$SYS`); without one, all is allowed. A
    /// deny that covers the whole filter refuses it; denies that overlap it
    /// partly are returned, and messages on their topics must be dropped
    /// before anyone sees them.
    pub fn check_subscribe(&self, filter: &str) -> Result<Vec<String>, PolicyError> {
        let denied = self
            .rules
            .subscribe_deny
            .iter()
            .any(|d| topic::covers(d, filter));
        let allowed = if self.rules.subscribe_allow.is_empty() {
            true
        } else {
            self.rules
                .subscribe_allow
                .iter()
                .any(|a| topic::covers(a, filter))
        };
        if denied || !allowed {
            let mut h = hint(&self.rules.subscribe_allow);
            if topic::is_dollar_filter(filter) && !self.rules.subscribe_allow.is_empty() {
                h.push_str(
                    " ($ topics such as $SYS must be listed explicitly: # does not cover them)",
                );
            }
            return Err(PolicyError::SubscribeDenied {
                filter: filter.into(),
                who: self.who.clone(),
                hint: h,
            });
        }
        Ok(self
            .rules
            .subscribe_deny
            .iter()
            .filter(|d| topic::intersects(d, filter))
            .cloned()
            .collect())
    }

    /// Caps a collect's message count.
    pub fn cap_collect(&self, requested: usize) -> usize {
        self.rules
            .max_collect_messages
            .map_or(requested, |m| requested.min(m.max(1)))
    }
}

fn hint(allow: &[String]) -> String {
    if allow.is_empty() {
        String::new()
    } else {
        format!("; allowed: {}", allow.join(", "))
    }
}

/// A sliding one-minute window of publish times, per session.
#[derive(Debug, Default)]
pub struct RateLimiter {
    /// Times of recent publishes, oldest first.
    times: Mutex<VecDeque<Instant>>,
}

impl RateLimiter {
    /// Takes a slot if the policy allows one now.
    pub fn take(&self, policy: &Policy, now: Instant) -> Result<(), PolicyError> {
        let Some(max) = policy.rules.max_publishes_per_minute else {
            return Ok(());
        };
        let mut t = crate::sync::lock(&self.times);
        while t
            .front()
            .is_some_and(|f| now.duration_since(*f) >= Duration::from_secs(60))
        {
            t.pop_front();
        }
        if t.len() >= max as usize {
            let wait = t
                .front()
                .map(|f| Duration::from_secs(60).saturating_sub(now.duration_since(*f)))
                .unwrap_or_default();
            return Err(PolicyError::RateLimited {
                max,
                wait_s: wait.as_secs().max(1),
                who: policy.who.clone(),
            });
        }
        t.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(f: impl FnOnce(&mut PolicyConfig)) -> Policy {
        let mut c = PolicyConfig::default();
        f(&mut c);
        Policy::new("profile home", c).unwrap()
    }

    #[test]
    fn deny_wins_over_allow() {
        let p = policy(|c| {
            c.publish_allow = vec!["home/#".into()];
            c.publish_deny = vec!["home/garage/#".into()];
        });
        assert!(p.check_publish("home/light/set", 2).is_ok());
        assert!(matches!(
            p.check_publish("home/garage/door/set", 2),
            Err(PolicyError::PublishDenied { .. })
        ));
        assert!(matches!(
            p.check_publish("office/x", 2),
            Err(PolicyError::PublishDenied { .. })
        ));
    }

    #[test]
    fn read_only_refuses_writes() {
        let p = policy(|c| c.read_only = true);
        assert!(matches!(
            p.check_publish("a", 1),
            Err(PolicyError::ReadOnly(_))
        ));
        assert!(p.check_subscribe("a/#").is_ok());
    }

    #[test]
    fn subscribe_rules() {
        let p = policy(|c| {
            c.subscribe_allow = vec!["home/#".into(), "$SYS/broker/#".into()];
            c.subscribe_deny = vec!["home/secret/#".into()];
        });
        assert_eq!(p.check_subscribe("home/kitchen/temp"), Ok(vec![]));
        assert_eq!(
            p.check_subscribe("home/+/temp"),
            Ok(vec!["home/secret/#".to_string()]),
            "allowed, with the denied part filtered out"
        );
        assert_eq!(
            p.check_subscribe("home/#"),
            Ok(vec!["home/secret/#".to_string()])
        );
        assert!(p.check_subscribe("home/secret/+").is_err(), "wholly denied");
        assert!(p.check_subscribe("#").is_err());
        assert!(p.check_subscribe("$share/g/home/kitchen/#").is_ok());
        assert!(
            p.check_subscribe("$share/g/home/secret/#").is_err(),
            "shared filters are checked on the inner filter"
        );
        assert!(matches!(p.check_subscribe("home/kitchen/#"), Ok(v) if v.is_empty()));
        assert!(p.check_subscribe("$SYS/broker/uptime").is_ok());
        let open = policy(|_| {});
        assert!(open.check_subscribe("#").is_ok());
        let no_sys = policy(|c| c.subscribe_allow = vec!["#".into()]);
        assert!(
            no_sys.check_subscribe("$SYS/#").is_err(),
            "with an allow list, $SYS needs its own entry"
        );
        assert!(
            open.check_subscribe("$SYS/#").is_ok(),
            "no allow list: everything"
        );
    }

    #[test]
    fn caps_and_rate() {
        let p = policy(|c| {
            c.max_payload_bytes = Some(10);
            c.max_collect_messages = Some(50);
            c.max_publishes_per_minute = Some(2);
        });
        assert!(matches!(
            p.check_publish("a", 11),
            Err(PolicyError::PayloadTooLarge { .. })
        ));
        assert_eq!(p.cap_collect(1000), 50);
        let r = RateLimiter::default();
        let t = Instant::now();
        assert!(r.take(&p, t).is_ok());
        assert!(r.take(&p, t).is_ok());
        assert!(matches!(
            r.take(&p, t + Duration::from_secs(30)),
            Err(PolicyError::RateLimited { wait_s: 30, .. })
        ));
        assert!(r.take(&p, t + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn bad_filters_are_rejected_at_load() {
        let c = PolicyConfig {
            publish_deny: vec!["a/#/b".into()],
            ..Default::default()
        };

        assert!(matches!(
            Policy::new("x", c),
            Err(PolicyError::BadFilter(..))
        ));
    }
}
