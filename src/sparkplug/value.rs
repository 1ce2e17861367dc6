//! Sparkplug values as JSON, by datatype: the sign rules of the integer
//! types, exact floats, DateTime as RFC 3339 beside the raw milliseconds,
//! and the packed little-endian arrays. Every conversion draws from one
//! [`Budget`], so a hostile payload (a huge array, a deep template) costs
//! at most the preview limit in output, never more.

use super::datatype::DataType;
use base64::Engine as _;
use serde_json::{Number, Value};
use std::time::{Duration, SystemTime};

/// The deepest nesting shown (templates in templates, property sets in
/// property sets); deeper values are replaced by an error.
pub const MAX_DEPTH: usize = 16;

/// The latest instant RFC 3339 can write (9999-12-31T23:59:59.999Z), in ms.
const MAX_RFC3339_MS: u64 = 253_402_300_799_999;

/// A value field as it came off the wire, from whichever message (metric,
/// property, dataset cell, template parameter) holds it.
#[derive(Debug, Clone, Copy)]
pub enum Raw<'a> {
    /// `int_value` (uint32 on the wire).
    Int(u32),
    /// `long_value` (uint64 on the wire).
    Long(u64),
    /// `float_value`.
    Float(f32),
    /// `double_value`.
    Double(f64),
    /// `boolean_value`.
    Bool(bool),
    /// `string_value`.
    Str(&'a str),
    /// `bytes_value`.
    Bytes(&'a [u8]),
}

/// How much output a payload may still produce, in approximate JSON bytes.
/// Once spent, lists stop growing and `cut` records that something was left out.
#[derive(Debug)]
pub struct Budget {
    /// Bytes left.
    left: usize,
    /// Whether anything was left out for lack of budget.
    pub cut: bool,
}

impl Budget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        Self {
            left: bytes,
            cut: false,
        }
    }

    /// Spends `n` bytes; false (and `cut` set) when they are not there.
    pub fn take(&mut self, n: usize) -> bool {
        if self.left >= n {
            self.left -= n;
            true
        } else {
            self.left = 0;
            self.cut = true;
            false
        }
    }

    /// Whether nothing is left.
    pub fn spent(&self) -> bool {
        self.left == 0
    }
}

/// A value shown: the value itself and, for DateTime types, the raw ms.
#[derive(Debug, Default)]
pub struct Shown {
    /// The decoded value.
    pub value: Value,
    /// DateTime and DateTimeArray: milliseconds since the Unix epoch.
    pub millis: Option<Value>,
}

impl From<Value> for Shown {
    fn from(value: Value) -> Self {
        Shown {
            value,
            millis: None,
        }
    }
}

/// An f32 as the shortest decimal that reads back to the same bits (so
/// `0.1f32` is `0.1`, not its f64 widening `0.10000000149011612`).
pub fn f32_json(f: f32) -> Value {
    if !f.is_finite() {
        return non_finite(f64::from(f));
    }
    format!("{f}")
        .parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// An f64, exact; non-finite values as the strings JSON lacks numbers for.
pub fn f64_json(f: f64) -> Value {
    Number::from_f64(f).map_or_else(|| non_finite(f), Value::Number)
}

fn non_finite(f: f64) -> Value {
    Value::String(
        if f.is_nan() {
            "NaN"
        } else if f > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        }
        .into(),
    )
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC, if RFC 3339 can write them.
pub fn rfc3339_ms(ms: u64) -> Option<String> {
    (ms <= MAX_RFC3339_MS)
        .then(|| crate::session::rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)))
}

