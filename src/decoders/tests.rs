//! Decoder configuration and matching. Payloads from independent encoders
//! (Python msgpack, cbor2, protobuf) are in `tests/decoders.rs`.

use super::*;
use serde_json::json;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/decoders")
}

fn entry(filter: &str, codec: Codec) -> DecoderConfig {
    DecoderConfig {
        filter: filter.into(),
        codec,
        proto_file: None,
        message: None,
    }
}

fn proto_entry(filter: &str, message: &str) -> DecoderConfig {
    DecoderConfig {
        proto_file: Some(fixtures().join("reading.proto")),
        message: Some(message.into()),
        ..entry(filter, Codec::Protobuf)
    }
}

#[test]
fn first_match_decides_and_profiles_come_first() {
    let global = Decoders::build(&[entry("a/#", Codec::Text), entry("b/#", Codec::Raw)]).unwrap();
    let profile = Decoders::build(&[entry("a/json/+", Codec::Json)]).unwrap();
    let both = Decoders::chain(&profile, &global);
    assert_eq!(
        both.decode("a/json/x", b"[1]"),
        Some((Codec::Json, Ok(Decoded::Value(json!([1])))))
    );
    assert_eq!(
        both.decode("a/other", b"[1]"),
        Some((Codec::Text, Ok(Decoded::Text("[1]".into()))))
    );
    assert_eq!(
        both.decode("b/x", b"hi"),
        Some((Codec::Raw, Ok(Decoded::Raw)))
    );
    assert_eq!(both.decode("c", b"hi"), None);
    let (_, r) = both.decode("a/json/x", b"nope").unwrap();
    assert!(r.unwrap_err().starts_with("not JSON"));
    let (_, r) = both.decode("a/x", &[0xff]).unwrap();
    assert!(r.unwrap_err().starts_with("not UTF-8"));
}

#[test]
fn bad_entries_are_refused_at_start() {
    assert!(matches!(
        Decoders::build(&[entry("a/#/b", Codec::Json)]),
        Err(DecoderError::Filter(..))
    ));
    assert!(matches!(
        Decoders::build(&[entry("a", Codec::Protobuf)]),
        Err(DecoderError::Entry { .. })
    ));
    let mut e = entry("a", Codec::Cbor);
    e.message = Some("x".into());
    assert!(matches!(
        Decoders::build(&[e]),
        Err(DecoderError::Entry { .. })
    ));
    let err = Decoders::build(&[proto_entry("a", "acme.telemetry.Nope")]).unwrap_err();
    assert!(err.to_string().contains("acme.telemetry.Reading"), "{err}");
    let mut missing = proto_entry("a", "x.Y");
    missing.proto_file = Some(fixtures().join("absent.proto"));
    assert!(matches!(
        Decoders::build(&[missing]),
        Err(DecoderError::Proto { .. })
    ));
}

#[test]
fn relative_proto_paths_follow_the_config_file() {
    let mut entries = vec![DecoderConfig {
        proto_file: Some("reading.proto".into()),
        ..proto_entry("a", "acme.telemetry.Reading")
    }];
    resolve_paths(&mut entries, &fixtures());
    assert_eq!(
        entries[0].proto_file,
        Some(fixtures().join("reading.proto"))
    );
    assert!(Decoders::build(&entries).is_ok());
}

#[test]
fn protobuf_decodes_with_field_names_and_exact_integers() {
    let d = Decoders::build(&[proto_entry("t/#", "acme.telemetry.Reading")]).unwrap();
    // sensor="s1" (1), at_ms=2^62 (4), delta=-3 (6, zigzag 5), unit=KELVIN (9)
    let mut bytes = vec![0x0a, 2, b's', b'1', 0x20];
    prost::encoding::encode_varint(1u64 << 62, &mut bytes);
    bytes.extend([0x30, 5, 0x48, 2]);
    let (codec, r) = d.decode("t/1", &bytes).unwrap();
    assert_eq!(codec, Codec::Protobuf);
    assert_eq!(
        r.unwrap(),
        Decoded::Value(json!({"sensor": "s1", "at_ms": 1u64 << 62, "delta": -3, "unit": "KELVIN"}))
    );
    let (_, r) = d.decode("t/1", &[0x0a, 9, b'x']).unwrap();
    assert!(r.unwrap_err().contains("acme.telemetry.Reading"));
    let (_, r) = d.decode("t/1", &vec![0; MAX_DECODE_BYTES + 1]).unwrap();
    assert!(r.unwrap_err().contains("not decoded"));
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
        let d = Decoders::build(&[
            proto_entry("p", "acme.telemetry.Reading"),
            entry("m", Codec::Msgpack),
            entry("c", Codec::Cbor),
        ]).unwrap();
        for t in ["p", "m", "c"] {
            let _ = d.decode(t, &bytes);
        }
    }
}
