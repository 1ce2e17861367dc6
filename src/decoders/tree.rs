//! MessagePack and CBOR as JSON. Both carry more than JSON can say; the
//! mapping keeps values exact where JSON allows: byte strings become
//! `{"base64": ...}`, map keys that are not strings are written as their
//! JSON text, non-finite floats as the strings NaN/Infinity/-Infinity,
//! CBOR tags as `{"tag": n, "value": ...}`, MessagePack extensions as
//! `{"ext": type, "base64": ...}`. Nesting is bounded by the readers.

use super::MAX_DEPTH;
use base64::Engine as _;
use serde_json::{Map, Value};

fn b64(b: &[u8]) -> Value {
    serde_json::json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) })
}

fn float(f: f64) -> Value {
    crate::sparkplug::value::f64_json(f)
}

fn key(k: Value) -> String {
    match k {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// A MessagePack document as JSON.
pub fn msgpack(bytes: &[u8]) -> Result<Value, String> {
    let mut rd = bytes;
    let v = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH)
        .map_err(|e| format!("not MessagePack: {e}"))?;
    if !rd.is_empty() {
        return Err(format!(
            "not one MessagePack value: {} bytes follow it",
            rd.len()
        ));
    }
    Ok(from_msgpack(v))
}

fn from_msgpack(v: rmpv::Value) -> Value {
    use rmpv::Value as M;
    match v {
        M::Nil => Value::Null,
        M::Boolean(b) => Value::Bool(b),
        M::Integer(i) => i
            .as_u64()
            .map(Value::from)
            .or_else(|| i.as_i64().map(Value::from))
            .unwrap_or(Value::Null),
        M::F32(f) => crate::sparkplug::value::f32_json(f),
        M::F64(f) => float(f),
        M::String(s) => match s.into_str() {
            Some(s) => Value::String(s),
            None => Value::Null,
        },
        M::Binary(b) => b64(&b),
        M::Array(a) => Value::Array(a.into_iter().map(from_msgpack).collect()),
        M::Map(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (key(from_msgpack(k)), from_msgpack(v)))
                .collect::<Map<_, _>>(),
        ),
        M::Ext(t, b) => serde_json::json!({
            "ext": t,
            "base64": base64::engine::general_purpose::STANDARD.encode(b),
        }),
    }
}

/// A CBOR document as JSON.
pub fn cbor(bytes: &[u8]) -> Result<Value, String> {
    let mut rd = bytes;
    let v: ciborium::Value = ciborium::de::from_reader_with_recursion_limit(&mut rd, MAX_DEPTH)
        .map_err(|e| format!("not CBOR: {e}"))?;
    if !rd.is_empty() {
        return Err(format!("not one CBOR value: {} bytes follow it", rd.len()));
    }
    Ok(from_cbor(v))
}

fn from_cbor(v: ciborium::Value) -> Value {
    use ciborium::Value as C;
    match v {
        C::Null => Value::Null,
        C::Bool(b) => Value::Bool(b),
        C::Integer(i) => {
            let i = i128::from(i);
            u64::try_from(i)
                .map(Value::from)
                .or_else(|_| i64::try_from(i).map(Value::from))
                // Beyond 64 bits JSON numbers lose digits: the decimal text.
                .unwrap_or_else(|_| Value::String(i.to_string()))
        }
        C::Float(f) => float(f),
        C::Text(s) => Value::String(s),
        C::Bytes(b) => b64(&b),
        C::Array(a) => Value::Array(a.into_iter().map(from_cbor).collect()),
        C::Map(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (key(from_cbor(k)), from_cbor(v)))
                .collect::<Map<_, _>>(),
        ),
        C::Tag(t, v) => serde_json::json!({ "tag": t, "value": from_cbor(*v) }),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn msgpack_maps_to_json() {
        // {"a": [1, -2, 1.5, nil, true, "x", bin(00 ff)]}
        let bytes = [
            0x81, 0xa1, b'a', 0x97, 0x01, 0xfe, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0xc0, 0xc3,
            0xa1, b'x', 0xc4, 0x02, 0x00, 0xff,
        ];
        assert_eq!(
            msgpack(&bytes).unwrap(),
            json!({"a": [1, -2, 1.5, null, true, "x", {"base64": "AP8="}]})
        );
        assert!(msgpack(&[0x92, 0x01]).is_err());
        assert!(msgpack(&[0x01, 0x02]).is_err());
        // 100,000 nested arrays: an error, not a stack overflow.
        assert!(msgpack(&vec![0x91; 100_000]).is_err());
    }

    #[test]
    fn cbor_maps_to_json() {
        // {1: h'00ff', "t": 1(1700000000)}
        let bytes = [
            0xa2, 0x01, 0x42, 0x00, 0xff, 0x61, b't', 0xc1, 0x1a, 0x65, 0x53, 0xf1, 0x00,
        ];
        assert_eq!(
            cbor(&bytes).unwrap(),
            json!({"1": {"base64": "AP8="}, "t": {"tag": 1, "value": 1_700_000_000}})
        );
        assert!(cbor(&[0x82, 0x01]).is_err());
        assert!(cbor(&vec![0x81; 100_000]).is_err());
    }

    #[test]
    fn numbers_stay_exact() {
        assert_eq!(
            Value::from(u64::MAX),
            msgpack(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap()
        );
        assert_eq!(
            msgpack(&[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0]).unwrap(),
            json!("NaN")
        );
        assert_eq!(
            cbor(&[0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap(),
            json!("-18446744073709551616")
        );
    }
}
