//! JSON-RPC 2.0 on the wire, for every transport: typed ids and errors, the
//! one parse of an incoming message into request / notification / response /
//! error ([`classify`]), and the one writer of outgoing messages
//! ([`write_response`], [`write_error`], [`write_notification`]). Nothing
//! here knows about MCP; framing (lines, HTTP bodies) is the transport's.

use serde::{Serialize, Serializer};
use serde_json::Value;

/// Standard error codes; the MCP layer picks among them.
pub mod code {
    /// The line is not JSON (or not UTF-8).
    pub const PARSE_ERROR: i64 = -32700;
    /// Valid JSON that is not a request object (includes batches and oversized lines).
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The method exists but its params are wrong.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The server failed while handling a valid request.
    pub const INTERNAL_ERROR: i64 = -32603;
}

/// A request id: JSON-RPC allows numbers and strings, and the reply must echo
/// the same JSON value exactly (so `1` and `1.0` and `"1"` stay distinct).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id {
    /// A numeric id, kept as its JSON text so it is echoed byte for byte.
    Number(String),
    /// A string id.
    String(String),
}

impl Id {
    /// The id as a JSON value for the response.
    pub fn to_value(&self) -> Value {
        match self {
            Id::String(s) => Value::String(s.clone()),
            Id::Number(n) => serde_json::from_str(n).unwrap_or(Value::Null),
        }
    }

    /// The id a JSON value names; None for anything but a string or a number.
    pub fn from_value(v: &Value) -> Option<Id> {
        match v {
            Value::String(s) => Some(Id::String(s.clone())),
            Value::Number(n) => Some(Id::Number(n.to_string())),
            _ => None,
        }
    }
}

/// An id is written as the JSON value it was read as.
impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::String(v) => s.serialize_str(v),
            Id::Number(_) => self.to_value().serialize(s),
        }
    }
}

/// Ids inside params (`notifications/cancelled`'s `requestId`) are read by
/// the same rule as the message's own id.
impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = <Value as serde::Deserialize>::deserialize(d)?;
        Id::from_value(&v).ok_or_else(|| serde::de::Error::custom("an id is a string or a number"))
    }
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpcError {
    /// One of [`code`] or an MCP-specific code.
    pub code: i64,
    /// A sentence that says what was wrong and how to fix it.
    pub message: String,
    /// Optional structured detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    /// An error without data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }
}

/// One classified input line.
#[derive(Debug)]
pub enum Incoming {
    /// A request that wants an answer.
    Request {
        /// Echoed in the answer.
        id: Id,
        /// The method name.
        method: String,
        /// `params`, if present (object or array; validated by the method).
        params: Option<Value>,
    },
    /// A notification: never answered.
    Notification {
        /// The method name.
        method: String,
        /// `params`, if present.
        params: Option<Value>,
    },
    /// A response to a request of ours; we send none yet, so these are ignored.
    Response,
    /// The line must be answered with this error (id null when unknown).
    Invalid {
        /// The id when the line had a usable one.
        id: Option<Id>,
        /// What to answer.
        error: RpcError,
    },
}

/// Classifies one line of input (without its newline).
pub fn classify(line: &[u8]) -> Incoming {
    let text = match std::str::from_utf8(line) {
        Ok(t) => t,
        Err(e) => {
            return Incoming::Invalid {
                id: None,
                error: RpcError::new(
                    code::PARSE_ERROR,
                    format!("Parse error: input is not valid UTF-8 ({e})"),
                ),
            }
        }
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Incoming::Invalid {
                id: None,
                error: RpcError::new(code::PARSE_ERROR, format!("Parse error: {e}")),
            }
        }
    };
    classify_value(value)
}

/// Classifies an already parsed JSON value.
pub fn classify_value(value: Value) -> Incoming {
    let invalid = |id: Option<Id>, msg: &str| Incoming::Invalid {
        id,
        error: RpcError::new(code::INVALID_REQUEST, format!("Invalid Request: {msg}")),
    };
    let mut obj = match value {
        Value::Object(o) => o,
        Value::Array(_) => {
            return invalid(None, "batches (JSON arrays) are not supported; MCP removed batching in 2025-06-18, send one request per line")
        }
        _ => return invalid(None, "expected a JSON object"),
    };
    let raw_id = obj.get("id").cloned();
    let id = match &raw_id {
        None => None,
        Some(v) => match Id::from_value(v) {
            Some(id) => Some(id),
            None => return invalid(None, "id must be a string or a number"),
        },
    };
    if obj.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return invalid(id, "\"jsonrpc\" must be \"2.0\"");
    }
    let params = obj.remove("params");
    if let Some(p) = &params {
        if !p.is_object() && !p.is_array() {
            return invalid(id, "params must be an object or an array");
        }
    }
    match obj.remove("method") {
        Some(Value::String(method)) => match id {
            Some(id) => Incoming::Request { id, method, params },
            None => Incoming::Notification { method, params },
        },
        Some(_) => invalid(id, "method must be a string"),
        None => {
            if id.is_some() && (obj.contains_key("result") || obj.contains_key("error")) {
                Incoming::Response
            } else {
                invalid(id, "missing \"method\"")
            }
        }
    }
}

