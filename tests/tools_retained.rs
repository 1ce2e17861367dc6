//! Retained messages against the embedded broker and Mosquitto, on MQTT 5
//! and MQTT 3.1.1 sessions: `get_retained` returns what was retained (and
//! only that), `list_topics` with window_ms 0 shows it, `clear_retained`
//! with dry_run changes nothing and without it clears (up to max).

mod common;

use common::brokers::{unique, with_session, Bench, Target};
use serde_json::{json, Value};

on_both_brokers!(
    get_retained_returns_the_retained_state,
    clear_retained_dry_run_then_for_real,
    clear_retained_stops_at_max,
);

fn retain(b: &mut Bench, s: Option<&str>, topic: &str, payload: Value) {
    let r = b.call_ok(
        "publish_message",
        with_session(
            json!({"topic": topic, "payload": payload, "qos": 1, "retain": true}),
            s,
        ),
    );
    assert_eq!(r["status"], json!("acknowledged"), "{r}");
}

fn topics_of(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| m["topic"].as_str().unwrap().to_string())
        .collect()
}

fn retained_topics(b: &mut Bench, s: Option<&str>, filter: &str) -> Vec<String> {
    let r = b.call_ok(
        "get_retained",
        with_session(json!({"filter": filter, "settle_ms": 200}), s),
    );
    topics_of(&r["messages"])
}

