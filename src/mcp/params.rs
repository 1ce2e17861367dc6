//! Typed `params` of the requests and notifications the server reads. Each
//! handler parses its params once, at its top, into one of these structs
//! and reads fields, not JSON paths.
//!
//! The answers must stay what the hand-written checks before them said,
//! and serde's derive alone would change them: a field of the wrong type
//! would fail the whole struct (an optional field we ignore when it is
//! malformed, or a check that names one field, would then say something
//! else), and a derived struct also reads a JSON array, field by position.
//! So [`Field`] keeps "absent", "valid" and "the wrong type" apart, and
//! structs are read from JSON objects only ([`parse`], [`Obj`]).

use crate::jsonrpc::Id;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::Deserialize;
use serde_json::{Map, Value};

/// One optional field that may be present with the wrong type.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Field<T> {
    /// Not in the params (needs `#[serde(default)]` on the field).
    #[default]
    Absent,
    /// Present and of the right type.
    Valid(T),
    /// Present but not a `T`.
    Invalid,
}

impl<T> Field<T> {
    /// The value, when present and valid.
    pub fn valid(&self) -> Option<&T> {
        match self {
            Field::Valid(t) => Some(t),
            Field::Absent | Field::Invalid => None,
        }
    }

    /// The value, when present and valid.
    pub fn into_valid(self) -> Option<T> {
        match self {
            Field::Valid(t) => Some(t),
            Field::Absent | Field::Invalid => None,
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(T::deserialize(v).map_or(Field::Invalid, Field::Valid))
    }
}

/// A struct read only from a JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Obj<T>(pub T);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            v @ Value::Object(_) => T::deserialize(v).map(Obj).map_err(D::Error::custom),
            _ => Err(D::Error::custom("expected an object")),
        }
    }
}

/// `T` from params that are an object; None when they are absent, not an
/// object, or lack a required field.
pub fn parse<T: DeserializeOwned>(params: Option<&Value>) -> Option<T> {
    match params {
        Some(v @ Value::Object(_)) => T::deserialize(v).ok(),
        _ => None,
    }
}

/// [`parse`] for params the handler owns: large values (tool arguments)
/// move into the struct instead of being copied.
pub fn parse_owned<T: DeserializeOwned>(params: Option<Value>) -> Option<T> {
    match params {
        Some(v @ Value::Object(_)) => serde_json::from_value(v).ok(),
        _ => None,
    }
}

/// `initialize`.
#[derive(Debug, Deserialize)]
pub struct Initialize {
    /// The version the client asks for; we answer it or our latest.
    #[serde(rename = "protocolVersion")]
    pub protocol_version: String,
}

/// `tools/list` and `resources/list`.
#[derive(Debug, Default, Deserialize)]
pub struct List {
    /// The `nextCursor` of the previous page; absent or null for the first.
    #[serde(default)]
    pub cursor: Field<Option<String>>,
}

/// `tools/call`.
#[derive(Debug, Deserialize)]
pub struct ToolsCall {
    /// The tool; checked against the table by the handler.
    #[serde(default)]
    pub name: Field<String>,
    /// The tool's arguments, validated against its schema later; absent or
    /// null is no arguments, anything but an object is refused.
    #[serde(default)]
    pub arguments: Option<Value>,
    /// Request metadata; malformed metadata is ignored, not refused.
    #[serde(default, rename = "_meta")]
    pub meta: Field<Obj<CallMeta>>,
}

/// The `_meta` of `tools/call` that the server reads.
#[derive(Debug, Default, PartialEq, Deserialize)]
pub struct CallMeta {
    /// Echoed in `notifications/progress`; only strings and numbers count.
    #[serde(default, rename = "progressToken")]
    pub progress_token: Option<Value>,
}

/// `resources/read`, `resources/subscribe`, `resources/unsubscribe`.
#[derive(Debug, Deserialize)]
pub struct Resource {
    /// The resource URI.
    pub uri: String,
}

/// `logging/setLevel`.
#[derive(Debug, Deserialize)]
pub struct SetLevel {
    /// One of [`super::logging::LEVELS`].
    pub level: String,
}

/// `prompts/get`.
#[derive(Debug, Deserialize)]
pub struct PromptsGet {
    /// The prompt.
    pub name: String,
    /// The prompt's arguments by name; anything but an object counts as none.
    #[serde(default)]
    pub arguments: Field<Map<String, Value>>,
}

/// `completion/complete`.
#[derive(Debug, Default, Deserialize)]
pub struct Complete {
    /// What is being completed: a prompt or a resource template.
    #[serde(default, rename = "ref")]
    pub reference: Field<Obj<CompleteRef>>,
    /// The argument being typed.
    #[serde(default)]
    pub argument: Field<Obj<CompleteArgument>>,
}

