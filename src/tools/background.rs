//! `subscribe`, `read_messages`, `unsubscribe`, `list_subscriptions`.

use super::common;
use super::{params, results, Deadline, ToolContext, ToolError};
use crate::mqtt::client::SubAckCode;
use crate::session::rfc3339;
use crate::subscriptions::{BgSub, MAX_PER_SESSION};

/// Depth of the route feeding a background buffer.
const ROUTE_DEPTH: usize = 8 * 1024;

/// Starts a background subscription.
pub async fn subscribe(
    ctx: &ToolContext,
    p: params::Subscribe,
    deadline: Deadline,
) -> Result<results::Subscribe, ToolError> {
    let filters = common::filters(p.filter, p.filters)?;
    let s = common::session(ctx, p.session_id.as_deref()).await?;
    if s.subscriptions.len() >= MAX_PER_SESSION {
        return Err(ToolError::Failed(format!("this session already has {MAX_PER_SESSION} background subscriptions; unsubscribe some first (list_subscriptions shows them)")));
    }
    let qos = common::qos(p.qos, 0);
    let limits = (
        p.buffer_messages.unwrap_or(1000) as usize,
        p.buffer_bytes.unwrap_or(8 * 1024 * 1024) as usize,
    );
    let sub = common::open(ctx, &s, &filters, qos, ROUTE_DEPTH, deadline.remaining()).await?;
    let granted = sub.granted.iter().map(|(_, c)| match c {
        SubAckCode::Granted(q) => *q as u64,
        SubAckCode::Refused(c) => *c as u64,
    });
    let granted: Vec<u64> = granted.collect();
    let id = format!(
        "sub_{}",
        crate::secret::random_hex(8).map_err(ToolError::internal)?
    );
    let bg = s.subscriptions.insert(BgSub::start(
        id.clone(),
        s.id.clone(),
        filters.clone(),
        qos,
        sub,
        limits,
    ));
    Ok(results::Subscribe {
        subscription_id: bg.id.clone(),
        session_id: s.id.clone(),
        filters,
        granted_qos: granted,
        buffer_messages: limits.0 as u64,
        buffer_bytes: limits.1 as u64,
    })
}

fn not_found(id: &str) -> ToolError {
    ToolError::Failed(format!("no background subscription {id:?} in this session; list_subscriptions shows the open ones (pass the session_id they belong to)"))
}

/// Reads buffered messages after a cursor.
pub async fn read_messages(
    ctx: &ToolContext,
    p: params::ReadMessages,
    deadline: Deadline,
) -> Result<results::ReadMessages, ToolError> {
    let s = common::session(ctx, p.session_id.as_deref()).await?;
    let bg = s
        .subscriptions
        .get(&p.subscription_id)
        .ok_or_else(|| not_found(&p.subscription_id))?;
    let since = p.since.unwrap_or(0);
    let limit = p.limit.unwrap_or(100) as usize;
    let preview = p.preview_bytes.unwrap_or(2048) as usize;
    let wait = deadline.cut(deadline.window());
    let mut read = bg.read(since, limit);
    if read.msgs.is_empty() && !wait.is_zero() {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let notified = bg.notify.notified();
            read = bg.read(since, limit);
            if !read.msgs.is_empty() {
                break;
            }
            tokio::select! {
                _ = ctx.cancel.cancelled() => break,
                _ = notified => {}
                _ = tokio::time::sleep_until(until) => { read = bg.read(since, limit); break; }
            }
        }
    }
    let crate::subscriptions::ReadOut {
        msgs,
        lost,
        gaps,
        more,
        next,
    } = read;
    let (buffered, _, total, _, _) = bg.stats();
    Ok(results::ReadMessages {
        messages: msgs
            .iter()
            .map(|(seq, m)| {
                let mut shown = common::message_json(m, preview, common::Seen::of(&s));
                shown.seq = Some(i64::try_from(*seq).unwrap_or(i64::MAX));
                shown
            })
            .collect(),
        next_cursor: next,
        lost,
        gaps: gaps
            .into_iter()
            .map(|g| results::ReadMessagesGapsItem {
                at: rfc3339(g.at),
                after_seq: g.after_seq,
                reason: g.reason,
            })
            .collect(),
        more,
        buffered: buffered as u64,
        total_received: total,
    })
}

/// Stops a background subscription.
pub async fn unsubscribe(
    ctx: &ToolContext,
    p: params::Unsubscribe,
    _deadline: Deadline,
) -> Result<results::Unsubscribe, ToolError> {
    let s = common::session(ctx, p.session_id.as_deref()).await?;
    let bg = s
        .subscriptions
        .remove(&p.subscription_id)
        .ok_or_else(|| not_found(&p.subscription_id))?;
    let (_, _, total, _, _) = bg.stats();
    Ok(results::Unsubscribe {
        subscription_id: bg.id.clone(),
        unsubscribed: true,
        total_received: total,
        unread: bg.unread() as u64,
    })
}

/// Lists background subscriptions.
pub async fn list_subscriptions(
    ctx: &ToolContext,
    p: params::ListSubscriptions,
    _deadline: Deadline,
) -> Result<results::ListSubscriptions, ToolError> {
    let sessions = match &p.session_id {
        Some(id) => vec![ctx.app.sessions.get(Some(id))?],
        None => {
            ctx.app.wait_default().await;
            ctx.app.sessions.list()
        }
    };
    let mut out = Vec::new();
    for s in sessions {
        for bg in s.subscriptions.all() {
            let (buffered, bytes, last, reconnects, lost) = bg.stats();
            out.push(results::ListSubscriptionsSubscriptionsItem {
                subscription_id: bg.id.clone(),
                session_id: bg.session_id.clone(),
                filters: bg.filters.clone(),
                qos: bg.qos as u64,
                created_at: rfc3339(bg.created_at),
                total_received: last,
                buffered: buffered as u64,
                buffered_bytes: bytes as u64,
                lost,
                last_seq: last,
                reconnects: reconnects as u64,
            });
        }
    }
    Ok(results::ListSubscriptions { subscriptions: out })
}
