//! `subscriptions/listen` (2026-07-28): one request that stays open and
//! carries the notifications its filter asks for, tagged with its id, until
//! the client cancels it or the server shuts down.

use super::lifecycle;
use super::method::Method;
use super::params::{self, Field, Obj};
use super::{resources, Conn};
use crate::jsonrpc::{self, code, Id};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

impl Conn {
    /// `subscriptions/listen` (2026-07-28): opens the watches the filter asks
    /// for, acknowledges what it honours, then stays open, sending tagged
    /// notifications, until the client cancels it (no answer then) or the
    /// server shuts down (see [`Conn::end_listens`]).
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
    ) -> String {
        let Some(params::Listen {
            notifications: Obj(filter),
        }) = params::parse(params)
        else {
            return self.err(Some(id), code::INVALID_PARAMS, "Invalid params: subscriptions/listen needs params.notifications, e.g. {\"resourceSubscriptions\": [\"mqtt://default/topic/a/b\"], \"resourcesListChanged\": true}");
        };
        let uris: Vec<String> = match filter.resource_subscriptions {
            Field::Absent | Field::Valid(None) => Vec::new(),
            Field::Valid(Some(mut u)) => {
                u.dedup();
                u
            }
            Field::Invalid => return self.err(Some(id), code::INVALID_PARAMS, "Invalid params: notifications.resourceSubscriptions must be an array of resource URIs"),
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
            match resources::subscribe(
                &self.app,
                uri,
                self.out.clone(),
                interval,
                emit(true, false),
            )
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
                    return jsonrpc::error_response(Some(id), &e);
                }
            }
        }
        let topics = resources::Uri::Topics(crate::session::DEFAULT_SESSION.to_string()).render();
        let list_changed = list_changed
            && match resources::subscribe(
                &self.app,
                &topics,
                self.out.clone(),
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
        self.listens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), watches);
        // Removes the watches however this future ends (cancelled = dropped).
        struct Registered<'a>(&'a Conn, &'a Id);
        impl Drop for Registered<'_> {
            fn drop(&mut self) {
                self.0
                    .listens
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(self.1);
            }
        }
        let _registered = Registered(self, id);
        self.send(jsonrpc::notification(
            Method::SubscriptionsAcknowledged.name(),
            json!({
                "_meta": { lifecycle::META_SUBSCRIPTION_ID: id.to_value() },
                "notifications": honoured
            }),
        ))
        .await;
        start.cancel();
        cancel.cancelled().await;
        // Not reached in practice: the task around us stops polling when
        // `cancel` fires and sends nothing for a cancelled request.
        String::new()
    }

    /// Ends every open listen stream: tells the client, then cancels the
    /// request (which sends no answer) and drops its watches.
    pub(super) async fn end_listens(&self) {
        let ids: Vec<Id> = self
            .listens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(id, _)| id)
            .collect();
        for id in ids {
            self.send(jsonrpc::notification(
                Method::Cancelled.name(),
                json!({ "requestId": id.to_value(), "reason": "the server is shutting down" }),
            ))
            .await;
            self.cancel_inflight(&id);
        }
    }
}