/// `completion/complete`'s `ref`.
#[derive(Debug, Default, Deserialize)]
pub struct CompleteRef {
    /// `ref/prompt` or `ref/resource`.
    #[serde(default, rename = "type")]
    pub kind: Field<String>,
    /// The prompt's name (`ref/prompt`).
    #[serde(default)]
    pub name: Field<String>,
    /// The template's URI (`ref/resource`).
    #[serde(default)]
    pub uri: Field<String>,
}

/// `completion/complete`'s `argument`.
#[derive(Debug, Default, Deserialize)]
pub struct CompleteArgument {
    /// The argument's name: what kind of value to offer.
    #[serde(default)]
    pub name: Field<String>,
    /// What the user typed so far: a prefix.
    #[serde(default)]
    pub value: Field<String>,
}

/// `subscriptions/listen`.
#[derive(Debug, Deserialize)]
pub struct Listen {
    /// Which notifications the client wants.
    pub notifications: Obj<ListenFilter>,
}

/// `subscriptions/listen`'s `notifications`: the parts this server honours.
#[derive(Debug, Default, Deserialize)]
pub struct ListenFilter {
    /// Resource URIs to follow; absent or null for none.
    #[serde(default, rename = "resourceSubscriptions")]
    pub resource_subscriptions: Field<Option<Vec<String>>>,
    /// Only `true` asks for list changes.
    #[serde(default, rename = "resourcesListChanged")]
    pub resources_list_changed: Field<bool>,
}

/// The part of any request's params the era is decided by.
#[derive(Debug, Default, Deserialize)]
pub struct EraParams {
    /// `_meta`; anything but an object counts as none.
    #[serde(default, rename = "_meta")]
    pub meta: Field<Obj<RequestMeta>>,
}

/// The 2026-07-28 keys of a request's `_meta`. serde needs the names as
/// literals; a test checks them against `lifecycle::META_*`.
#[derive(Debug, Default, Deserialize)]
pub struct RequestMeta {
    /// The protocol version of this request.
    #[serde(default, rename = "io.modelcontextprotocol/protocolVersion")]
    pub protocol_version: Field<String>,
    /// The client's capabilities for this request (required with 2026-07-28).
    #[serde(default, rename = "io.modelcontextprotocol/clientCapabilities")]
    pub client_capabilities: Field<Map<String, Value>>,
    /// Minimum level of log notifications.
    #[serde(default, rename = "io.modelcontextprotocol/logLevel")]
    pub log_level: Field<String>,
}

impl RequestMeta {
    /// The `_meta` of `params`; empty when there is none.
    pub fn of(params: Option<&Value>) -> Self {
        parse::<EraParams>(params)
            .and_then(|e| e.meta.into_valid())
            .map(|Obj(m)| m)
            .unwrap_or_default()
    }
}

/// `notifications/cancelled`.
#[derive(Debug, Deserialize)]
pub struct Cancelled {
    /// The request to stop.
    #[serde(rename = "requestId")]
    pub request_id: Id,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_keep_absent_valid_and_wrong_apart() {
        let l: List = parse(Some(&json!({}))).unwrap();
        assert_eq!(l.cursor, Field::Absent);
        let l: List = parse(Some(&json!({"cursor": null}))).unwrap();
        assert_eq!(l.cursor, Field::Valid(None));
        let l: List = parse(Some(&json!({"cursor": 3}))).unwrap();
        assert_eq!(l.cursor, Field::Invalid);
        assert!(parse::<List>(Some(&json!(["t1"]))).is_none());
    }

    #[test]
    fn meta_keys_are_the_published_ones() {
        use crate::mcp::lifecycle::{META_CLIENT_CAPABILITIES, META_LOG_LEVEL};
        use crate::mcp::META_PROTOCOL_VERSION;
        let m = RequestMeta::of(Some(&json!({"_meta": {
            META_PROTOCOL_VERSION: "v", META_CLIENT_CAPABILITIES: {}, META_LOG_LEVEL: "debug"
        }})));
        assert_eq!(m.protocol_version, Field::Valid("v".to_string()));
        assert_eq!(m.client_capabilities, Field::Valid(Map::new()));
        assert_eq!(m.log_level, Field::Valid("debug".to_string()));
        let none = RequestMeta::of(Some(&json!({"_meta": [{META_PROTOCOL_VERSION: "v"}]})));
        assert_eq!(none.protocol_version, Field::Absent);
    }

    #[test]
    fn structs_are_read_from_objects_only() {
        assert!(parse::<Resource>(Some(&json!(["mqtt://default/info"]))).is_none());
        assert!(parse::<Listen>(Some(&json!({"notifications": [["a"], true]}))).is_none());
        let c: ToolsCall = parse_owned(Some(json!({"name": "x", "_meta": ["tok"]}))).unwrap();
        assert_eq!(c.meta, Field::Invalid);
        let c: Cancelled = parse(Some(&json!({"requestId": 1.5}))).unwrap();
        assert_eq!(c.request_id, Id::Number("1.5".into()));
        assert!(parse::<Cancelled>(Some(&json!({"requestId": null}))).is_none());
    }
}
