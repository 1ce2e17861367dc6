//! JSON-RPC 2.0 framing for newline-delimited stdio: the bounded line reader,
//! classification of an input line into request / notification / error, and
//! the wire shapes of responses. Nothing here knows about MCP.

use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

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

/// Ids inside params (`notifications/cancelled`'s `requestId`) are read by
/// the same rule as the message's own id.
impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = <Value as serde::Deserialize>::deserialize(d)?;
        Id::from_value(&v).ok_or_else(|| serde::de::Error::custom("an id is a string or a number"))
    }
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// One of [`code`] or an MCP-specific code.
    pub code: i64,
    /// A sentence that says what was wrong and how to fix it.
    pub message: String,
    /// Optional structured detail.
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

    /// The error object as JSON.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("code".into(), Value::from(self.code));
        m.insert("message".into(), Value::from(self.message.clone()));
        if let Some(d) = &self.data {
            m.insert("data".into(), d.clone());
        }
        Value::Object(m)
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

/// Serializes a success response line (no trailing newline).
pub fn response(id: &Id, result: Value) -> String {
    let mut m = Map::new();
    m.insert("jsonrpc".into(), Value::from("2.0"));
    m.insert("id".into(), id.to_value());
    m.insert("result".into(), result);
    Value::Object(m).to_string()
}

/// A success response around an already serialized result (large results
/// are not parsed back into a tree).
pub fn response_raw(id: &Id, result_json: &str) -> String {
    let id = id.to_value().to_string();
    let mut out = String::with_capacity(result_json.len() + id.len() + 40);
    out.push_str(r#"{"jsonrpc":"2.0","id":"#);
    out.push_str(&id);
    out.push_str(r#","result":"#);
    out.push_str(result_json);
    out.push('}');
    out
}

/// Serializes an error response line; `id` None becomes `null`.
pub fn error_response(id: Option<&Id>, error: &RpcError) -> String {
    let mut m = Map::new();
    m.insert("jsonrpc".into(), Value::from("2.0"));
    m.insert("id".into(), id.map(Id::to_value).unwrap_or(Value::Null));
    m.insert("error".into(), error.to_value());
    Value::Object(m).to_string()
}

/// Serializes a notification line.
pub fn notification(method: &str, params: Value) -> String {
    let mut m = Map::new();
    m.insert("jsonrpc".into(), Value::from("2.0"));
    m.insert("method".into(), Value::from(method));
    m.insert("params".into(), params);
    Value::Object(m).to_string()
}

/// What the line reader produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without `\n` (and without a trailing `\r`).
    Complete(Vec<u8>),
    /// A line longer than the limit; its bytes were discarded as they arrived.
    TooLong {
        /// How many bytes were discarded.
        discarded: usize,
    },
}

/// Reads newline-delimited messages with a hard cap: an oversized line is
/// skipped chunk by chunk and never buffered whole.
pub struct LineReader<R> {
    /// The byte source (stdin in production, a duplex pipe in tests).
    inner: R,
    /// Maximum bytes of one line, excluding the newline.
    limit: usize,
    /// The partial line gathered so far.
    buf: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// A reader that rejects lines longer than `limit` bytes.
    pub fn new(inner: R, limit: usize) -> Self {
        Self {
            inner,
            limit,
            buf: Vec::new(),
        }
    }

    /// The next line, or `None` at end of input. A final line without newline
    /// counts as a line.
    ///
    /// Cancellation safety: not cancel safe (a partially read line would be
    /// lost), so the server polls it from a single dedicated task only.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        self.buf.clear();
        let mut discarding: Option<usize> = None;
        loop {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                if let Some(discarded) = discarding {
                    return Ok(Some(Line::TooLong { discarded }));
                }
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(Line::Complete(finish(std::mem::take(&mut self.buf)))));
            }
            let (part, found) = match memchr(chunk) {
                Some(i) => (&chunk[..i], Some(i)),
                None => (chunk, None),
            };
            match &mut discarding {
                Some(n) => *n += part.len(),
                None => {
                    if self.buf.len() + part.len() > self.limit + 1 {
                        discarding = Some(self.buf.len() + part.len());
                        self.buf = Vec::new();
                    } else {
                        self.buf.extend_from_slice(part);
                    }
                }
            }
            let used = found.map(|i| i + 1).unwrap_or(chunk.len());
            self.inner.consume(used);
            if found.is_some() {
                if let Some(discarded) = discarding {
                    return Ok(Some(Line::TooLong { discarded }));
                }
                let line = finish(std::mem::take(&mut self.buf));
                if line.len() > self.limit {
                    return Ok(Some(Line::TooLong {
                        discarded: line.len(),
                    }));
                }
                return Ok(Some(Line::Complete(line)));
            }
        }
    }
}

fn finish(mut line: Vec<u8>) -> Vec<u8> {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    line
}

fn memchr(haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], limit: usize) -> Vec<Line> {
        let reader = tokio::io::BufReader::with_capacity(7, input);
        let mut r = LineReader::new(reader, limit);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().await.unwrap() {
            out.push(l);
        }
        out
    }

    #[tokio::test]
    async fn splits_and_caps_lines() {
        let got = lines(b"abc\r\n0123456789abcdef\nxy\nlast", 10).await;
        assert_eq!(
            got,
            vec![
                Line::Complete(b"abc".to_vec()),
                Line::TooLong { discarded: 16 },
                Line::Complete(b"xy".to_vec()),
                Line::Complete(b"last".to_vec()),
            ]
        );
    }

    #[tokio::test]
    async fn exact_limit_is_accepted() {
        let got = lines(b"0123456789\n01234567890\n", 10).await;
        assert_eq!(
            got,
            vec![
                Line::Complete(b"0123456789".to_vec()),
                Line::TooLong { discarded: 11 }
            ]
        );
    }

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
        // The fuzz target of the framing layer: run longer with
        // PROPTEST_CASES=1000000 cargo test --release --lib jsonrpc
        #[test]
        fn line_reader_splits_exactly_and_never_buffers_past_the_limit(
            lines in prop::collection::vec(prop::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..40), 0..20),
            limit in 1usize..32,
            cap in 1usize..16,
        ) {
            let mut input = Vec::new();
            for l in &lines {
                input.extend_from_slice(l);
                input.push(b'\n');
            }
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let got = rt.block_on(async {
                let mut r = LineReader::new(tokio::io::BufReader::with_capacity(cap, input.as_slice()), limit);
                let mut out = Vec::new();
                while let Some(l) = r.next_line().await.unwrap() {
                    prop_assert!(r.buf.capacity() <= limit + cap + 64, "buffer grew to {}", r.buf.capacity());
                    out.push(l);
                }
                Ok(out)
            })?;
            prop_assert_eq!(got.len(), lines.len());
            for (l, g) in lines.iter().zip(got) {
                let mut want = l.clone();
                if want.last() == Some(&b'\r') {
                    want.pop();
                }
                match g {
                    Line::Complete(b) => prop_assert_eq!(b, want),
                    Line::TooLong { discarded } => prop_assert!(discarded > limit && discarded >= want.len()),
                }
            }
        }

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
