//! Decoding with payloads our own prost structs encode; the independent
//! encoder (pysparkplug and Google's protobuf runtime) is in
//! `tests/interop_sparkplug.rs`.

use super::proto::*;
use super::*;
use proptest::prelude::*;
use serde_json::{json, Value};

/// `Payload`, for encoding in tests (the decoder walks it by hand).
#[derive(Clone, PartialEq, prost::Message)]
struct Payload {
    #[prost(uint64, optional, tag = "1")]
    timestamp: Option<u64>,
    #[prost(message, repeated, tag = "2")]
    metrics: Vec<Metric>,
    #[prost(uint64, optional, tag = "3")]
    seq: Option<u64>,
    #[prost(string, optional, tag = "4")]
    uuid: Option<String>,
    #[prost(bytes = "vec", optional, tag = "5")]
    body: Option<Vec<u8>>,
}

fn metric(name: Option<&str>, alias: Option<u64>, dt: u32, value: Option<MetricValue>) -> Metric {
    Metric {
        name: name.map(str::to_string),
        alias,
        datatype: Some(dt),
        value,
        ..Default::default()
    }
}

fn no_history(_: &str) -> Option<bytes::Bytes> {
    None
}

fn decode(topic: &str, p: &Payload, births: &Births) -> Value {
    let t = Topic::parse(topic).expect("a Sparkplug topic");
    let shown = show(&t, &p.encode_to_vec(), 1 << 20, births, &no_history).expect("decodes");
    serde_json::to_value(shown.sparkplug).unwrap()
}

#[test]
fn topics_parse() {
    let t = Topic::parse("spBv1.0/plant/DDATA/edge1/pump").unwrap();
    assert_eq!(t.kind, MessageType::DData);
    assert_eq!(
        (t.group, t.node, t.device),
        ("plant", "edge1", Some("pump"))
    );
    assert_eq!(t.birth_topic().unwrap(), "spBv1.0/plant/DBIRTH/edge1/pump");
    let t = Topic::parse("spBv1.0/plant/NCMD/edge1").unwrap();
    assert_eq!(t.birth_topic().unwrap(), "spBv1.0/plant/NBIRTH/edge1");
    let t = Topic::parse("spBv1.0/STATE/scada").unwrap();
    assert_eq!((t.kind, t.node), (MessageType::State, "scada"));
    let t = Topic::parse("$sparkplug/certificates/spBv1.0/g/NBIRTH/n").unwrap();
    assert_eq!(t.kind, MessageType::NBirth);
    for not in [
        "spBv1.0/g/DDATA/n",
        "spBv1.0/g/NDATA/n/d",
        "spBv1.0/g/XDATA/n",
        "spBv1.0//NDATA/n",
        "spBv1.0/g/NDATA/n/d/e",
        "spAv1.0/g/NDATA/n",
        "home/spBv1.0/g/NDATA/n",
        "spBv1.0",
    ] {
        assert_eq!(Topic::parse(not), None, "{not}");
    }
}

