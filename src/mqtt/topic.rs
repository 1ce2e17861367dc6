//! MQTT topic names and topic filters: validation (MQTT 5 §4.7) and matching,
//! including `$`-topics (never matched by a leading wildcard) and shared
//! subscriptions (`$share/group/filter`, matched on the inner filter).

/// Why a topic or filter is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// Empty string.
    #[error("must not be empty")]
    Empty,
    /// More than the 65,535 bytes MQTT can encode.
    #[error("is {0} bytes long; MQTT allows at most 65535")]
    TooLong(usize),
    /// Contains U+0000.
    #[error("must not contain the NUL character")]
    Nul,
    /// A topic name with `+` or `#`.
    #[error("must not contain the wildcards '+' or '#' (use a concrete topic to publish)")]
    WildcardInName,
    /// `#` not alone in the last level, or `+` not alone in its level.
    #[error("has a misplaced wildcard: '+' must fill a whole level and '#' must be the whole last level (e.g. a/+/c or a/#)")]
    BadWildcard,
    /// `$share/` without a group and a filter.
    #[error("is a shared subscription without group or filter; use $share/<group>/<filter>")]
    BadShare,
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > 65535 {
        return Err(TopicError::TooLong(s.len()));
    }
    if s.contains('\0') {
        return Err(TopicError::Nul);
    }
    Ok(())
}

/// Validates a topic name for PUBLISH.
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    check_common(topic)?;
    if topic.contains(['+', '#']) {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Validates a topic filter for SUBSCRIBE.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    let inner = match share_inner(filter) {
        Some(Ok(inner)) => inner,
        Some(Err(e)) => return Err(e),
        None => filter,
    };
    let levels: Vec<&str> = inner.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != levels.len() - 1) {
            return Err(TopicError::BadWildcard);
        }
        if level.contains('+') && *level != "+" {
            return Err(TopicError::BadWildcard);
        }
    }
    Ok(())
}

/// For `$share/group/filter`, the inner filter; None for other filters.
pub fn share_inner(filter: &str) -> Option<Result<&str, TopicError>> {
    let rest = filter.strip_prefix("$share/")?;
    let (group, inner) = match rest.split_once('/') {
        Some(x) => x,
        None => return Some(Err(TopicError::BadShare)),
    };
    if group.is_empty() || inner.is_empty() || group.contains(['+', '#']) {
        return Some(Err(TopicError::BadShare));
    }
    Some(Ok(inner))
}

