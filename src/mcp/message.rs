//! The typed messages the MCP core sends, and the [`Sink`] they travel
//! through to a transport. Handlers, tools, resources, listen streams and
//! the log forwarder hand over values here; only the transport turns them
//! into JSON-RPC text, once, with [`Outgoing::write_json`].

use super::method::Method;
use crate::jsonrpc::{self, code, Id, RpcError};
use crate::tools::ToolResult;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// One message from the server to the client.
#[derive(Debug)]
pub enum Outgoing {
    /// The answer to one request.
    Response(Response),
    /// A notification.
    Notification(Notification),
}

/// The answer to one request: a result or a JSON-RPC error.
#[derive(Debug)]
pub struct Response {
    /// The request's id; `None` only when the request had no usable id
    /// (written as `null`).
    pub id: Option<Id>,
    /// What the request produced.
    pub outcome: Result<Reply, RpcError>,
}

/// A successful result.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Reply {
    /// Any result built as JSON (lists, reads, `initialize`).
    Json(Value),
    /// A `tools/call` result, kept typed (its structured content is
    /// serialized once, by the tool, and never parsed back).
    Tool(ToolResult),
}

/// A notification: one of the table's methods, and its params.
#[derive(Debug)]
pub struct Notification {
    /// What it is; [`Method::name`] is written on the wire.
    pub method: Method,
    /// Its params object.
    pub params: Value,
}

impl Notification {
    /// `notifications/progress` for the request that gave `token`.
    pub fn progress(token: &Value, progress: f64, total: Option<f64>, message: &str) -> Self {
        let mut params = json!({"progressToken": token, "progress": progress, "message": message});
        if let Some(t) = total {
            params["total"] = Value::from(t);
        }
        Notification {
            method: Method::Progress,
            params,
        }
    }
}

impl Outgoing {
    /// A successful answer.
    pub fn result(id: Id, reply: Reply) -> Self {
        Outgoing::Response(Response {
            id: Some(id),
            outcome: Ok(reply),
        })
    }

    /// An error answer; `id` None for a request whose id is unknown.
    pub fn error(id: Option<Id>, error: RpcError) -> Self {
        Outgoing::Response(Response {
            id,
            outcome: Err(error),
        })
    }

    /// A notification.
    pub fn notification(method: Method, params: Value) -> Self {
        Outgoing::Notification(Notification { method, params })
    }

    /// Appends the message as one line of JSON-RPC text (no newline): the
    /// one place where the core's messages become text. A result that
    /// cannot be serialized (a bug) becomes a -32603 error for its id.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let written = match self {
            Outgoing::Response(Response {
                id: Some(id),
                outcome: Ok(reply),
            }) => jsonrpc::write_response(out, id, reply),
            Outgoing::Response(Response {
                id,
                outcome: Err(e),
            }) => {
                jsonrpc::write_error(out, id.as_ref(), e);
                Ok(())
            }
            // A result always answers a request with an id.
            Outgoing::Response(Response {
                id: None,
                outcome: Ok(_),
            }) => Ok(()),
            Outgoing::Notification(n) => {
                jsonrpc::write_notification(out, n.method.name(), &n.params)
            }
        };
        if let Err(e) = written {
            out.truncate(start);
            if let Outgoing::Response(r) = self {
                let error = RpcError::new(
                    code::INTERNAL_ERROR,
                    format!("Internal error: the result could not be serialized ({e})"),
                );
                jsonrpc::write_error(out, r.id.as_ref(), &error);
            }
        }
    }

    /// [`Outgoing::write_json`] into a string of its own.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(256);
        self.write_json(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Where the core's messages for one client go: the connection's stream
/// (stdio), an HTTP POST's own answer, or an HTTP session's SSE stream.
/// Bounded; notifications never block the server ([`Sink::try_notify`]).
#[derive(Debug, Clone)]
pub struct Sink(mpsc::Sender<Outgoing>);

impl Sink {
    /// A sink with room for `capacity` messages, and its receiving end.
    pub fn channel(capacity: usize) -> (Sink, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Sink(tx), rx)
    }

    /// Sends a message, waiting for room; a closed receiver drops it (the
    /// client went away).
    pub async fn send(&self, message: Outgoing) {
        let _ = self.0.send(message).await;
    }

    /// Sends a notification if there is room now; false when it was
    /// dropped (a full or closed sink).
    pub fn try_notify(&self, method: Method, params: Value) -> bool {
        self.0
            .try_send(Outgoing::notification(method, params))
            .is_ok()
    }

    /// Sends a notification, waiting for room.
    pub async fn notify(&self, method: Method, params: Value) {
        self.send(Outgoing::notification(method, params)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::{ToolError, ToolResult};

    #[test]
    fn messages_are_written_in_wire_order() {
        let id = Id::Number("7".into());
        let ok = Outgoing::result(id.clone(), Reply::Json(json!({"b": 1, "a": 2})));
        assert_eq!(
            ok.to_json(),
            r#"{"jsonrpc":"2.0","id":7,"result":{"b":1,"a":2}}"#
        );
        let err = Outgoing::error(None, RpcError::new(code::PARSE_ERROR, "Parse error"));
        assert_eq!(
            err.to_json(),
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#
        );
        let n = Outgoing::notification(Method::ResourceUpdated, json!({"uri": "u"}));
        assert_eq!(
            n.to_json(),
            r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"u"}}"#
        );
        let p = Outgoing::Notification(Notification::progress(&json!("t"), 1.0, Some(2.0), "m"));
        assert_eq!(
            p.to_json(),
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1.0,"message":"m","total":2.0}}"#
        );
    }

    #[test]
    fn tool_results_are_written_once_in_the_spliced_shape() {
        let raw = serde_json::value::to_raw_value(&json!({"x": "a\"b"})).unwrap();
        let ok = Outgoing::result(
            Id::String("c".into()),
            Reply::Tool(ToolResult::success(raw)),
        );
        assert_eq!(
            ok.to_json(),
            r#"{"jsonrpc":"2.0","id":"c","result":{"content":[{"type":"text","text":"{\"x\":\"a\\\"b\"}"}],"structuredContent":{"x":"a\"b"},"isError":false}}"#
        );
        let failed = ToolResult::failure(&ToolError::Failed("no".into()));
        assert_eq!(
            serde_json::to_string(&failed).unwrap(),
            r#"{"content":[{"type":"text","text":"no"}],"isError":true}"#
        );
    }
}