#[test]
fn every_scalar_datatype_decodes() {
    use MetricValue as V;
    let p = Payload {
        timestamp: Some(1_700_000_000_000),
        seq: Some(7),
        metrics: vec![
            metric(Some("i8"), None, 1, Some(V::Int(0xffff_fff6))),
            metric(Some("i16"), None, 2, Some(V::Int(0x8000))),
            metric(Some("i32"), None, 3, Some(V::Int(u32::MAX))),
            metric(Some("i64"), None, 4, Some(V::Long(u64::MAX - 1))),
            metric(Some("u8"), None, 5, Some(V::Int(255))),
            metric(Some("u64"), None, 8, Some(V::Long(u64::MAX))),
            metric(Some("f"), None, 9, Some(V::Float(1.1))),
            metric(Some("d"), None, 10, Some(V::Double(-2.5e300))),
            metric(Some("b"), None, 11, Some(V::Boolean(true))),
            metric(Some("s"), None, 12, Some(V::String("ü".into()))),
            metric(Some("t"), None, 13, Some(V::Long(86_400_001))),
            metric(Some("uuid"), None, 15, Some(V::String("a-b".into()))),
            metric(Some("bytes"), None, 17, Some(V::Bytes(vec![0, 255]))),
            metric(Some("null"), None, 9, None),
        ],
        ..Default::default()
    };
    let v = decode("spBv1.0/g/NDATA/n", &p, &Births::default());
    assert_eq!(v["message_type"], "NDATA");
    assert_eq!(v["seq"], 7);
    assert_eq!(v["time"], "2023-11-14T22:13:20.000Z");
    let values: Vec<&Value> = v["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.get("value").unwrap_or(&Value::Null))
        .collect();
    assert_eq!(
        values,
        [
            &json!(-10),
            &json!(-32768),
            &json!(-1),
            &json!(-2),
            &json!(255),
            &json!(u64::MAX),
            &json!(1.1),
            &json!(-2.5e300),
            &json!(true),
            &json!("ü"),
            &json!("1970-01-02T00:00:00.001Z"),
            &json!("a-b"),
            &json!({"base64": "AP8=", "size": 2}),
            &Value::Null,
        ]
    );
    assert_eq!(v["metrics"][10]["millis"], 86_400_001);
    assert_eq!(v["metrics"][10]["datatype"], "DateTime");
    assert_eq!(v["metrics"][13]["is_null"], true);
}

#[test]
fn aliases_take_their_names_from_the_birth() {
    let births = Births::default();
    let birth = Payload {
        seq: Some(0),
        metrics: vec![metric(
            Some("Temp"),
            Some(3),
            9,
            Some(MetricValue::Float(1.0)),
        )],
        ..Default::default()
    };
    let data = Payload {
        seq: Some(1),
        metrics: vec![Metric {
            alias: Some(3),
            value: Some(MetricValue::Float(2.5)),
            ..Default::default()
        }],
        ..Default::default()
    };
    // Before the birth: shown by alias, with a note.
    let v = decode("spBv1.0/g/DDATA/n/d", &data, &births);
    assert!(v["metrics"][0].get("name").is_none());
    assert_eq!(v["metrics"][0]["alias"], 3);
    assert!(v["note"].as_str().unwrap().contains("spBv1.0/g/DBIRTH/n/d"));
    decode("spBv1.0/g/DBIRTH/n/d", &birth, &births);
    let v = decode("spBv1.0/g/DDATA/n/d", &data, &births);
    assert_eq!(v["metrics"][0]["name"], "Temp");
    assert_eq!(v["metrics"][0]["name_from"], "birth");
    assert_eq!(v["metrics"][0]["datatype"], "Float");
    assert_eq!(v["metrics"][0]["value"], 2.5);
    assert!(v.get("note").is_none());
    // The node's own birth does not name the device's metrics.
    let v = decode("spBv1.0/g/NDATA/n", &data, &births);
    assert!(v["metrics"][0].get("name").is_none());
}

#[test]
fn a_birth_in_the_history_names_aliases() {
    let birth = Payload {
        metrics: vec![metric(Some("Level"), Some(9), 3, Some(MetricValue::Int(1)))],
        ..Default::default()
    }
    .encode_to_vec();
    let data = Payload {
        metrics: vec![Metric {
            alias: Some(9),
            value: Some(MetricValue::Int(u32::MAX)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let births = Births::default();
    let history =
        move |t: &str| (t == "spBv1.0/g/NBIRTH/n").then(|| bytes::Bytes::from(birth.clone()));
    let t = Topic::parse("spBv1.0/g/NDATA/n").unwrap();
    let shown = show(&t, &data.encode_to_vec(), 4096, &births, &history).unwrap();
    let v = serde_json::to_value(shown.sparkplug).unwrap();
    assert_eq!(v["metrics"][0]["name"], "Level");
    assert_eq!(v["metrics"][0]["value"], -1);
    assert!(births.get("spBv1.0/g/NBIRTH/n").is_some());
}

#[test]
fn a_retained_certificate_copy_names_aliases() {
    let birth = Payload {
        metrics: vec![metric(
            Some("Flow"),
            Some(2),
            10,
            Some(MetricValue::Double(0.0)),
        )],
        ..Default::default()
    }
    .encode_to_vec();
    let data = Payload {
        metrics: vec![Metric {
            alias: Some(2),
            value: Some(MetricValue::Double(4.5)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let history = move |t: &str| {
        (t == "$sparkplug/certificates/spBv1.0/g/NBIRTH/n")
            .then(|| bytes::Bytes::from(birth.clone()))
    };
    let t = Topic::parse("spBv1.0/g/NDATA/n").unwrap();
    let shown = show(
        &t,
        &data.encode_to_vec(),
        4096,
        &Births::default(),
        &history,
    )
    .unwrap();
    let v = serde_json::to_value(shown.sparkplug).unwrap();
    assert_eq!(v["metrics"][0]["name"], "Flow");
}

#[test]
fn composites_decode() {
    let ds = DataSet {
        num_of_columns: Some(2),
        columns: vec!["a".into(), "b".into()],
        types: vec![2, 12],
        rows: vec![
            Row {
                elements: vec![
                    DataSetValue {
                        value: Some(DataSetValueValue::Int(0xffff)),
                    },
                    DataSetValue {
                        value: Some(DataSetValueValue::String("x".into())),
                    },
                ],
            },
            Row {
                elements: vec![DataSetValue { value: None }, DataSetValue { value: None }],
            },
        ],
    };
    let tmpl = Template {
        version: Some("1".into()),
        template_ref: Some("Motor".into()),
        is_definition: Some(false),
        parameters: vec![Parameter {
            name: Some("rpm".into()),
            r#type: Some(7),
            value: Some(ParameterValue::Int(1500)),
        }],
        metrics: vec![metric(
            Some("on"),
            None,
            11,
            Some(MetricValue::Boolean(false)),
        )],
    };
    let props = PropertySet {
        keys: vec!["engUnit".into(), "nested".into()],
        values: vec![
            PropertyValue {
                r#type: Some(12),
                is_null: None,
                value: Some(PropertyValueValue::String("°C".into())),
            },
            PropertyValue {
                r#type: Some(20),
                is_null: None,
                value: Some(PropertyValueValue::PropertySet(PropertySet {
                    keys: vec!["q".into()],
                    values: vec![PropertyValue {
                        r#type: Some(3),
                        is_null: None,
                        value: Some(PropertyValueValue::Int(192)),
                    }],
                })),
            },
        ],
    };
    let mut with_props = metric(
        Some("ds"),
        None,
        16,
        Some(MetricValue::DataSet(Box::new(ds))),
    );
    with_props.properties = Some(Box::new(props));
    let p = Payload {
        metrics: vec![
            with_props,
            metric(
                Some("tm"),
                None,
                19,
                Some(MetricValue::Template(Box::new(tmpl))),
            ),
            metric(
                Some("arr"),
                None,
                33,
                Some(MetricValue::Bytes(b"x\0y\0".to_vec())),
            ),
        ],
        ..Default::default()
    };
    let v = decode("spBv1.0/g/NBIRTH/n", &p, &Births::default());
    let ds = &v["metrics"][0]["value"];
    assert_eq!(ds["columns"], json!(["a", "b"]));
    assert_eq!(ds["types"], json!(["Int16", "String"]));
    assert_eq!(ds["rows"], json!([[-1, "x"], [null, null]]));
    assert_eq!(
        v["metrics"][0]["properties"],
        json!({"engUnit": "°C", "nested": {"q": 192}})
    );
    let tm = &v["metrics"][1]["value"];
    assert_eq!(tm["template_ref"], "Motor");
    assert_eq!(
        tm["parameters"][0],
        json!({"name": "rpm", "type": "UInt32", "value": 1500})
    );
    assert_eq!(tm["metrics"][0]["value"], false);
    assert_eq!(v["metrics"][2]["value"], json!(["x", "y"]));
}

#[test]
fn mismatched_fields_show_raw_with_an_error() {
    let p = Payload {
        metrics: vec![metric(
            Some("x"),
            None,
            9,
            Some(MetricValue::String("hot".into())),
        )],
        ..Default::default()
    };
    let v = decode("spBv1.0/g/NDATA/n", &p, &Births::default());
    assert_eq!(v["metrics"][0]["value"], "hot");
    assert!(v["metrics"][0]["error"].as_str().unwrap().contains("Float"));
}

#[test]
fn state_is_json_or_the_old_text() {
    let t = Topic::parse("spBv1.0/STATE/host1").unwrap();
    let b = Births::default();
    let s = show(&t, br#"{"online":true,"timestamp":1}"#, 99, &b, &no_history).unwrap();
    assert_eq!(s.sparkplug.online, Some(true));
    assert_eq!(s.sparkplug.host.as_deref(), Some("host1"));
    assert_eq!(
        show(&t, b"OFFLINE", 99, &b, &no_history)
            .unwrap()
            .sparkplug
            .online,
        Some(false)
    );
    assert_eq!(
        show(&t, b"maybe", 99, &b, &no_history).unwrap_err(),
        DecodeError::State
    );
}

#[test]
fn deep_templates_are_cut_not_followed() {
    let mut m = metric(Some("leaf"), None, 11, Some(MetricValue::Boolean(true)));
    for _ in 0..40 {
        m = metric(
            Some("t"),
            None,
            19,
            Some(MetricValue::Template(Box::new(Template {
                metrics: vec![m],
                ..Default::default()
            }))),
        );
    }
    let p = Payload {
        metrics: vec![m],
        ..Default::default()
    };
    let v = decode("spBv1.0/g/NBIRTH/n", &p, &Births::default());
    assert!(v["metrics"][0].to_string().contains("nested deeper than"));
    // Past prost's recursion limit (100): an error, not a stack overflow.
    let mut m = metric(Some("leaf"), None, 11, Some(MetricValue::Boolean(true)));
    for _ in 0..150 {
        m = metric(
            None,
            None,
            19,
            Some(MetricValue::Template(Box::new(Template {
                metrics: vec![m],
                ..Default::default()
            }))),
        );
    }
    let bytes = Payload {
        metrics: vec![m],
        ..Default::default()
    }
    .encode_to_vec();
    let t = Topic::parse("spBv1.0/g/NDATA/n").unwrap();
    assert!(show(&t, &bytes, 4096, &Births::default(), &no_history).is_err());
}

#[test]
fn huge_payloads_are_bounded() {
    let births = Births::default();
    let t = Topic::parse("spBv1.0/g/NDATA/n").unwrap();
    let over = vec![0u8; MAX_DECODE_BYTES + 1];
    assert!(matches!(
        show(&t, &over, 4096, &births, &no_history),
        Err(DecodeError::TooLarge { .. })
    ));
    // 40,000 metrics: the list stops at the preview budget and says so.
    let p = Payload {
        metrics: (0..40_000)
            .map(|i| metric(Some("m"), Some(i), 10, Some(MetricValue::Double(1.0))))
            .collect(),
        ..Default::default()
    };
    let s = show(&t, &p.encode_to_vec(), 4096, &births, &no_history).unwrap();
    assert!(s.truncated);
    assert_eq!(s.sparkplug.metrics_total, Some(40_000));
    assert!(s.sparkplug.metrics.unwrap().len() < 100);
}

#[test]
fn truncated_and_garbage_payloads_are_errors() {
    let p = Payload {
        metrics: vec![metric(
            Some("x"),
            None,
            12,
            Some(MetricValue::String("abc".into())),
        )],
        ..Default::default()
    }
    .encode_to_vec();
    let t = Topic::parse("spBv1.0/g/NDATA/n").unwrap();
    let b = Births::default();
    for cut in 1..p.len() {
        assert!(
            show(&t, &p[..cut], 4096, &b, &no_history).is_err(),
            "cut at {cut}"
        );
    }
    assert!(show(
        &t,
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        99,
        &b,
        &no_history
    )
    .is_err());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), limit in 0usize..4096) {
        let b = Births::default();
        for topic in ["spBv1.0/g/NBIRTH/n", "spBv1.0/g/DDATA/n/d", "spBv1.0/STATE/h"] {
            let t = Topic::parse(topic).unwrap();
            let _ = show(&t, &bytes, limit, &b, &no_history);
        }
    }

    #[test]
    fn arbitrary_metrics_never_panic(
        dt in 0u32..40,
        int in any::<u32>(),
        long in any::<u64>(),
        f in any::<f32>(),
        raw in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let p = Payload {
            metrics: vec![
                metric(Some("a"), Some(1), dt, Some(MetricValue::Int(int))),
                metric(Some("b"), Some(2), dt, Some(MetricValue::Long(long))),
                metric(Some("c"), Some(3), dt, Some(MetricValue::Float(f))),
                metric(Some("d"), Some(4), dt, Some(MetricValue::Bytes(raw))),
            ],
            ..Default::default()
        };
        let t = Topic::parse("spBv1.0/g/NDATA/n").unwrap();
        let s = show(&t, &p.encode_to_vec(), 4096, &Births::default(), &no_history);
        prop_assert!(s.is_ok());
    }
}
