//! A broker that dies and comes back on the same port: the server's default
//! session (`serve --broker`) reconnects, its background subscription is
//! resubscribed (the restarted broker forgot it), and `read_messages`
//! returns the new messages and reports the gap. Run against the binary's
//! own `mqtt-mcp broker` process (always available) and Mosquitto.

mod common;

use common::brokers::{poll, serve_external, unique, BrokerProcess, Mosquitto, RawClient};
use common::Server;
use serde_json::{json, Value};

/// A broker the test can kill and start again on the same port.
trait Restartable {
    /// Where the server connects (MQTT 5, or both versions).
    fn port(&self) -> u16;
    /// Where a 3.1.1 client connects.
    fn v4_port(&self) -> u16;
    fn stop(&mut self);
    fn restart(&mut self);
}

impl Restartable for BrokerProcess {
    fn port(&self) -> u16 {
        self.v5_port
    }
    fn v4_port(&self) -> u16 {
        self.v4_port
    }
    fn stop(&mut self) {
        BrokerProcess::stop(self)
    }
    fn restart(&mut self) {
        BrokerProcess::restart(self)
    }
}

impl Restartable for Mosquitto {
    fn port(&self) -> u16 {
        self.port
    }
    fn v4_port(&self) -> u16 {
        self.port
    }
    fn stop(&mut self) {
        Mosquitto::stop(self)
    }
    fn restart(&mut self) {
        Mosquitto::restart(self)
    }
}

#[test]
fn reconnects_to_a_restarted_embedded_broker_process() {
    let mut broker = BrokerProcess::start();
    survives_a_broker_restart(&mut broker);
}

#[test]
fn reconnects_to_a_restarted_mosquitto() {
    let Some(mut broker) = Mosquitto::start("reconnects_to_a_restarted_mosquitto") else {
        return;
    };
    survives_a_broker_restart(&mut broker);
}

fn default_session(s: &mut Server) -> Value {
    let list = s.call_ok("list_active_connections", json!({}));
    list["sessions"][0].clone()
}

fn publish(s: &mut Server, topic: &str, n: u64) {
    s.call_ok(
        "publish_message",
        json!({"topic": topic, "payload": {"n": n}, "qos": 1, "timeout_ms": 2000}),
    );
}

fn read(s: &mut Server, sub: &str, since: u64, wait_ms: u64) -> Value {
    s.call_ok(
        "read_messages",
        json!({"subscription_id": sub, "since": since, "wait_ms": wait_ms}),
    )
}

fn ns(r: &Value) -> Vec<u64> {
    r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"]["json"]["n"].as_u64().unwrap())
        .collect()
}

fn survives_a_broker_restart(broker: &mut dyn Restartable) {
    let mut s = serve_external(broker.port(), &[]);
    s.initialize();
    let d = default_session(&mut s);
    assert_eq!(
        (&d["state"], &d["reconnects"]),
        (&json!("connected"), &json!(0)),
        "{d}"
    );
    let base = unique("reconnect");
    let topic = format!("{base}/data");
    let r = s.call_ok(
        "subscribe",
        json!({"filter": format!("{base}/#"), "qos": 1}),
    );
    let sub = r["subscription_id"].as_str().unwrap().to_string();

    // Before: three messages, no gap.
    for n in 0..3 {
        publish(&mut s, &topic, n);
    }
    let mut got = Vec::new();
    let mut cursor = 0;
    poll("the first messages", 100, || {
        let r = read(&mut s, &sub, cursor, 1000);
        got.extend(ns(&r));
        cursor = r["next_cursor"].as_u64().unwrap();
        assert_eq!(r["gaps"], json!([]));
        (got.len() >= 3).then_some(())
    });
    assert_eq!(got, vec![0, 1, 2]);

    // The broker dies: the session notices and keeps retrying.
    broker.stop();
    let down = poll("the session to notice the broker is gone", 200, || {
        let d = default_session(&mut s);
        (d["state"] == json!("reconnecting")).then_some(d)
    });
    assert!(down["last_error"].is_string(), "{down}");
    let t = s.call(
        "test_connection",
        json!({"include_sys": false, "timeout_ms": 500}),
    );
    // Either a tool error or a result that says so.
    if t["isError"] == json!(false) {
        let sc = &t["structuredContent"];
        assert_eq!(sc["reachable"], json!(false), "no broker: {t}");
        assert_eq!(sc["state"], json!("reconnecting"), "{t}");
    }
    // A publish meanwhile: nobody confirms it, so its fate is unknown (it
    // may still be delivered after the reconnect).
    let p = s.call_ok(
        "publish_message",
        json!({"topic": topic, "payload": {"n": 50}, "qos": 1, "timeout_ms": 300}),
    );
    assert_eq!(p["status"], json!("unknown"), "{p}");

    // It comes back on the same port, empty: the server reconnects.
    broker.restart();
    let up = poll("the session to reconnect", 400, || {
        let d = default_session(&mut s);
        (d["state"] == json!("connected")).then_some(d)
    });
    assert!(up["reconnects"].as_u64().unwrap() >= 1, "{up}");

    // The subscription was renewed: new messages arrive, once it is in place.
    let mut n = 100;
    let first = poll("a message after the reconnect", 40, || {
        publish(&mut s, &topic, n);
        n += 1;
        let r = read(&mut s, &sub, cursor, 500);
        (!r["messages"].as_array().unwrap().is_empty()).then_some(r)
    });
    let gaps = first["gaps"].as_array().unwrap();
    assert!(!gaps.is_empty(), "the outage must be reported: {first}");
    assert_eq!(gaps[0]["after_seq"], json!(cursor), "{first}");
    assert!(gaps[0]["reason"]
        .as_str()
        .unwrap()
        .contains("re-established"));
    assert!(ns(&first).iter().all(|n| *n >= 100 || *n == 50), "{first}");
    cursor = first["next_cursor"].as_u64().unwrap();

    // Later messages, from the server and from an independent client, arrive in order.
    publish(&mut s, &topic, 200);
    let mut raw = RawClient::connect(broker.v4_port());
    raw.publish(&topic, br#"{"n":201}"#, false);
    let mut later = Vec::new();
    poll("the later messages", 100, || {
        let r = read(&mut s, &sub, cursor, 1000);
        later.extend(ns(&r));
        cursor = r["next_cursor"].as_u64().unwrap();
        assert_eq!(r["gaps"], json!([]), "no new gap: {r}");
        (later.iter().filter(|n| **n >= 200).count() >= 2).then_some(())
    });
    let tail: Vec<u64> = later.into_iter().filter(|n| *n >= 200).collect();
    assert_eq!(tail, vec![200, 201]);

    // The gap is still reported to a reader that starts before it.
    let all = read(&mut s, &sub, 0, 0);
    assert_eq!(ns(&all)[..3], [0, 1, 2]);
    assert!(!all["gaps"].as_array().unwrap().is_empty(), "{all}");

    let l = s.call_ok("list_subscriptions", json!({}));
    assert!(
        l["subscriptions"][0]["reconnects"].as_u64().unwrap() >= 1,
        "{l}"
    );
    let t = s.call_ok("test_connection", json!({"include_sys": false}));
    assert_eq!(t["reachable"], json!(true));
    assert!(t["reconnects"].as_u64().unwrap() >= 1);
}