/// The version every message carries.
const VERSION: &str = "2.0";

/// `{"jsonrpc":"2.0","id":...,"result":...}`.
#[derive(Serialize)]
struct ResultMessage<'a, T> {
    jsonrpc: &'static str,
    id: &'a Id,
    result: &'a T,
}

/// `{"jsonrpc":"2.0","id":...,"error":{...}}`; no id is written as `null`.
#[derive(Serialize)]
struct ErrorMessage<'a> {
    jsonrpc: &'static str,
    id: Option<&'a Id>,
    error: &'a RpcError,
}

/// `{"jsonrpc":"2.0","method":...,"params":...}`.
#[derive(Serialize)]
struct NotificationMessage<'a, P> {
    jsonrpc: &'static str,
    method: &'a str,
    params: &'a P,
}

/// Appends a success response (no newline) to `out`. On error (a result
/// that cannot be serialized) `out` may hold a partial message; the caller
/// truncates it.
pub fn write_response<T: Serialize>(
    out: &mut Vec<u8>,
    id: &Id,
    result: &T,
) -> serde_json::Result<()> {
    serde_json::to_writer(
        out,
        &ResultMessage {
            jsonrpc: VERSION,
            id,
            result,
        },
    )
}

/// Appends an error response (no newline) to `out`; `id` None is `null`.
pub fn write_error(out: &mut Vec<u8>, id: Option<&Id>, error: &RpcError) {
    let message = ErrorMessage {
        jsonrpc: VERSION,
        id,
        error,
    };
    // Strings, numbers and a `Value`: nothing here can fail to serialize.
    let _ = serde_json::to_writer(out, &message);
}

/// Appends a notification (no newline) to `out`.
pub fn write_notification<P: Serialize>(
    out: &mut Vec<u8>,
    method: &str,
    params: &P,
) -> serde_json::Result<()> {
    serde_json::to_writer(
        out,
        &NotificationMessage {
            jsonrpc: VERSION,
            method,
            params,
        },
    )
}

/// An error response as text: for answers outside a message stream (HTTP
/// errors, snapshots).
pub fn error_response(id: Option<&Id>, error: &RpcError) -> String {
    let mut out = Vec::with_capacity(128);
    write_error(&mut out, id, error);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert!(
            matches!(classify(b"{"), Incoming::Invalid { id: None, error } if error.code == code::PARSE_ERROR)
        );
        assert!(
            matches!(classify(b"\xff\xfe"), Incoming::Invalid { id: None, error } if error.code == code::PARSE_ERROR)
        );
        assert!(
            matches!(classify(b"[]"), Incoming::Invalid { error, .. } if error.code == code::INVALID_REQUEST)
        );
        assert!(
            matches!(classify(b"3"), Incoming::Invalid { error, .. } if error.code == code::INVALID_REQUEST)
        );
        assert!(matches!(
            classify(br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#),
            Incoming::Request { id: Id::Number(n), .. } if n == "7"
        ));
        assert!(matches!(
            classify(br#"{"jsonrpc":"2.0","method":"x"}"#),
            Incoming::Notification { .. }
        ));
        assert!(matches!(
            classify(br#"{"jsonrpc":"1.0","id":"a","method":"x"}"#),
            Incoming::Invalid { id: Some(Id::String(s)), .. } if s == "a"
        ));
        assert!(matches!(
            classify(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            Incoming::Response
        ));
        assert!(matches!(
            classify(br#"{"jsonrpc":"2.0","id":null,"method":"x"}"#),
            Incoming::Invalid { id: None, .. }
        ));
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn classify_never_panics_and_answers_requests(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Incoming::Invalid { error, .. } = classify(&bytes) {
                prop_assert!([code::PARSE_ERROR, code::INVALID_REQUEST].contains(&error.code));
            }
        }
    }

    #[test]
    fn ids_echo_exactly() {
        for raw in ["1", "-5", "1.5", "12345678901234567890", "\"abc\""] {
            let v: Value = serde_json::from_str(raw).unwrap();
            let id = Id::from_value(&v).unwrap();
            assert_eq!(id.to_value(), v);
        }
    }
}
