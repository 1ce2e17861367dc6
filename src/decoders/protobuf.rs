//! Protocol Buffers by configuration: the `.proto` is compiled once at
//! start by protox (a protobuf compiler in Rust, so no `protoc` on the
//! machine), and payloads are decoded by reflection into JSON with the
//! `.proto`'s field names and exact 64-bit integers.

use prost_reflect::{DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::Value;
use std::path::Path;

/// Compiles `file` (imports resolved from its folder) and finds `message`.
pub fn load(file: &Path, message: &str) -> Result<MessageDescriptor, String> {
    let dir = file.parent().unwrap_or_else(|| Path::new("."));
    let name = file
        .file_name()
        .ok_or_else(|| format!("{} is not a file", file.display()))?;
    let mut compiler = protox::Compiler::new([dir]).map_err(|e| e.to_string())?;
    compiler
        .include_imports(true)
        .open_file(name)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let pool = compiler.descriptor_pool();
    pool.get_message_by_name(message).ok_or_else(|| {
        let known: Vec<String> = pool
            .all_messages()
            .map(|m| m.full_name().to_string())
            .take(20)
            .collect();
        format!(
            "{} has no message {message:?}; it has: {}",
            file.display(),
            known.join(", ")
        )
    })
}

/// Decodes one message as JSON (proto field names, 64-bit integers as numbers).
pub fn decode(message: &MessageDescriptor, bytes: &[u8]) -> Result<Value, String> {
    let m = DynamicMessage::decode(message.clone(), bytes)
        .map_err(|e| format!("not a {}: {e}", message.full_name()))?;
    let options = SerializeOptions::new()
        .stringify_64_bit_integers(false)
        .use_proto_field_name(true);
    m.serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| e.to_string())
}
