//! The names births give to metric aliases. Sparkplug DATA and CMD
//! messages may carry only a metric's alias; its name and datatype are in
//! the NBIRTH (node metrics) or DBIRTH (device metrics) that came before.
//! A session keeps what it learned per birth topic here, bounded, and
//! refreshes it from the connection's history when a message names an
//! alias it does not know (a rebirth it did not show).

use super::proto::MetricName;
use prost::Message as _;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Birth topics remembered per session; the oldest is forgotten first.
const MAX_BIRTHS: usize = 10_000;
/// Names remembered per birth.
const MAX_NAMES: usize = 100_000;

/// A metric as its birth declared it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// The metric's name.
    pub name: String,
    /// Its datatype number, if the birth gave one.
    pub datatype: Option<u32>,
}

/// The metrics one birth declared, by alias and by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Names {
    /// Alias to name and datatype.
    aliases: HashMap<u64, Known>,
    /// Name to datatype, for DATA messages that name a metric but leave
    /// its datatype to the birth.
    datatypes: HashMap<String, u32>,
}

impl Names {
    /// Learns the names in a birth's metric fields (undecodable ones are skipped).
    pub fn from_metrics<'a>(metrics: impl IntoIterator<Item = &'a [u8]>) -> Names {
        let mut names = Names::default();
        for field in metrics {
            if names.datatypes.len() >= MAX_NAMES || names.aliases.len() >= MAX_NAMES {
                break;
            }
            let Ok(m) = MetricName::decode(field) else {
                continue;
            };
            let Some(name) = m.name else { continue };
            if let Some(dt) = m.datatype {
                names.datatypes.insert(name.clone(), dt);
            }
            if let Some(alias) = m.alias {
                names.aliases.insert(
                    alias,
                    Known {
                        name,
                        datatype: m.datatype,
                    },
                );
            }
        }
        names
    }

    /// The metric with this alias.
    pub fn by_alias(&self, alias: u64) -> Option<&Known> {
        self.aliases.get(&alias)
    }

    /// The datatype the birth declared for this name.
    pub fn by_name(&self, name: &str) -> Option<u32> {
        self.datatypes.get(name).copied()
    }

    /// The alias the birth gave this name.
    pub fn alias_of(&self, name: &str) -> Option<u64> {
        self.aliases
            .iter()
            .find(|(_, k)| k.name == name)
            .map(|(alias, _)| *alias)
    }

    /// Whether the birth declared this alias.
    pub fn has_alias(&self, alias: u64) -> bool {
        self.aliases.contains_key(&alias)
    }
}

/// The births one session has learned, keyed by birth topic
/// (`spBv1.0/G/NBIRTH/N` or `spBv1.0/G/DBIRTH/N/D`).
#[derive(Debug, Default)]
pub struct Births {
    /// Names per birth topic, and the order they were first learned in.
    inner: Mutex<Learned>,
}

/// Names per birth topic, and the order they were first learned in.
type Learned = (HashMap<String, Arc<Names>>, VecDeque<String>);

impl Births {
    /// Remembers (or replaces) what a birth declared.
    pub fn learn(&self, birth_topic: &str, names: Names) {
        let mut inner = crate::sync::lock(&self.inner);
        let (map, order) = &mut *inner;
        if map
            .insert(birth_topic.to_string(), Arc::new(names))
            .is_none()
        {
            order.push_back(birth_topic.to_string());
            while order.len() > MAX_BIRTHS {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
    }

    /// What the birth on this topic declared, if the session learned it.
    pub fn get(&self, birth_topic: &str) -> Option<Arc<Names>> {
        crate::sync::lock(&self.inner).0.get(birth_topic).cloned()
    }

    /// Birth topics remembered.
    pub fn len(&self) -> usize {
        crate::sync::lock(&self.inner).0.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_past_the_cap() {
        let births = Births::default();
        for i in 0..MAX_BIRTHS + 5 {
            births.learn(&format!("spBv1.0/g/NBIRTH/n{i}"), Names::default());
        }
        assert_eq!(births.len(), MAX_BIRTHS);
        assert!(births.get("spBv1.0/g/NBIRTH/n0").is_none());
        assert!(births
            .get(&format!("spBv1.0/g/NBIRTH/n{}", MAX_BIRTHS + 4))
            .is_some());
    }
}
