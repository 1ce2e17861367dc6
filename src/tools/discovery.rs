//! `list_topics`: topic discovery over a window, as a sorted, paged list and
//! a tree of levels.

use super::common::{self, ms};
use super::{params, results, Deadline, ToolContext, ToolError};
use crate::mqtt::client::Message;
use crate::payload;
use crate::session::rfc3339;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Most topics tracked by one discovery (memory bound).
const MAX_TOPICS: usize = 100_000;
/// Depth of the returned tree; deeper levels are counted, not listed.
const TREE_DEPTH: usize = 4;
/// Children listed per tree node.
const TREE_WIDTH: usize = 100;

/// What discovery learned about one topic.
pub(super) struct TopicStats {
    pub messages: u64,
    pub live: u64,
    pub retained: bool,
    pub last_seen: SystemTime,
    pub last: Arc<Message>,
}

/// Listens on `filters` for the call's window: first until the retained
/// replay is over (quiet for 200 ms, at most `max(window, 1 s)` and never past
/// the deadline), then for the rest of the window.
pub(super) async fn observe(
    ctx: &ToolContext,
    s: &crate::session::Session,
    filters: &[String],
    deadline: Deadline,
) -> Result<(HashMap<String, TopicStats>, u64, Duration), ToolError> {
    let start = Instant::now();
    let window = deadline.window();
    let mut sub = common::open(ctx, s, filters, 0, 16 * 1024, deadline.reserving(window)).await?;
    let mut topics: HashMap<String, TopicStats> = HashMap::new();
    let mut on = |m: Arc<Message>| {
        if let Some(t) = topics.get_mut(&m.topic) {
            t.messages += 1;
            t.live += u64::from(!m.retain);
            t.retained |= m.retain;
            t.last_seen = m.received_at;
            t.last = m;
        } else if topics.len() < MAX_TOPICS {
            topics.insert(
                m.topic.clone(),
                TopicStats {
                    messages: 1,
                    live: u64::from(!m.retain),
                    retained: m.retain,
                    last_seen: m.received_at,
                    last: m,
                },
            );
        }
        true
    };
    let settle = deadline.cut(window.max(Duration::from_secs(1)));
    let stop = common::drain(
        ctx,
        &mut sub,
        settle,
        Some(Duration::from_millis(200)),
        &mut on,
    )
    .await;
    let left = deadline.cut(window.saturating_sub(start.elapsed()));
    if stop == common::Stop::Quiet && !left.is_zero() {
        common::drain(ctx, &mut sub, left, None, &mut on).await;
    }
    let dropped = sub.dropped();
    Ok((topics, dropped, start.elapsed()))
}

fn tree(topics: &[(&String, &TopicStats)]) -> Value {
    #[derive(Default)]
    struct Node {
        topics: u64,
        messages: u64,
        children: BTreeMap<String, Node>,
    }
    let mut root = Node::default();
    for (name, st) in topics {
        let mut node = &mut root;
        node.topics += 1;
        node.messages += st.messages;
        for level in name.split('/').take(TREE_DEPTH) {
            node = node.children.entry(level.to_string()).or_default();
            node.topics += 1;
            node.messages += st.messages;
        }
    }
    fn render(n: &Node) -> Value {
        let mut children = Map::new();
        for (k, c) in n.children.iter().take(TREE_WIDTH) {
            children.insert(k.clone(), render(c));
        }
        let mut v = json!({"topics": n.topics, "messages": n.messages});
        if !children.is_empty() {
            v["children"] = Value::Object(children);
        }
        if n.children.len() > TREE_WIDTH {
            v["more_children"] = json!(n.children.len() - TREE_WIDTH);
        }
        v
    }
    render(&root)
}

/// Discovers topics under a filter.
pub async fn list_topics(
    ctx: &ToolContext,
    p: params::ListTopics,
    deadline: Deadline,
) -> Result<results::ListTopics, ToolError> {
    let filter = p.filter.clone().unwrap_or_else(|| "#".into());
    let filters = common::filters(Some(filter), None)?;
    let s = common::session(ctx, p.session_id.as_deref()).await?;
    let limit = p.limit.unwrap_or(200) as usize;
    let offset = match &p.cursor {
        None => 0,
        Some(c) => c
            .strip_prefix('o')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                ToolError::InvalidArguments(vec![
                    "/cursor: pass next_cursor from the previous list_topics answer".into(),
                ])
            })?,
    };
    let preview = p.preview_bytes.unwrap_or(80) as usize;
    let window = deadline.window();
    let (topics, dropped, elapsed) = observe(ctx, &s, &filters, deadline).await?;
    let prefix = p.prefix.clone().unwrap_or_default();
    let mut sorted: Vec<(&String, &TopicStats)> = topics
        .iter()
        .filter(|(t, _)| t.starts_with(&prefix))
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let secs = elapsed.as_secs_f64().max(0.001);
    let total = sorted.len();
    let page: Vec<results::ListTopicsTopicsItem> = sorted
        .iter()
        .skip(offset)
        .take(limit)
        .map(|(t, st)| results::ListTopicsTopicsItem {
            topic: (*t).clone(),
            messages: st.messages,
            rate_per_s: ((st.live as f64 / secs) * 100.0).round() / 100.0,
            retained: st.retained,
            last_seen: rfc3339(st.last_seen),
            format: payload::format_of(&st.last.payload).as_str().into(),
            preview: payload::preview(&st.last.payload, preview),
        })
        .collect();
    let end = offset + page.len();
    let _ = ms(elapsed);
    Ok(results::ListTopics {
        returned: page.len() as u64,
        topics: page,
        tree: tree(&sorted),
        total_topics: total as u64,
        next_cursor: (end < total).then(|| format!("o{end}")),
        messages: topics.values().map(|t| t.messages).sum(),
        dropped,
        window_ms: window.as_millis() as u64,
    })
}
