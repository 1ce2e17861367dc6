//! Topic discovery against the embedded broker and Mosquitto: `list_topics`
//! (retained at once, live during the window, sorting, prefix, paging, the
//! level tree) and `debug_device` (topics with the device id at any depth up
//! to max_depth, silent versus live).

mod common;

use common::brokers::{error_text, unique, with_session, Bench, Target};
use serde_json::{json, Value};

on_both_brokers!(
    list_topics_sorts_pages_and_builds_a_tree,
    list_topics_counts_live_traffic,
    debug_device_finds_the_device_at_every_depth,
    debug_device_with_only_retained_state_is_silent,
);

fn retain(b: &mut Bench, s: Option<&str>, topic: &str, payload: Value) {
    b.call_ok(
        "publish_message",
        with_session(
            json!({"topic": topic, "payload": payload, "qos": 1, "retain": true}),
            s,
        ),
    );
}

fn topic_names(l: &Value) -> Vec<String> {
    l["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["topic"].as_str().unwrap().to_string())
        .collect()
}

fn list_topics_sorts_pages_and_builds_a_tree(target: Target) {
    let Some(mut b) = target.start("list_topics_sorts_pages_and_builds_a_tree") else {
        return;
    };
    for (label, session) in b.sessions() {
        let s = session.as_deref();
        let base = unique("lt");
        let names = [
            "home/kitchen/temp",
            "home/attic/temp",
            "garden/rain",
            "home/kitchen/hum",
        ];
        for (i, t) in names.iter().enumerate() {
            retain(&mut b, s, &format!("{base}/{t}"), json!({"i": i}));
        }
        let l = b.call_ok(
            "list_topics",
            with_session(json!({"filter": format!("{base}/#"), "window_ms": 0}), s),
        );
        let mut sorted: Vec<String> = names.iter().map(|t| format!("{base}/{t}")).collect();
        sorted.sort();
        assert_eq!(topic_names(&l), sorted, "{label}: {l}");
        assert_eq!(l["total_topics"], json!(4));
        assert_eq!(l["returned"], json!(4));
        assert_eq!(l["messages"], json!(4));
        assert_eq!(l["dropped"], json!(0));
        assert_eq!(l["next_cursor"], Value::Null);
        let first = &l["topics"][0];
        assert_eq!(first["topic"], json!(format!("{base}/garden/rain")));
        assert_eq!(first["messages"], json!(1));
        assert_eq!(first["retained"], json!(true));
        assert_eq!(first["format"], json!("json"));
        assert_eq!(first["preview"], json!(r#"{"i":2}"#));

        // The tree: levels with topic and message counts.
        let root = &l["tree"];
        assert_eq!((&root["topics"], &root["messages"]), (&json!(4), &json!(4)));
        let top = &root["children"][&base];
        assert_eq!(top["topics"], json!(4), "{label}: {root}");
        assert_eq!(top["children"]["home"]["topics"], json!(3));
        assert_eq!(top["children"]["garden"]["topics"], json!(1));
        assert_eq!(
            top["children"]["home"]["children"]["kitchen"]["topics"],
            json!(2)
        );

        if s.is_some() {
            // Paging is the server's own work: the default session covers it.
            continue;
        }
        // Paging with limit and cursor, and a prefix.
        let p1 = b.call_ok(
            "list_topics",
            with_session(
                json!({"filter": format!("{base}/#"), "window_ms": 0, "limit": 3}),
                s,
            ),
        );
        assert_eq!(topic_names(&p1), sorted[..3].to_vec());
        assert_eq!(p1["returned"], json!(3));
        assert_eq!(p1["total_topics"], json!(4));
        let cursor = p1["next_cursor"].as_str().expect("a cursor").to_string();
        let p2 = b.call_ok(
            "list_topics",
            with_session(
                json!({"filter": format!("{base}/#"), "window_ms": 0, "limit": 3, "cursor": cursor}),
                s,
            ),
        );
        assert_eq!(topic_names(&p2), sorted[3..].to_vec());
        assert_eq!(p2["next_cursor"], Value::Null);
        let pre = b.call_ok(
            "list_topics",
            with_session(
                json!({"filter": format!("{base}/#"), "window_ms": 0, "prefix": format!("{base}/home/kitchen")}),
                s,
            ),
        );
        assert_eq!(
            topic_names(&pre),
            vec![
                format!("{base}/home/kitchen/hum"),
                format!("{base}/home/kitchen/temp")
            ]
        );
        assert_eq!(pre["total_topics"], json!(2));
        // A filter narrows what is listened to.
        let narrow = b.call_ok(
            "list_topics",
            with_session(
                json!({"filter": format!("{base}/+/+/temp"), "window_ms": 0}),
                s,
            ),
        );
        assert_eq!(narrow["total_topics"], json!(2), "{narrow}");
        // A cursor that list_topics never gave is refused.
        let r = b.call(
            "list_topics",
            with_session(
                json!({"filter": format!("{base}/#"), "window_ms": 0, "cursor": "zz"}),
                s,
            ),
        );
        assert!(error_text(&r).contains("next_cursor"));
    }
}

fn list_topics_counts_live_traffic(target: Target) {
    let Some(mut b) = target.start("list_topics_counts_live_traffic") else {
        return;
    };
    for (label, session) in b.sessions() {
        let s = session.as_deref();
        let base = unique("live");
        retain(&mut b, s, &format!("{base}/state"), json!("on"));
        let resp = b.while_listening(
            s,
            "list_topics",
            json!({"filter": format!("{base}/#"), "window_ms": 1500}),
            &format!("{base}/ready"),
            |b: &mut Bench| {
                for i in 0..3 {
                    b.call_ok(
                        "publish_message",
                        with_session(
                            json!({"topic": format!("{base}/events"), "payload": format!("event {i}")}),
                            s,
                        ),
                    );
                }
            },
        );
        let l = common::Server::ok_of(&resp);
        assert_eq!(l["window_ms"], json!(1500));
        let topics = l["topics"].as_array().unwrap();
        let get = |t: &str| {
            topics
                .iter()
                .find(|x| x["topic"] == json!(format!("{base}/{t}")))
                .unwrap_or_else(|| panic!("{label}: {t} missing in {l}"))
                .clone()
        };
        let ev = get("events");
        assert_eq!(ev["messages"], json!(3), "{label}: {ev}");
        assert_eq!(ev["retained"], json!(false));
        assert_eq!(ev["format"], json!("text"));
        assert_eq!(ev["preview"], json!("event 2"), "the last payload");
        assert!(ev["rate_per_s"].as_f64().unwrap() > 0.0, "{ev}");
        let st = get("state");
        assert_eq!(st["retained"], json!(true));
        assert_eq!(st["messages"], json!(1));
        assert_eq!(st["rate_per_s"], json!(0.0), "retained only: {st}");
        assert!(get("ready")["messages"].as_u64().unwrap() >= 1);
        assert_eq!(l["total_topics"], json!(3), "{l}");
    }
}

fn debug_device_finds_the_device_at_every_depth(target: Target) {
    let Some(mut b) = target.start("debug_device_finds_the_device_at_every_depth") else {
        return;
    };
    for (label, session) in b.sessions() {
        let s = session.as_deref();
        let dev = unique("dev");
        let retained = [
            format!("{dev}/status"),               // depth 0
            format!("zigbee/{dev}/battery"),       // depth 1
            format!("a/b/c/{dev}/x"),              // depth 3
            format!("a/b/c/d/{dev}/too_deep"),     // depth 4: beyond max_depth 4
            format!("zigbee/{dev}x/battery"),      // another device
            format!("zigbee/prefix{dev}/battery"), // another device
        ];
        for (i, t) in retained.iter().enumerate() {
            retain(&mut b, s, t, json!({"i": i}));
        }
        let live = format!("home/room/{dev}/temp"); // depth 2, live
        let resp = b.while_listening(
            s,
            "debug_device",
            json!({"device_id": dev, "window_ms": 1500}),
            &live,
            |b: &mut Bench| {
                b.call_ok(
                    "publish_message",
                    with_session(json!({"topic": live, "payload": {"temp": 21.5}}), s),
                );
            },
        );
        let d = common::Server::ok_of(&resp);
        assert_eq!(d["device_id"], json!(dev));
        assert_eq!(
            d["filters"],
            json!([
                format!("{dev}/#"),
                format!("+/{dev}/#"),
                format!("+/+/{dev}/#"),
                format!("+/+/+/{dev}/#")
            ])
        );
        let found: Vec<String> = d["topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["topic"].as_str().unwrap().to_string())
            .collect();
        let mut expected = vec![
            retained[0].clone(),
            retained[1].clone(),
            retained[2].clone(),
            live.clone(),
        ];
        expected.sort();
        assert_eq!(found, expected, "{label}: {d}");
        for t in d["topics"].as_array().unwrap() {
            if t["topic"] == json!(live) {
                assert_eq!(t["silent"], json!(false), "{t}");
                assert_eq!(t["retained"], json!(false));
                assert!(
                    t["live_messages"].as_u64().unwrap() >= 2,
                    "ready + reading: {t}"
                );
                assert_eq!(t["messages"], t["live_messages"]);
                assert_eq!(t["last_value"]["json"], json!({"temp": 21.5}), "{t}");
                assert!(t["rate_per_s"].as_f64().unwrap() > 0.0);
            } else {
                assert_eq!(t["silent"], json!(true), "{t}");
                assert_eq!(t["retained"], json!(true));
                assert_eq!(
                    (&t["messages"], &t["live_messages"]),
                    (&json!(1), &json!(0))
                );
                let i = retained
                    .iter()
                    .position(|r| t["topic"] == json!(r))
                    .unwrap();
                assert_eq!(t["last_value"]["json"], json!({"i": i}));
            }
        }
        let sum = &d["summary"];
        assert_eq!(sum["topics"], json!(4));
        assert_eq!(sum["live_topics"], json!(1));
        assert_eq!(sum["silent_topics"], json!(3));
        assert_eq!(sum["window_ms"], json!(1500));
        assert_eq!(d["note"], Value::Null);

        // Deeper search finds the fifth level too.
        let deep = b.call_ok(
            "debug_device",
            with_session(json!({"device_id": dev, "window_ms": 0, "max_depth": 5}), s),
        );
        // (window 0: the retained topics only, now with the fifth level.)
        assert_eq!(deep["summary"]["topics"], json!(4), "{deep}");
        assert!(deep["topics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["topic"] == json!(retained[3])));
    }
}

fn debug_device_with_only_retained_state_is_silent(target: Target) {
    let Some(mut b) = target.start("debug_device_with_only_retained_state_is_silent") else {
        return;
    };
    let dev = unique("quiet");
    retain(&mut b, None, &format!("tele/{dev}/LWT"), json!("Offline"));
    let d = b.call_ok("debug_device", json!({"device_id": dev, "window_ms": 200}));
    assert_eq!(d["summary"]["topics"], json!(1), "{d}");
    assert_eq!(d["summary"]["live_topics"], json!(0));
    assert_eq!(d["topics"][0]["silent"], json!(true));
    assert_eq!(
        d["topics"][0]["last_value"],
        json!({"format": "text", "size": 7, "text": "Offline", "truncated": false})
    );
    assert!(d["note"].as_str().unwrap().contains("retained"), "{d}");
    // An unknown device: no topics, and a note that says what to try.
    let d = b.call_ok(
        "debug_device",
        json!({"device_id": unique("nobody"), "window_ms": 200}),
    );
    assert_eq!(d["topics"], json!([]));
    assert!(d["note"].as_str().unwrap().contains("list_topics"), "{d}");
    // A device id is one level.
    let r = b.call("debug_device", json!({"device_id": "a/b", "window_ms": 0}));
    assert!(error_text(&r).contains("one topic level"));
    let r = b.call("debug_device", json!({"device_id": "+", "window_ms": 0}));
    error_text(&r);
}