/// Bytes as `{"base64": ..., "size": n}`, cut to what the budget allows.
fn bytes_json(b: &[u8], budget: &mut Budget) -> Value {
    let mut keep = b.len();
    if !budget.take(b.len() * 4 / 3 + 24) {
        keep = 0;
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(&b[..keep]);
    serde_json::json!({ "base64": encoded, "size": b.len() })
}

/// The value a raw field shows when no datatype says how to read it.
pub fn raw_json(raw: Raw<'_>, budget: &mut Budget) -> Value {
    match raw {
        Raw::Int(u) => Value::from(u),
        Raw::Long(u) => Value::from(u),
        Raw::Float(f) => f32_json(f),
        Raw::Double(f) => f64_json(f),
        Raw::Bool(b) => Value::Bool(b),
        Raw::Str(s) => str_json(s, budget),
        Raw::Bytes(b) => bytes_json(b, budget),
    }
}

fn str_json(s: &str, budget: &mut Budget) -> Value {
    if budget.take(s.len() + 2) {
        Value::String(s.to_owned())
    } else {
        Value::String(String::new())
    }
}

/// The integer in a raw field, whichever of the two integer fields holds it.
fn integer(raw: Raw<'_>) -> Option<u64> {
    match raw {
        Raw::Int(u) => Some(u64::from(u)),
        Raw::Long(u) => Some(u),
        _ => None,
    }
}

/// Decodes a scalar or array value by its datatype. The error says why the
/// field does not fit the datatype; callers then show [`raw_json`].
pub fn by_datatype(dt: DataType, raw: Raw<'_>, budget: &mut Budget) -> Result<Shown, String> {
    use DataType as D;
    let wrong = || {
        format!(
            "datatype {} cannot be carried in {}",
            dt.name(),
            field_name(raw)
        )
    };
    // Signed types are two's complement in the low bits: Tahu's Java
    // encoder sign-extends to 32 bits, pysparkplug does not; both read
    // back the same way.
    let v = match dt {
        D::Int8 => Value::from(integer(raw).ok_or_else(wrong)? as u8 as i8),
        D::Int16 => Value::from(integer(raw).ok_or_else(wrong)? as u16 as i16),
        D::Int32 => Value::from(integer(raw).ok_or_else(wrong)? as u32 as i32),
        D::Int64 => Value::from(integer(raw).ok_or_else(wrong)? as i64),
        D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => {
            let u = integer(raw).ok_or_else(wrong)?;
            let max = match dt {
                D::UInt8 => u64::from(u8::MAX),
                D::UInt16 => u64::from(u16::MAX),
                D::UInt32 => u64::from(u32::MAX),
                _ => u64::MAX,
            };
            if u > max {
                return Err(format!("{u} is out of range for {}", dt.name()));
            }
            Value::from(u)
        }
        D::Float => match raw {
            Raw::Float(f) => f32_json(f),
            _ => return Err(wrong()),
        },
        D::Double => match raw {
            Raw::Double(f) => f64_json(f),
            // Some encoders send a Double's value as a float.
            Raw::Float(f) => f64_json(f64::from(f)),
            _ => return Err(wrong()),
        },
        D::Boolean => match raw {
            Raw::Bool(b) => Value::Bool(b),
            _ => return Err(wrong()),
        },
        D::String | D::Text | D::Uuid => match raw {
            Raw::Str(s) => str_json(s, budget),
            _ => return Err(wrong()),
        },
        D::DateTime => {
            let ms = integer(raw).ok_or_else(wrong)?;
            let time = rfc3339_ms(ms).ok_or_else(|| {
                format!("DateTime {ms} ms is past what RFC 3339 can write (year 9999)")
            })?;
            return Ok(Shown {
                value: Value::String(time),
                millis: Some(Value::from(ms)),
            });
        }
        D::Bytes | D::File => match raw {
            Raw::Bytes(b) => bytes_json(b, budget),
            _ => return Err(wrong()),
        },
        D::Int8Array
        | D::Int16Array
        | D::Int32Array
        | D::Int64Array
        | D::UInt8Array
        | D::UInt16Array
        | D::UInt32Array
        | D::UInt64Array
        | D::FloatArray
        | D::DoubleArray
        | D::BooleanArray
        | D::StringArray
        | D::DateTimeArray => match raw {
            Raw::Bytes(b) => return array(dt, b, budget),
            _ => return Err(wrong()),
        },
        D::Unknown => raw_json(raw, budget),
        D::DataSet | D::Template | D::PropertySet | D::PropertySetList => return Err(wrong()),
    };
    Ok(v.into())
}

fn field_name(raw: Raw<'_>) -> &'static str {
    match raw {
        Raw::Int(_) => "int_value",
        Raw::Long(_) => "long_value",
        Raw::Float(_) => "float_value",
        Raw::Double(_) => "double_value",
        Raw::Bool(_) => "boolean_value",
        Raw::Str(_) => "string_value",
        Raw::Bytes(_) => "bytes_value",
    }
}

/// The packed arrays of Sparkplug 3.0: fixed-size little-endian elements;
/// BooleanArray is a 4-byte little-endian count then the bits, first
/// element in the most significant bit; StringArray is NUL-terminated UTF-8.
fn array(dt: DataType, b: &[u8], budget: &mut Budget) -> Result<Shown, String> {
    use DataType as D;
    match dt {
        D::Int8Array => fixed::<1>(b, budget, |x| Value::from(x[0] as i8)),
        D::Int16Array => fixed::<2>(b, budget, |x| Value::from(i16::from_le_bytes(x))),
        D::Int32Array => fixed::<4>(b, budget, |x| Value::from(i32::from_le_bytes(x))),
        D::Int64Array => fixed::<8>(b, budget, |x| Value::from(i64::from_le_bytes(x))),
        D::UInt8Array => fixed::<1>(b, budget, |x| Value::from(x[0])),
        D::UInt16Array => fixed::<2>(b, budget, |x| Value::from(u16::from_le_bytes(x))),
        D::UInt32Array => fixed::<4>(b, budget, |x| Value::from(u32::from_le_bytes(x))),
        D::UInt64Array => fixed::<8>(b, budget, |x| Value::from(u64::from_le_bytes(x))),
        D::FloatArray => fixed::<4>(b, budget, |x| f32_json(f32::from_le_bytes(x))),
        D::DoubleArray => fixed::<8>(b, budget, |x| f64_json(f64::from_le_bytes(x))),
        D::DateTimeArray => {
            let millis = fixed::<8>(b, budget, |x| Value::from(u64::from_le_bytes(x)))?;
            let times = millis
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|m| {
                            m.as_u64()
                                .and_then(rfc3339_ms)
                                .map_or(Value::Null, Value::String)
                        })
                        .collect()
                })
                .unwrap_or_default();
            return Ok(Shown {
                value: Value::Array(times),
                millis: Some(millis),
            });
        }
        D::BooleanArray => booleans(b, budget),
        D::StringArray => strings(b, budget),
        _ => Err(format!("{} is not an array type", dt.name())),
    }
    .map(Shown::from)
}