fn get_retained_returns_the_retained_state(target: Target) {
    let Some(mut b) = target.start("get_retained_returns_the_retained_state") else {
        return;
    };
    for (label, session) in b.sessions() {
        let s = session.as_deref();
        let base = unique("ret");
        retain(&mut b, s, &format!("{base}/b/json"), json!({"v": 1}));
        // A newer retained message replaces the older one.
        retain(&mut b, s, &format!("{base}/b/json"), json!({"v": 2}));
        retain(&mut b, s, &format!("{base}/a/text"), json!("idle"));
        retain(&mut b, s, &format!("{base}/c/bin"), json!({"hex": "80ff"}));
        // Not retained: never part of the retained state.
        b.call_ok(
            "publish_message",
            with_session(
                json!({"topic": format!("{base}/d/live"), "payload": "x"}),
                s,
            ),
        );

        let r = b.call_ok(
            "get_retained",
            with_session(json!({"filter": format!("{base}/#")}), s),
        );
        assert_eq!(r["filter"], json!(format!("{base}/#")));
        assert_eq!(r["count"], json!(3), "{label}: {r}");
        assert_eq!(r["truncated"], json!(false));
        assert_eq!(
            topics_of(&r["messages"]),
            vec![
                format!("{base}/a/text"),
                format!("{base}/b/json"),
                format!("{base}/c/bin")
            ],
            "sorted by topic"
        );
        let m = &r["messages"];
        assert!(m
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["retain"] == json!(true)));
        assert_eq!(m[0]["payload"]["text"], json!("idle"));
        assert_eq!(m[1]["payload"]["json"], json!({"v": 2}), "{label}: {r}");
        assert_eq!(
            m[2]["payload"],
            json!({"format": "binary", "size": 2, "base64": "gP8=", "truncated": false})
        );

        // limit: the first by topic, and truncated says there were more.
        let r = b.call_ok(
            "get_retained",
            with_session(json!({"filter": format!("{base}/#"), "limit": 2}), s),
        );
        assert_eq!(r["count"], json!(2), "{r}");
        assert_eq!(r["truncated"], json!(true), "{r}");

        // A narrower filter; and list_topics sees the retained topics at once.
        assert_eq!(
            retained_topics(&mut b, s, &format!("{base}/+/text")),
            vec![format!("{base}/a/text")]
        );
        let l = b.call_ok(
            "list_topics",
            with_session(json!({"filter": format!("{base}/#"), "window_ms": 0}), s),
        );
        assert_eq!(l["window_ms"], json!(0));
        assert_eq!(l["total_topics"], json!(3), "{label}: {l}");
        let listed = l["topics"].as_array().unwrap();
        assert!(listed.iter().all(|t| t["retained"] == json!(true)), "{l}");
        assert_eq!(listed[1]["topic"], json!(format!("{base}/b/json")));
        assert_eq!(listed[1]["format"], json!("json"));
        assert_eq!(listed[1]["preview"], json!(r#"{"v":2}"#));
    }
    // Without a filter: everything retained on the broker (#).
    let r = b.call_ok("get_retained", json!({}));
    assert_eq!(r["filter"], json!("#"));
    assert_eq!(r["count"], json!(9), "three topics per session: {r}");
}

fn clear_retained_dry_run_then_for_real(target: Target) {
    let Some(mut b) = target.start("clear_retained_dry_run_then_for_real") else {
        return;
    };
    for (label, session) in b.sessions() {
        let s = session.as_deref();
        let base = unique("clr");
        let filter = format!("{base}/#");
        let topics: Vec<String> = ["x/1", "x/2", "y"]
            .iter()
            .map(|t| format!("{base}/{t}"))
            .collect();
        for t in &topics {
            retain(&mut b, s, t, json!({"t": t}));
        }
        retain(&mut b, s, &format!("{}/keep", unique("other")), json!(1));

        // dry_run is the default: it lists, clears nothing.
        let r = b.call_ok("clear_retained", with_session(json!({"filter": filter}), s));
        assert_eq!(r["dry_run"], json!(true));
        assert_eq!(r["filter"], json!(filter));
        assert_eq!(r["topics"], json!(topics), "{label}: {r}");
        assert_eq!(r["cleared"], json!(0));
        assert_eq!(r["remaining"], json!(0));
        assert_eq!(r["failed"], json!([]));
        assert_eq!(retained_topics(&mut b, s, &filter), topics, "{label}");

        let r = b.call_ok(
            "clear_retained",
            with_session(
                json!({"filter": filter, "dry_run": false, "settle_ms": 150}),
                s,
            ),
        );
        assert_eq!(r["dry_run"], json!(false));
        assert_eq!(r["topics"], json!(topics), "{label}: {r}");
        assert_eq!(r["cleared"], json!(3), "{label}: {r}");
        assert_eq!(r["failed"], json!([]));
        assert_eq!(
            retained_topics(&mut b, s, &filter),
            Vec::<String>::new(),
            "{label}"
        );
        let l = b.call_ok(
            "list_topics",
            with_session(json!({"filter": filter, "window_ms": 0}), s),
        );
        assert_eq!(l["total_topics"], json!(0), "{label}: {l}");
        // Nothing left to clear; other topics were not touched.
        let r = b.call_ok(
            "clear_retained",
            with_session(
                json!({"filter": filter, "dry_run": false, "settle_ms": 150}),
                s,
            ),
        );
        assert_eq!(r["cleared"], json!(0), "{r}");
        assert_eq!(r["topics"], json!([]));
    }
    assert_eq!(
        retained_topics(&mut b, None, "#").len(),
        3,
        "the other/keep topics"
    );
}

fn clear_retained_stops_at_max(target: Target) {
    let Some(mut b) = target.start("clear_retained_stops_at_max") else {
        return;
    };
    let s = b.session("3.1.1");
    let base = unique("max");
    for i in 0..5 {
        retain(&mut b, Some(&s), &format!("{base}/{i}"), json!(i));
    }
    let r = b.call_ok(
        "clear_retained",
        json!({"session_id": s, "filter": format!("{base}/#"), "dry_run": false, "max": 2}),
    );
    assert_eq!(r["cleared"], json!(2), "{r}");
    assert_eq!(r["topics"].as_array().unwrap().len(), 2);
    assert_eq!(r["remaining"], json!(3), "{r}");
    let left = retained_topics(&mut b, None, &format!("{base}/#"));
    assert_eq!(left.len(), 3, "{left:?}");
    for t in r["topics"].as_array().unwrap() {
        assert!(!left.contains(&t.as_str().unwrap().to_string()));
    }
}
