//! Background subscriptions against the embedded broker and Mosquitto:
//! `subscribe`, `read_messages` (cursors, limit, wait_ms, lost counts when
//! the buffer is small), `list_subscriptions` and `unsubscribe`, on the
//! default session and on extra MQTT 5 and MQTT 3.1.1 sessions.

mod common;

use common::brokers::{error_text, poll, unique, with_session, Bench, Target};
use serde_json::{json, Value};
use std::time::Duration;

on_both_brokers!(
    read_with_cursors_and_limit,
    small_buffers_count_what_they_lost,
    wait_ms_returns_the_next_message,
    list_and_unsubscribe,
    subscriptions_belong_to_their_session,
);

fn subscribe(b: &mut Bench, s: Option<&str>, args: Value) -> String {
    let r = b.call_ok("subscribe", with_session(args, s));
    r["subscription_id"].as_str().unwrap().to_string()
}

fn publish_n(b: &mut Bench, s: Option<&str>, topic: &str, range: std::ops::Range<u64>) {
    for n in range {
        b.call_ok(
            "publish_message",
            with_session(json!({"topic": topic, "payload": {"n": n}, "qos": 1}), s),
        );
    }
}

fn ns(msgs: &[Value]) -> Vec<u64> {
    msgs.iter()
        .map(|m| m["payload"]["json"]["n"].as_u64().unwrap())
        .collect()
}

fn seqs(msgs: &[Value]) -> Vec<u64> {
    msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

/// Polls list_subscriptions until `sub` has received `n` messages.
fn wait_received(b: &mut Bench, sub: &str, n: u64) -> Value {
    poll("the subscription to receive everything", 200, || {
        let l = b.call_ok("list_subscriptions", json!({}));
        let s = l["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subscription_id"] == json!(sub))
            .cloned()
            .expect("listed");
        (s["total_received"] == json!(n)).then_some(s)
    })
}

fn read_with_cursors_and_limit(target: Target) {
    let Some(mut b) = target.start("read_with_cursors_and_limit") else {
        return;
    };
    for (label, session) in b.sessions() {
        let s = session.as_deref();
        let base = unique("bg");
        let topic = format!("{base}/counter");
        let r = b.call_ok(
            "subscribe",
            with_session(json!({"filter": format!("{base}/#"), "qos": 1}), s),
        );
        let sub = r["subscription_id"].as_str().unwrap().to_string();
        assert!(sub.starts_with("sub_"), "{r}");
        assert_eq!(r["session_id"], json!(s.unwrap_or("default")));
        assert_eq!(r["filters"], json!([format!("{base}/#")]));
        assert_eq!(r["granted_qos"], json!([1]));
        assert_eq!(r["buffer_messages"], json!(1000));
        assert_eq!(r["buffer_bytes"], json!(8 * 1024 * 1024));

        publish_n(&mut b, s, &topic, 0..5);
        let (msgs, last) = b.read_n(s, &sub, 0, 5);
        assert_eq!(ns(&msgs), vec![0, 1, 2, 3, 4], "{label}");
        let sq = seqs(&msgs);
        assert!(sq.windows(2).all(|w| w[0] < w[1]), "{label}: {sq:?}");
        for m in &msgs {
            assert_eq!(m["topic"], json!(topic));
            assert_eq!(m["qos"], json!(1), "{label}: {m}");
            assert_eq!(m["retain"], json!(false));
            assert_eq!(m["payload"]["format"], json!("json"));
        }
        let end = last["next_cursor"].as_u64().unwrap();
        assert_eq!(end, sq[4]);
        assert_eq!(last["lost"], json!(0));
        assert_eq!(last["gaps"], json!([]));
        assert_eq!(last["more"], json!(false));
        assert_eq!(last["buffered"], json!(5));
        assert_eq!(last["total_received"], json!(5));

        // Nothing new after the cursor: the cursor stays.
        let r = b.call_ok(
            "read_messages",
            with_session(json!({"subscription_id": sub, "since": end}), s),
        );
        assert_eq!(r["messages"], json!([]));
        assert_eq!(r["next_cursor"], json!(end));
        assert_eq!(r["lost"], json!(0));

        // Reading is not consuming: from 0 again, two at a time.
        let r = b.call_ok(
            "read_messages",
            with_session(json!({"subscription_id": sub, "since": 0, "limit": 2}), s),
        );
        assert_eq!(ns(r["messages"].as_array().unwrap()), vec![0, 1]);
        assert_eq!(r["more"], json!(true));
        assert_eq!(r["next_cursor"], json!(sq[1]));
        let r = b.call_ok(
            "read_messages",
            with_session(
                json!({"subscription_id": sub, "since": sq[1], "limit": 2}),
                s,
            ),
        );
        assert_eq!(ns(r["messages"].as_array().unwrap()), vec![2, 3]);
        assert_eq!(r["more"], json!(true));
        let r = b.call_ok(
            "read_messages",
            with_session(
                json!({"subscription_id": sub, "since": sq[3], "limit": 2}),
                s,
            ),
        );
        assert_eq!(ns(r["messages"].as_array().unwrap()), vec![4]);
        assert_eq!(r["more"], json!(false));
        assert_eq!(r["next_cursor"], json!(end));

        // More arrive; the old cursor sees only them.
        publish_n(&mut b, s, &topic, 5..8);
        let (msgs, _) = b.read_n(s, &sub, end, 3);
        assert_eq!(ns(&msgs), vec![5, 6, 7], "{label}");
    }
}