/// Elements of `N` bytes, as far as the budget goes.
fn fixed<const N: usize>(
    b: &[u8],
    budget: &mut Budget,
    each: impl Fn([u8; N]) -> Value,
) -> Result<Value, String> {
    if b.len() % N != 0 {
        return Err(format!(
            "{} bytes are not a whole number of {N}-byte elements",
            b.len()
        ));
    }
    let mut out = Vec::new();
    for chunk in b.chunks_exact(N) {
        if !budget.take(N * 2 + 2) {
            break;
        }
        let mut x = [0u8; N];
        x.copy_from_slice(chunk);
        out.push(each(x));
    }
    Ok(Value::Array(out))
}

fn booleans(b: &[u8], budget: &mut Budget) -> Result<Value, String> {
    let (count, bits) = match b {
        [a, b2, c, d, rest @ ..] => (u32::from_le_bytes([*a, *b2, *c, *d]) as usize, rest),
        _ => return Err("a BooleanArray needs its 4-byte count".into()),
    };
    if count > bits.len().saturating_mul(8) {
        return Err(format!(
            "a BooleanArray of {count} values needs {} bytes of bits, not {}",
            count.div_ceil(8),
            bits.len()
        ));
    }
    let mut out = Vec::new();
    for i in 0..count {
        if !budget.take(6) {
            break;
        }
        out.push(Value::Bool(bits[i / 8] & (0x80 >> (i % 8)) != 0));
    }
    Ok(Value::Array(out))
}

