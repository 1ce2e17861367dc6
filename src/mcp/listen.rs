//! `subscriptions/listen` (2026-07-28): one request that stays open and
//! carries the notifications its filter asks for, tagged with its id, until
//! the client cancels it or the server shuts down.

use super::lifecycle;
use super::message::{Outgoing, Sink};
use super::method::Method;
use super::params::{self, Field, Obj};
use super::{resources, Conn};
use crate::jsonrpc::{code, Id, RpcError};
use crate::sync::lock;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use tokio_util::sync::CancellationToken;

/// One open listen stream, as shutdown needs it.
pub(super) struct Open {
    /// The listen request's id, named in the closing `notifications/cancelled`.
    id: Id,
    /// Where the stream's messages go (the listen's own answer slot).
    reply: Sink,
    /// Ends the listen request (it sends no answer then).
    cancel: CancellationToken,
    /// The stream's watches; dropped with it.
    _watches: Vec<resources::Watch>,
}

impl Conn {
    /// `subscriptions/listen` (2026-07-28): opens the watches the filter asks
    /// for, acknowledges what it honours, then stays open, sending tagged
    /// notifications, until the client cancels it (no answer then) or the
    /// server shuts down (see [`Conn::end_listens`]). Everything it sends
    /// goes to `reply`, the listen's own answer slot.
    ///
    /// Honoured: `resourceSubscriptions` (every URI must be a resource that
    /// has live updates, else the listen fails with -32602 and opens
    /// nothing) and `resourcesListChanged` (new topics on the default
    /// session). Tools and prompts never change, so `toolsListChanged` and
    /// `promptsListChanged` are left out of the acknowledgement.
    pub(super) async fn listen(
        &self,
        id: &Id,
        params: Option<&Value>,
        cancel: CancellationToken,
        reply: &Sink,
    ) -> Outgoing {
        let invalid = |message: &str| {
            Outgoing::error(
                Some(id.clone()),
                RpcError::new(code::INVALID_PARAMS, message),
            )
        };
        let Some(params::Listen {
            notifications: Obj(filter),
        }) = params::parse(params)
        else {
            return invalid("Invalid params: subscriptions/listen needs params.notifications, e.g. {\"resourceSubscriptions\": [\"mqtt://default/topic/a/b\"], \"resourcesListChanged\": true}");
        };
        let uris: Vec<String> = match filter.resource_subscriptions {
            Field::Absent | Field::Valid(None) => Vec::new(),
            Field::Valid(Some(mut u)) => {
                u.dedup();
                u
            }
            Field::Invalid => return invalid("Invalid params: notifications.resourceSubscriptions must be an array of resource URIs"),
        };
        let list_changed = filter.resources_list_changed == Field::Valid(true);
        let start = CancellationToken::new();
        let emit = |updated, list_changed| resources::Emit {
            updated,
            list_changed,
            subscription_id: Some(id.to_value()),
            start: Some(start.clone()),
        };
        let interval = self.app.config.resource_update_interval;
        let mut watches = Vec::new();
        for uri in &uris {
            match resources::subscribe(&self.app, uri, reply.clone(), interval, emit(true, false))
                .await
            {
                Ok(w) => watches.push(w),
                Err(mut e) => {
                    if e.code == resources::RESOURCE_NOT_FOUND {
                        e.code = code::INVALID_PARAMS;
                    }
                    e.message = format!(
                        "{} (in notifications.resourceSubscriptions; nothing was subscribed)",
                        e.message
                    );
                    return Outgoing::error(Some(id.clone()), e);
                }
            }
        }
        let topics = resources::Uri::Topics(crate::session::DEFAULT_SESSION.to_string()).render();
        let list_changed = list_changed
            && match resources::subscribe(
                &self.app,
                &topics,
                reply.clone(),
                interval,
                emit(false, true),
            )
            .await
            {
                Ok(w) => {
                    watches.push(w);
                    true
                }
                Err(_) => false,
            };
        let mut honoured = serde_json::Map::new();
        if list_changed {
            honoured.insert("resourcesListChanged".into(), Value::Bool(true));
        }
        if !uris.is_empty() {
            honoured.insert("resourceSubscriptions".into(), json!(uris));
        }
        let key = self.listen_keys.fetch_add(1, Ordering::Relaxed);
        let open = Open {
            id: id.clone(),
            reply: reply.clone(),
            cancel: cancel.clone(),
            _watches: watches,
        };
        lock(&self.listens).insert(key, open);
        // Removes the watches however this future ends (cancelled = dropped).
        struct Registered<'a>(&'a Conn, u64);
        impl Drop for Registered<'_> {
            fn drop(&mut self) {
                lock(&self.0.listens).remove(&self.1);
            }
        }
        let _registered = Registered(self, key);
        reply
            .notify(
                Method::SubscriptionsAcknowledged,
                json!({
                    "_meta": { lifecycle::META_SUBSCRIPTION_ID: id.to_value() },
                    "notifications": honoured
                }),
            )
            .await;
        start.cancel();
        cancel.cancelled().await;
        // Not reached in practice: the task around us stops polling when
        // `cancel` fires and sends nothing for a cancelled request.
        Outgoing::error(
            Some(id.clone()),
            RpcError::new(code::INTERNAL_ERROR, "the listen stream ended"),
        )
    }

    /// Ends every open listen stream: tells the client, then cancels the
    /// request (which sends no answer) and drops its watches.
    pub(super) async fn end_listens(&self) {
        let open: Vec<Open> = lock(&self.listens).drain().map(|(_, open)| open).collect();
        for listen in open {
            listen
                .reply
                .notify(
                    Method::Cancelled,
                    json!({ "requestId": listen.id.to_value(), "reason": "the server is shutting down" }),
                )
                .await;
            listen.cancel.cancel();
        }
    }
}