fn small_buffers_count_what_they_lost(target: Target) {
    let Some(mut b) = target.start("small_buffers_count_what_they_lost") else {
        return;
    };
    for (label, session) in b.sessions() {
        let s = session.as_deref();
        let base = unique("lost");
        // A buffer of 3 messages: 10 arrive, the 7 oldest are dropped.
        let topic = format!("{base}/count");
        let sub = subscribe(
            &mut b,
            s,
            json!({"filter": topic, "qos": 1, "buffer_messages": 3}),
        );
        publish_n(&mut b, s, &topic, 0..10);
        let listed = wait_received(&mut b, &sub, 10);
        assert_eq!(listed["buffered"], json!(3), "{label}: {listed}");
        assert_eq!(listed["lost"], json!(7), "{label}: {listed}");
        assert_eq!(listed["last_seq"], json!(10), "{label}: {listed}");
        let r = b.call_ok(
            "read_messages",
            with_session(json!({"subscription_id": sub, "since": 0}), s),
        );
        assert_eq!(
            ns(r["messages"].as_array().unwrap()),
            vec![7, 8, 9],
            "{label}: {r}"
        );
        assert_eq!(r["lost"], json!(7), "{label}: {r}");
        assert_eq!(r["next_cursor"], json!(10));
        assert_eq!(r["buffered"], json!(3));
        assert_eq!(r["total_received"], json!(10));
        // A reader that already had the first 8 lost nothing more.
        let r = b.call_ok(
            "read_messages",
            with_session(json!({"subscription_id": sub, "since": 8}), s),
        );
        assert_eq!(ns(r["messages"].as_array().unwrap()), vec![8, 9]);
        assert_eq!(r["lost"], json!(0));

        // A byte cap of 1 KiB holds one 600-byte message.
        let big = format!("{base}/big");
        let sub = subscribe(
            &mut b,
            s,
            json!({"filter": big, "qos": 1, "buffer_bytes": 1024}),
        );
        for i in 0..4 {
            let text = format!("{i}{}", "x".repeat(599));
            b.call_ok(
                "publish_message",
                with_session(json!({"topic": big, "payload": text, "qos": 1}), s),
            );
        }
        let listed = wait_received(&mut b, &sub, 4);
        assert_eq!(listed["buffered"], json!(1), "{label}: {listed}");
        assert_eq!(listed["buffered_bytes"], json!(600), "{label}: {listed}");
        let r = b.call_ok(
            "read_messages",
            with_session(json!({"subscription_id": sub}), s),
        );
        let msgs = r["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 1, "{label}: {r}");
        assert!(msgs[0]["payload"]["text"]
            .as_str()
            .unwrap()
            .starts_with("3x"));
        assert_eq!(r["lost"], json!(3), "{label}: {r}");
    }
}

fn wait_ms_returns_the_next_message(target: Target) {
    let Some(mut b) = target.start("wait_ms_returns_the_next_message") else {
        return;
    };
    for (label, session) in b.sessions() {
        let s = session.as_deref();
        let topic = format!("{}/w", unique("wait"));
        let sub = subscribe(&mut b, s, json!({"filter": topic, "qos": 1}));
        // Nothing arrives: an empty answer once the wait is over.
        let r = b.call_ok(
            "read_messages",
            with_session(json!({"subscription_id": sub, "wait_ms": 200}), s),
        );
        assert_eq!(r["messages"], json!([]), "{label}");
        assert_eq!(r["next_cursor"], json!(0));
        // A waiting read is answered by a message published meanwhile.
        let id = b.send_call(
            "read_messages",
            with_session(json!({"subscription_id": sub, "wait_ms": 30000}), s),
        );
        b.call_ok(
            "publish_message",
            with_session(json!({"topic": topic, "payload": "wake up", "qos": 1}), s),
        );
        let r = common::Server::ok_of(&b.recv_id(&id, Duration::from_secs(20)));
        let msgs = r["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 1, "{label}: {r}");
        assert_eq!(msgs[0]["payload"]["text"], json!("wake up"));
        assert_eq!(r["next_cursor"], json!(1));
    }
}

fn list_and_unsubscribe(target: Target) {
    let Some(mut b) = target.start("list_and_unsubscribe") else {
        return;
    };
    let sessions = b.sessions();
    let base = unique("ls");
    let mut subs = Vec::new();
    for (i, (_, session)) in sessions.iter().enumerate() {
        let s = session.as_deref();
        let filters = json!([format!("{base}/{i}/a/#"), format!("{base}/{i}/+/b")]);
        let r = b.call_ok(
            "subscribe",
            with_session(json!({"filters": filters, "qos": 2}), s),
        );
        assert_eq!(r["filters"], filters);
        assert_eq!(r["granted_qos"], json!([2, 2]), "{r}");
        let sub = r["subscription_id"].as_str().unwrap().to_string();
        for t in ["a/x/y", "c/b", "c/d"] {
            b.call_ok(
                "publish_message",
                with_session(
                    json!({"topic": format!("{base}/{i}/{t}"), "payload": t, "qos": 1}),
                    s,
                ),
            );
        }
        let (msgs, _) = b.read_n(s, &sub, 0, 2);
        let topics: Vec<&str> = msgs.iter().map(|m| m["topic"].as_str().unwrap()).collect();
        assert!(topics.contains(&format!("{base}/{i}/a/x/y").as_str()));
        assert!(topics.contains(&format!("{base}/{i}/c/b").as_str()));
        subs.push((sub, s.unwrap_or("default").to_string(), filters));
    }

    // All sessions' subscriptions without session_id, one session's with it.
    let all = b.call_ok("list_subscriptions", json!({}));
    let listed = all["subscriptions"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{all}");
    for (sub, session, filters) in &subs {
        let l = listed
            .iter()
            .find(|l| l["subscription_id"] == json!(sub))
            .unwrap_or_else(|| panic!("{sub} not in {all}"));
        assert_eq!(&l["session_id"], &json!(session));
        assert_eq!(&l["filters"], filters);
        assert_eq!(l["qos"], json!(2));
        assert_eq!(l["buffered"], json!(2), "{l}");
        assert_eq!(l["total_received"], json!(2), "{l}");
        assert_eq!(l["last_seq"], json!(2), "{l}");
        assert_eq!(l["lost"], json!(0));
        assert_eq!(l["reconnects"], json!(0));
        assert_eq!(l["buffered_bytes"], json!("a/x/y".len() + "c/b".len()));
    }
    let one = b.call_ok(
        "list_subscriptions",
        json!({"session_id": subs[1].1.clone()}),
    );
    assert_eq!(one["subscriptions"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["subscriptions"][0]["subscription_id"], json!(subs[1].0));

    // Unsubscribe: gone from the list, unreadable, and nothing more arrives.
    for (i, (sub, session, _)) in subs.iter().enumerate() {
        let s = (session != "default").then_some(session.as_str());
        let r = b.call_ok(
            "unsubscribe",
            with_session(json!({"subscription_id": sub}), s),
        );
        assert_eq!(r["subscription_id"], json!(sub));
        assert_eq!(r["unsubscribed"], json!(true));
        assert_eq!(r["total_received"], json!(2));
        let r = b.call(
            "read_messages",
            with_session(json!({"subscription_id": sub}), s),
        );
        let text = error_text(&r);
        assert!(text.contains("list_subscriptions"), "{text}");
        let r = b.call(
            "unsubscribe",
            with_session(json!({"subscription_id": sub}), s),
        );
        error_text(&r);
        // The broker subscription is gone too: a probe published now is never
        // delivered to the session (history records every delivery).
        let barrier = format!("{}/barrier", unique("b"));
        let bsub = subscribe(&mut b, s, json!({"filter": barrier, "qos": 1}));
        let mut cursor = 0;
        poll("the unsubscribe to reach the broker", 100, || {
            let probe = format!("{base}/{i}/a/{}", unique("probe"));
            b.call_ok(
                "publish_message",
                with_session(json!({"topic": probe, "payload": "late", "qos": 1}), s),
            );
            b.call_ok(
                "publish_message",
                with_session(json!({"topic": barrier, "payload": "b", "qos": 1}), s),
            );
            let r = b.call_ok(
                "read_messages",
                with_session(
                    json!({"subscription_id": bsub, "since": cursor, "wait_ms": 2000}),
                    s,
                ),
            );
            cursor = r["next_cursor"].as_u64().unwrap();
            let h = b.call_ok("topic_history", with_session(json!({"topic": probe}), s));
            h["messages"].as_array().unwrap().is_empty().then_some(())
        });
        b.call_ok(
            "unsubscribe",
            with_session(json!({"subscription_id": bsub}), s),
        );
    }
    let all = b.call_ok("list_subscriptions", json!({}));
    assert_eq!(all["subscriptions"], json!([]), "{all}");
}

fn subscriptions_belong_to_their_session(target: Target) {
    let Some(mut b) = target.start("subscriptions_belong_to_their_session") else {
        return;
    };
    let other = b.session("3.1.1");
    let sub = subscribe(
        &mut b,
        None,
        json!({"filter": format!("{}/#", unique("own"))}),
    );
    let r = b.call(
        "read_messages",
        json!({"subscription_id": sub, "session_id": other}),
    );
    let text = error_text(&r);
    assert!(text.contains("session"), "{text}");
    let r = b.call(
        "unsubscribe",
        json!({"subscription_id": sub, "session_id": other}),
    );
    error_text(&r);
    // Still there in its own session.
    b.call_ok("read_messages", json!({"subscription_id": sub}));
    // A bad filter is refused before anything is subscribed.
    let r = b.call("subscribe", json!({"filter": "a/#/b"}));
    let text = error_text(&r);
    assert!(text.contains("wildcard"), "{text}");
    let all = b.call_ok("list_subscriptions", json!({}));
    assert_eq!(all["subscriptions"].as_array().unwrap().len(), 1, "{all}");
}

/// `unsubscribe` reports as `unread` the buffered messages never read.
#[test]
fn unsubscribe_counts_only_unread_messages() {
    let mut b = Target::Embedded
        .start("unsubscribe_counts_only_unread")
        .unwrap();
    let topic = format!("{}/u", unique("unread"));
    let sub = subscribe(&mut b, None, json!({"filter": topic, "qos": 1}));
    publish_n(&mut b, None, &topic, 0..5);
    wait_received(&mut b, &sub, 5);
    // Read the first three only: two stay unread.
    let r = b.call_ok(
        "read_messages",
        json!({"subscription_id": sub, "since": 0, "limit": 3}),
    );
    assert_eq!(ns(r["messages"].as_array().unwrap()), vec![0, 1, 2]);
    let r = b.call_ok("unsubscribe", json!({"subscription_id": sub}));
    assert_eq!(r["total_received"], json!(5));
    assert_eq!(r["unread"], json!(2), "{r}");
}