fn strings(b: &[u8], budget: &mut Budget) -> Result<Value, String> {
    let b = b.strip_suffix(&[0]).unwrap_or(b);
    let mut out = Vec::new();
    if b.is_empty() {
        return Ok(Value::Array(out));
    }
    for part in b.split(|&c| c == 0) {
        let s = std::str::from_utf8(part)
            .map_err(|_| "a StringArray element is not UTF-8".to_string())?;
        if !budget.take(s.len() + 3) {
            break;
        }
        out.push(Value::String(s.to_owned()));
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn show(dt: DataType, raw: Raw<'_>) -> Value {
        by_datatype(dt, raw, &mut Budget::new(1 << 20))
            .unwrap_or_else(|e| panic!("{e}"))
            .value
    }

    #[test]
    fn signed_integers_read_both_encodings() {
        // pysparkplug: value + 2^bits; Tahu Java: sign-extended to 32 bits.
        assert_eq!(show(DataType::Int8, Raw::Int(255)), json!(-1));
        assert_eq!(show(DataType::Int8, Raw::Int(u32::MAX)), json!(-1));
        assert_eq!(show(DataType::Int16, Raw::Int(0x8000)), json!(-32768));
        assert_eq!(
            show(DataType::Int32, Raw::Int(0x8000_0000)),
            json!(i32::MIN)
        );
        assert_eq!(show(DataType::Int64, Raw::Long(u64::MAX)), json!(-1));
        assert_eq!(show(DataType::UInt64, Raw::Long(u64::MAX)), json!(u64::MAX));
        assert!(by_datatype(DataType::UInt8, Raw::Int(256), &mut Budget::new(99)).is_err());
        assert!(by_datatype(DataType::Int8, Raw::Str("x"), &mut Budget::new(99)).is_err());
    }

    #[test]
    fn floats_are_exact() {
        let v = show(DataType::Float, Raw::Float(0.1));
        assert_eq!(v, json!(0.1));
        assert_eq!((v.as_f64().unwrap() as f32).to_bits(), 0.1f32.to_bits());
        for f in [
            f32::MIN_POSITIVE,
            f32::MAX,
            -1.0e-45,
            3.402_823_5e38,
            1.0 / 3.0,
        ] {
            let v = f32_json(f);
            assert_eq!((v.as_f64().unwrap() as f32).to_bits(), f.to_bits(), "{f}");
        }
        assert_eq!(f32_json(f32::NAN), json!("NaN"));
        assert_eq!(f64_json(f64::NEG_INFINITY), json!("-Infinity"));
    }

    #[test]
    fn datetimes_have_both_forms() {
        let s = by_datatype(
            DataType::DateTime,
            Raw::Long(1_700_000_000_123),
            &mut Budget::new(99),
        )
        .unwrap();
        assert_eq!(s.value, json!("2023-11-14T22:13:20.123Z"));
        assert_eq!(s.millis, Some(json!(1_700_000_000_123u64)));
        assert!(by_datatype(
            DataType::DateTime,
            Raw::Long(u64::MAX),
            &mut Budget::new(99)
        )
        .is_err());
    }

    #[test]
    fn arrays_unpack() {
        assert_eq!(
            show(DataType::Int16Array, Raw::Bytes(&[0xff, 0xff, 2, 0])),
            json!([-1, 2])
        );
        assert_eq!(
            show(
                DataType::BooleanArray,
                Raw::Bytes(&[3, 0, 0, 0, 0b1010_0000])
            ),
            json!([true, false, true])
        );
        assert_eq!(
            show(DataType::StringArray, Raw::Bytes(b"a\0bc\0")),
            json!(["a", "bc"])
        );
        assert!(by_datatype(
            DataType::Int32Array,
            Raw::Bytes(&[1, 2, 3]),
            &mut Budget::new(99)
        )
        .is_err());
        assert!(by_datatype(
            DataType::BooleanArray,
            Raw::Bytes(&[9, 0, 0, 0, 1]),
            &mut Budget::new(99)
        )
        .is_err());
    }

    #[test]
    fn budget_bounds_huge_arrays() {
        let big = vec![0u8; 8 * 1_000_000];
        let mut budget = Budget::new(1000);
        let v = by_datatype(DataType::DoubleArray, Raw::Bytes(&big), &mut budget).unwrap();
        assert!(budget.cut);
        assert!(v.value.as_array().unwrap().len() < 100);
    }
}
