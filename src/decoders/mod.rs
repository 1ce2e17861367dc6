//! Decoders by configuration, never by guess: `[[decoders]]` (every
//! session) and `[[profiles.NAME.decoders]]` (that profile's sessions) map
//! topic filters to a codec. A session's list is its profile's entries,
//! then the global ones; the first filter that matches a topic decides.
//! Without a match a payload is shown as always (JSON, text or base64, and
//! Sparkplug B by its topic namespace).
//!
//! - `protobuf.rs`: a `.proto` compiled at start (protox), decoded by reflection.
//! - `tree.rs`: MessagePack and CBOR value trees as JSON.

mod protobuf;
mod tree;

use crate::mqtt::topic;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Payloads larger than this are not decoded (a hostile one would cost
/// some 30 times its size in value trees).
pub const MAX_DECODE_BYTES: usize = 1024 * 1024;

/// Deepest nesting a MessagePack or CBOR value may have.
const MAX_DEPTH: usize = 64;

/// One `[[decoders]]` entry as written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DecoderConfig {
    /// Topics this entry decodes (an MQTT filter).
    pub filter: String,
    /// How.
    pub codec: Codec,
    /// `protobuf`: the `.proto` file (relative to the config file).
    pub proto_file: Option<PathBuf>,
    /// `protobuf`: the fully qualified message name, e.g. `acme.Reading`.
    pub message: Option<String>,
}

/// The codecs a filter can be mapped to.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Protocol Buffers, with a `.proto` and a message name.
    Protobuf,
    /// MessagePack.
    Msgpack,
    /// CBOR (RFC 8949).
    Cbor,
    /// JSON only: anything else is a decode error.
    Json,
    /// UTF-8 text only, never parsed as JSON.
    Text,
    /// Bytes, always shown as base64.
    Raw,
}

impl Codec {
    /// The name in the config and in results' `format`.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Protobuf => "protobuf",
            Codec::Msgpack => "msgpack",
            Codec::Cbor => "cbor",
            Codec::Json => "json",
            Codec::Text => "text",
            Codec::Raw => "raw",
        }
    }
}

/// Why a decoder entry was rejected at start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecoderError {
    /// The filter is not an MQTT filter.
    #[error("decoder filter {0:?}: {1}")]
    Filter(String, String),
    /// `protobuf` without `proto_file` or `message`, or those with another codec.
    #[error("decoder {filter:?}: {why}")]
    Entry {
        /// The entry's filter.
        filter: String,
        /// What is wrong.
        why: String,
    },
    /// The `.proto` did not compile or lacks the message.
    #[error("decoder {filter:?}: {why}")]
    Proto {
        /// The entry's filter.
        filter: String,
        /// The compiler's message.
        why: String,
    },
}

/// A checked entry.
#[derive(Debug)]
struct Decoder {
    /// Topics it decodes.
    filter: String,
    /// How.
    codec: Codec,
    /// The message type, for `protobuf`.
    message: Option<prost_reflect::MessageDescriptor>,
}

/// What one session decodes by configuration, first match first.
#[derive(Debug, Default)]
pub struct Decoders {
    /// The entries in order.
    list: Vec<Arc<Decoder>>,
}

/// A payload decoded by a configured codec.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A value (protobuf, msgpack, cbor, json).
    Value(Value),
    /// Text (text).
    Text(String),
    /// Bytes to show as they are (raw).
    Raw,
}

impl Decoders {
    /// Checks entries and compiles their `.proto` files.
    pub fn build(entries: &[DecoderConfig]) -> Result<Decoders, DecoderError> {
        let list = entries
            .iter()
            .map(|e| check(e).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Decoders { list })
    }

    /// `first`'s entries, then `then`'s (a profile's, then the global ones).
    pub fn chain(first: &Decoders, then: &Decoders) -> Decoders {
        Decoders {
            list: first.list.iter().chain(&then.list).cloned().collect(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The codec for a topic, if an entry maps it, and a decode of `bytes`
    /// with it (the error says why they are not of that codec).
    pub fn decode(&self, topic: &str, bytes: &[u8]) -> Option<(Codec, Result<Decoded, String>)> {
        let d = self
            .list
            .iter()
            .find(|d| topic::matches(&d.filter, topic))?;
        Some((d.codec, d.decode(bytes)))
    }
}

/// Makes relative `proto_file` paths relative to `dir` (the config file's folder).
pub fn resolve_paths(entries: &mut [DecoderConfig], dir: &Path) {
    for e in entries {
        if let Some(p) = &e.proto_file {
            if p.is_relative() {
                e.proto_file = Some(dir.join(p));
            }
        }
    }
}

fn check(e: &DecoderConfig) -> Result<Decoder, DecoderError> {
    topic::validate_filter(&e.filter)
        .map_err(|err| DecoderError::Filter(e.filter.clone(), err.to_string()))?;
    let entry = |why: &str| DecoderError::Entry {
        filter: e.filter.clone(),
        why: why.to_string(),
    };
    let message = match (e.codec, &e.proto_file, &e.message) {
        (Codec::Protobuf, Some(file), Some(name)) => Some(protobuf::load(file, name).map_err(
            |why| DecoderError::Proto {
                filter: e.filter.clone(),
                why,
            },
        )?),
        (Codec::Protobuf, _, _) => {
            return Err(entry("codec \"protobuf\" needs proto_file and message"))
        }
        (_, None, None) => None,
        (_, _, _) => return Err(entry("proto_file and message belong to codec \"protobuf\"")),
    };
    Ok(Decoder {
        filter: e.filter.clone(),
        codec: e.codec,
        message,
    })
}

impl Decoder {
    fn decode(&self, bytes: &[u8]) -> Result<Decoded, String> {
        if bytes.len() > MAX_DECODE_BYTES
            && matches!(self.codec, Codec::Protobuf | Codec::Msgpack | Codec::Cbor)
        {
            return Err(format!(
                "the payload is {} bytes; {} payloads over {MAX_DECODE_BYTES} bytes are not decoded",
                bytes.len(),
                self.codec.as_str()
            ));
        }
        match self.codec {
            Codec::Raw => Ok(Decoded::Raw),
            Codec::Text => std::str::from_utf8(bytes)
                .map(|s| Decoded::Text(s.to_string()))
                .map_err(|e| format!("not UTF-8 text: {e}")),
            Codec::Json => serde_json::from_slice(bytes)
                .map(Decoded::Value)
                .map_err(|e| format!("not JSON: {e}")),
            Codec::Msgpack => tree::msgpack(bytes).map(Decoded::Value),
            Codec::Cbor => tree::cbor(bytes).map(Decoded::Value),
            Codec::Protobuf => match &self.message {
                Some(m) => protobuf::decode(m, bytes).map(Decoded::Value),
                None => Err("no message type".into()),
            },
        }
    }
}

#[cfg(test)]
mod tests;