/// True if `topic` (a valid name) matches `filter` (a valid filter).
pub fn matches(filter: &str, topic: &str) -> bool {
    let filter = match share_inner(filter) {
        Some(Ok(inner)) => inner,
        Some(Err(_)) => return false,
        None => filter,
    };
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// True for filters that start with `$` but are not shared subscriptions:
/// `$SYS/#` and friends, which some brokers (rumqttd) punish by dropping the client.
pub fn is_dollar_filter(filter: &str) -> bool {
    filter.starts_with('$') && !filter.starts_with("$share/")
}

/// The filter a subscription really matches with: `$share/g/f` → `f`.
fn effective(filter: &str) -> &str {
    match share_inner(filter) {
        Some(Ok(inner)) => inner,
        _ => filter,
    }
}

/// True if every topic that `inner` matches is also matched by `outer`
/// (both valid filters). Used for policy allow lists.
pub fn covers(outer: &str, inner: &str) -> bool {
    let (outer, inner) = (effective(outer), effective(inner));
    // A leading wildcard never reaches `$` topics.
    let outer_wild_first = outer.starts_with('+') || outer.starts_with('#');
    if outer_wild_first && inner.starts_with('$') {
        return false;
    }
    let mut o = outer.split('/');
    let mut i = inner.split('/');
    loop {
        match (o.next(), i.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (Some("+"), Some(il)) if il != "#" => {}
            (Some(ol), Some(il)) if ol == il && il != "+" && il != "#" => {}
            _ => return false,
        }
    }
}

/// True if some topic is matched by both filters. Used for policy deny lists
/// (a deny wins whenever it could apply).
pub fn intersects(a: &str, b: &str) -> bool {
    let (a, b) = (effective(a), effective(b));
    // A topic starting with `$` is matched only by filters starting with a
    // literal `$` level; if one filter needs such a topic, the other must name it.
    let wild_first = |f: &str| f.starts_with('+') || f.starts_with('#');
    if (a.starts_with('$') && wild_first(b)) || (b.starts_with('$') && wild_first(a)) {
        return false;
    }
    let mut x = a.split('/');
    let mut y = b.split('/');
    loop {
        match (x.next(), y.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(p), Some(q)) if p == q => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A deliberately naive reference: recursive over level vectors.
    fn reference(filter: &[&str], topic: &[&str], first: bool) -> bool {
        match (filter.first(), topic.first()) {
            (Some(&"#"), Some(t)) if first && t.starts_with('$') => false,
            (Some(&"#"), _) => true,
            (Some(&"+"), Some(t)) => {
                !(first && t.starts_with('$')) && reference(&filter[1..], &topic[1..], false)
            }
            (Some(f), Some(t)) => f == t && reference(&filter[1..], &topic[1..], false),
            (None, None) => true,
            _ => false,
        }
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("".to_string()),
            Just("$SYS".to_string()),
            Just("c d".to_string())
        ]
    }

    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5).prop_map(|v| v.join("/"))
    }

    fn filter() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(prop_oneof![level(), Just("+".to_string())], 0..4),
            any::<bool>(),
        )
            .prop_map(|(mut v, hash)| {
                if hash || v.is_empty() {
                    v.push("#".into());
                }
                v.join("/")
            })
    }

    proptest! {
        #[test]
        fn matches_agrees_with_reference(f in filter(), t in topic()) {
            prop_assume!(validate_topic(&t).is_ok());
            prop_assume!(validate_filter(&f).is_ok());
            let fl: Vec<&str> = f.split('/').collect();
            let tl: Vec<&str> = t.split('/').collect();
            prop_assert_eq!(matches(&f, &t), reference(&fl, &tl, true), "filter {} topic {}", f, t);
            let shared = format!("$share/g/{f}");
            prop_assert_eq!(matches(&shared, &t), matches(&f, &t));
        }

        #[test]
        fn covers_and_intersects_agree_with_matching(a in filter(), b in filter(), t in topic()) {
            prop_assume!(validate_filter(&a).is_ok() && validate_filter(&b).is_ok() && validate_topic(&t).is_ok());
            if covers(&a, &b) && matches(&b, &t) {
                prop_assert!(matches(&a, &t), "{} covers {} but misses {}", a, b, t);
            }
            if matches(&a, &t) && matches(&b, &t) {
                prop_assert!(intersects(&a, &b), "{} and {} both match {}", a, b, t);
            }
            prop_assert_eq!(intersects(&a, &b), intersects(&b, &a));
            prop_assert!(covers(&a, &a));
        }

        #[test]
        fn a_topic_matches_itself(t in topic()) {
            prop_assume!(validate_topic(&t).is_ok());
            prop_assert!(matches(&t, &t));
        }
    }

    #[test]
    fn examples() {
        assert!(matches("sport/tennis/#", "sport/tennis"));
        assert!(matches("sport/#", "sport"));
        assert!(matches("+/+", "/finance"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(!matches("#", "$SYS/uptime"));
        assert!(!matches("+/uptime", "$SYS/uptime"));
        assert!(matches("$SYS/#", "$SYS/uptime"));
        assert!(matches("$share/g/a/+", "a/b"));
    }

    #[test]
    fn covering_and_intersecting() {
        assert!(covers("home/#", "home/+/temp"));
        assert!(covers("home/+/temp", "home/kitchen/temp"));
        assert!(!covers("home/+/temp", "home/#"));
        assert!(!covers("home/kitchen/temp", "home/+/temp"));
        assert!(!covers("#", "$SYS/#"));
        assert!(covers("$SYS/#", "$SYS/broker/uptime"));
        assert!(covers("home/#", "$share/g/home/x"));
        assert!(intersects("home/+/temp", "home/kitchen/#"));
        assert!(intersects("#", "garage/door/set"));
        assert!(!intersects("home/+", "garage/#"));
        assert!(!intersects("#", "$SYS/x"));
        assert!(intersects("$SYS/#", "$SYS/+/x"));
        assert!(intersects("$share/g/garage/#", "garage/door"));
    }

    #[test]
    fn validation() {
        assert_eq!(validate_topic(""), Err(TopicError::Empty));
        assert_eq!(validate_topic("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic("a\0b"), Err(TopicError::Nul));
        assert_eq!(
            validate_topic(&"x".repeat(70_000)),
            Err(TopicError::TooLong(70_000))
        );
        assert!(validate_topic("a//b/").is_ok());
        assert_eq!(validate_filter("a/#/b"), Err(TopicError::BadWildcard));
        assert_eq!(validate_filter("a/b#"), Err(TopicError::BadWildcard));
        assert_eq!(validate_filter("a+/b"), Err(TopicError::BadWildcard));
        assert_eq!(validate_filter("$share/g"), Err(TopicError::BadShare));
        assert_eq!(validate_filter("$share//a"), Err(TopicError::BadShare));
        assert!(validate_filter("+/+/#").is_ok());
        assert!(is_dollar_filter("$SYS/#"));
        assert!(!is_dollar_filter("$share/g/#"));
    }
}
