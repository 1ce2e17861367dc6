//! `get_retained` and `clear_retained`.

use super::common;
use super::publish::await_outcome;
use super::{params, results, Deadline, ToolContext, ToolError};
use crate::mqtt::client::{Message, PublishOutcome};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Gathers retained messages under `filter` until none arrived for `settle`
/// (or `until`); returns the first `max` in topic order (so the answer does not depend on
/// the order the broker replays them) and how many more there were.
async fn gather(
    ctx: &ToolContext,
    s: &crate::session::Session,
    filter: &str,
    max: usize,
    settle: Duration,
    until: Instant,
) -> Result<(BTreeMap<String, Arc<Message>>, u64), ToolError> {
    let left = || until.saturating_duration_since(Instant::now());
    /// Retained topics tracked in one call (memory bound).
    const TRACK: usize = 100_000;
    let filters = common::filters(Some(filter.to_string()), None)?;
    let mut sub = common::open(ctx, s, &filters, 0, 16 * 1024, left()).await?;
    let mut found: BTreeMap<String, Arc<Message>> = BTreeMap::new();
    let mut untracked = 0u64;
    common::drain(ctx, &mut sub, left(), Some(settle), |m| {
        // Live traffic is not retained state; an empty retained payload is a deletion.
        if m.retain && !m.payload.is_empty() {
            if found.len() < TRACK || found.contains_key(&m.topic) {
                found.insert(m.topic.clone(), m);
            } else {
                untracked += 1;
            }
        }
        true
    })
    .await;
    let rest = if found.len() > max {
        found.split_off(&found.keys().nth(max).cloned().unwrap_or_default())
    } else {
        BTreeMap::new()
    };
    Ok((found, rest.len() as u64 + untracked))
}

/// Returns the retained messages under a filter.
pub async fn get_retained(
    ctx: &ToolContext,
    p: params::GetRetained,
    deadline: Deadline,
) -> Result<results::GetRetained, ToolError> {
    let filter = p.filter.clone().unwrap_or_else(|| "#".into());
    let s = common::session(ctx, p.session_id.as_deref()).await?;
    let limit = p.limit.unwrap_or(100) as usize;
    let settle = Duration::from_millis(p.settle_ms.unwrap_or(300));
    let preview = p.preview_bytes.unwrap_or(2048) as usize;
    let (found, more) = gather(ctx, &s, &filter, limit, settle, deadline.at()).await?;
    Ok(results::GetRetained {
        count: found.len() as u64,
        messages: found
            .values()
            .map(|m| common::message_json(m, preview, common::Seen::of(&s)))
            .collect(),
        truncated: more > 0,
        filter,
    })
}

/// Clears retained messages (or lists what would be cleared).
pub async fn clear_retained(
    ctx: &ToolContext,
    p: params::ClearRetained,
    deadline: Deadline,
) -> Result<results::ClearRetained, ToolError> {
    let s = common::session(ctx, p.session_id.as_deref()).await?;
    let dry_run = p.dry_run.unwrap_or(true);
    let max = p.max.unwrap_or(100) as usize;
    let settle = Duration::from_millis(p.settle_ms.unwrap_or(300));
    // A third of the budget stays for the clears and their acknowledgements.
    let until = deadline.at() - deadline.budget() / 3;
    let (found, more) = gather(ctx, &s, &p.filter, max, settle, until).await?;
    let topics: Vec<String> = found.keys().cloned().collect();
    let mut failed = Vec::new();
    let mut cleared = 0u64;
    if !dry_run {
        s.policy
            .check_write()
            .map_err(|e| common::refused(ctx, &s, &p.filter, e))?;
        for t in &topics {
            if let Err(e) = s
                .policy
                .check_publish(t, 0)
                .and_then(|_| s.rate.take(&s.policy, std::time::Instant::now()))
            {
                failed.push(format!("{t}: {}", common::refused(ctx, &s, t, e)));
                continue;
            }
            let sent = s
                .link
                .publish(t, Bytes::new(), 1, true, None)
                .map_err(common::request_error);
            let outcome = match sent {
                Ok(rx) => await_outcome(ctx, t, rx, deadline.remaining()).await,
                Err(e) => Err(e),
            };
            super::publish::audit_publish(ctx, &s, t, 0, &outcome);
            match outcome {
                Ok(PublishOutcome::Acknowledged { .. }) | Ok(PublishOutcome::Sent) => cleared += 1,
                Ok(PublishOutcome::Unknown { reason }) => {
                    failed.push(format!("{t}: no acknowledgement: {}", reason.explain()))
                }
                Ok(PublishOutcome::Rejected { reason_code }) => {
                    failed.push(format!("{t}: rejected (0x{reason_code:02X})"))
                }
                Err(e) => failed.push(format!("{t}: {e}")),
            }
            if ctx.cancel.is_cancelled() {
                break;
            }
        }
        tracing::info!(session = %s.id, filter = %p.filter, cleared, "cleared retained messages");
    }
    Ok(results::ClearRetained {
        dry_run,
        filter: p.filter,
        topics,
        cleared,
        remaining: more,
        failed,
    })
}
