//! Payloads in and out. Outgoing: text, any JSON value, or bytes given as
//! `{"base64": ...}` / `{"hex": ...}`. Incoming: valid UTF-8 JSON becomes a
//! JSON value, other UTF-8 text stays text, anything else is base64 with its
//! size; every form is truncated to a preview limit that the result states
//! (`tools::common::decoded_payload` builds that result shape, a type
//! generated from `schema/defs/message.json`, from `format_of` and `truncate_str`).

use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;

/// Why an outgoing payload could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// `{"base64": ...}` that is not base64.
    #[error("payload.base64 is not valid base64 (standard alphabet, with padding)")]
    Base64,
    /// `{"hex": ...}` that is not hex.
    #[error("payload.hex is not valid hex (pairs of 0-9a-f)")]
    Hex,
    /// Larger than allowed.
    #[error("the payload is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// Actual size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// Turns the `payload` argument into bytes. Strings are sent as UTF-8 text;
/// objects with exactly one key `base64` or `hex` are bytes; any other JSON
/// value is sent as its compact JSON text; absent means empty.
pub fn encode(v: Option<&Value>) -> Result<Bytes, PayloadError> {
    match v {
        None | Some(Value::Null) => Ok(Bytes::new()),
        Some(Value::String(s)) => Ok(Bytes::from(s.clone().into_bytes())),
        Some(Value::Object(m)) if m.len() == 1 && m.contains_key("base64") => match &m["base64"] {
            Value::String(s) => base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map(Bytes::from)
                .map_err(|_| PayloadError::Base64),
            _ => Err(PayloadError::Base64),
        },
        Some(Value::Object(m)) if m.len() == 1 && m.contains_key("hex") => match &m["hex"] {
            Value::String(s) => decode_hex(s).map(Bytes::from).ok_or(PayloadError::Hex),
            _ => Err(PayloadError::Hex),
        },
        Some(other) => Ok(Bytes::from(other.to_string().into_bytes())),
    }
}

/// Hex digits, whitespace between them allowed (`"de ad be ef"`).
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(s).ok()
}

/// How a payload was decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Zero bytes.
    Empty,
    /// UTF-8 that parses as JSON.
    Json,
    /// UTF-8 that is not JSON.
    Text,
    /// Not UTF-8.
    Binary,
}

impl Format {
    /// Name used in results.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Empty => "empty",
            Format::Json => "json",
            Format::Text => "text",
            Format::Binary => "binary",
        }
    }
}

/// Classifies without copying.
pub fn format_of(bytes: &[u8]) -> Format {
    if bytes.is_empty() {
        return Format::Empty;
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            let t = s.trim_start();
            let looks_json = t.starts_with(['{', '[', '"'])
                || t.starts_with(|c: char| c.is_ascii_digit() || c == '-')
                || t.starts_with("true")
                || t.starts_with("false")
                || t.starts_with("null");
            if looks_json && serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok() {
                Format::Json
            } else {
                Format::Text
            }
        }
        Err(_) => Format::Binary,
    }
}

/// Parses a JSON payload, if it is one.
pub fn as_json(bytes: &[u8]) -> Option<Value> {
    if format_of(bytes) == Format::Json {
        serde_json::from_slice(bytes).ok()
    } else {
        None
    }
}

/// Cuts at a char boundary at most `limit` bytes in.
pub fn truncate_str(s: &str, limit: usize) -> &str {
    if s.len() <= limit {
        return s;
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A short one-line preview for listings.
pub fn preview(bytes: &[u8], limit: usize) -> String {
    match format_of(bytes) {
        Format::Empty => String::new(),
        Format::Json | Format::Text => {
            let s = std::str::from_utf8(bytes).unwrap_or_default();
            let t = truncate_str(s, limit);
            if t.len() < s.len() {
                format!("{t}…")
            } else {
                t.to_string()
            }
        }
        Format::Binary => format!(
            "<{} bytes binary: {}>",
            bytes.len(),
            base64::engine::general_purpose::STANDARD
                .encode(&bytes[..bytes.len().min(limit * 3 / 4)])
        ),
    }
}

/// A signature of a payload's structure: JSON keys and value types (not
/// values), so that messages of the same shape group together.
pub fn shape(bytes: &[u8]) -> String {
    fn walk(v: &Value, out: &mut String, depth: usize) {
        if depth > 6 {
            out.push('…');
            return;
        }
        match v {
            Value::Null => out.push('n'),
            Value::Bool(_) => out.push('b'),
            Value::Number(_) => out.push('#'),
            Value::String(_) => out.push('s'),
            Value::Array(a) => {
                out.push('[');
                if let Some(f) = a.first() {
                    walk(f, out, depth + 1);
                }
                out.push(']');
            }
            Value::Object(m) => {
                out.push('{');
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                for k in keys {
                    out.push_str(k);
                    out.push(':');
                    walk(&m[k], out, depth + 1);
                    out.push(',');
                }
                out.push('}');
            }
        }
    }
    match format_of(bytes) {
        Format::Json => {
            let mut s = String::from("json:");
            if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
                walk(&v, &mut s, 0);
            }
            s
        }
        f => f.as_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_all_forms() {
        assert_eq!(
            encode(Some(&json!("hi"))).unwrap(),
            Bytes::from_static(b"hi")
        );
        assert_eq!(
            encode(Some(&json!({"a": 1}))).unwrap(),
            Bytes::from_static(br#"{"a":1}"#)
        );
        assert_eq!(encode(Some(&json!(42))).unwrap(), Bytes::from_static(b"42"));
        assert_eq!(
            encode(Some(&json!({"base64": "AP8="}))).unwrap(),
            Bytes::from_static(&[0, 255])
        );
        assert_eq!(
            encode(Some(&json!({"hex": "00ff 10"}))).unwrap(),
            Bytes::from_static(&[0, 255, 16])
        );
        assert_eq!(encode(None).unwrap(), Bytes::new());
        assert_eq!(
            encode(Some(&json!({"base64": "!!"}))),
            Err(PayloadError::Base64)
        );
        assert_eq!(encode(Some(&json!({"hex": "abc"}))), Err(PayloadError::Hex));
        // Two keys: an ordinary JSON object, sent as JSON.
        assert_eq!(
            encode(Some(&json!({"hex": "00", "x": 1}))).unwrap(),
            Bytes::from_static(br#"{"hex":"00","x":1}"#)
        );
    }

    #[test]
    fn shapes_ignore_values() {
        assert_eq!(shape(br#"{"a":1,"b":"x"}"#), shape(br#"{"b":"y","a":2}"#));
        assert_ne!(shape(br#"{"a":1}"#), shape(br#"{"a":"1"}"#));
        assert_eq!(shape(b"hello"), "text");
    }
}
