//! Bad brokers: refused credentials, nothing listening, a broker that
//! accepts TCP but never answers CONNACK, and one that dies in the middle of
//! a collect. Each gives a clear answer within its deadline, and the server
//! keeps serving its other sessions.

mod common;

use common::brokers::BrokerProcess;
use common::Server;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

fn text(v: &Value) -> String {
    v["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The healthy session keeps working after each fault.
fn healthy(s: &mut Server) {
    let r = s.call_ok(
        "publish_message",
        json!({"topic": "faults/ok", "payload": "still here", "qos": 1}),
    );
    assert_eq!(r["status"], json!("acknowledged"));
}

#[test]
fn unreachable_silent_and_dying_brokers() {
    let mut s = Server::embedded(&[]);
    s.initialize();
    healthy(&mut s);

    let closed = common::free_port();
    let r = s.call(
        "establish_connection",
        json!({"host": "127.0.0.1", "port": closed, "timeout_ms": 3000}),
    );
    assert!(text(&r).contains("cannot reach"), "{r}");
    healthy(&mut s);

    let silent = common::blackhole();
    let r = s.call(
        "establish_connection",
        json!({"host": "127.0.0.1", "port": silent, "timeout_ms": 500}),
    );
    assert!(
        text(&r).contains("no answer (CONNACK)") && text(&r).contains("500 ms"),
        "{r}"
    );
    healthy(&mut s);

    // A broker that dies during a collect: the collect ends on time with what it got.
    let mut b = BrokerProcess::start();
    let sess = s.call_ok(
        "establish_connection",
        json!({"host": "127.0.0.1", "port": b.v5_port}),
    );
    let sid = sess["session_id"].clone();
    s.call_ok(
        "publish_message",
        json!({"session_id": sid, "topic": "dying/state", "payload": "last words", "retain": true}),
    );
    s.send(&json!({"jsonrpc":"2.0","id":"collect","method":"tools/call","params":{"name":"subscribe_and_collect","arguments":{"session_id": sid, "filter":"dying/#","duration_ms":1500}}}));
    // The retained message arriving proves the subscription is in place before the kill.
    let mut hist = Value::Null;
    for _ in 0..10_000 {
        let h = s.call_ok(
            "topic_history",
            json!({"session_id": sid, "topic": "dying/state"}),
        );
        if !h["messages"].as_array().unwrap().is_empty() {
            hist = h;
            break;
        }
    }

    assert_eq!(hist["messages"][0]["payload"]["text"], json!("last words"));
    b.stop();
    let r = s.recv_id(&json!("collect"), Duration::from_secs(20));
    assert_eq!(r["result"]["isError"], json!(false), "{r}");
    assert_eq!(
        r["result"]["structuredContent"]["stats"]["received"],
        json!(1),
        "{r}"
    );
    healthy(&mut s);
    let list = s.call_ok("list_active_connections", json!({}));
    let dead = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["session_id"] == sid)
        .unwrap()
        .clone();
    assert_eq!(dead["state"], json!("reconnecting"), "{dead}");
    assert!(dead["last_error"].is_string(), "{dead}");
    // Calls on the dead session fail clearly within their deadline.
    let r = s.call("test_connection", json!({"session_id": sid}));
    assert!(text(&r).contains("reconnecting"), "{r}");
    let r = s.call(
        "publish_message",
        json!({"session_id": sid, "topic": "dying/x", "payload": "1", "qos": 1, "timeout_ms": 500}),
    );
    assert_eq!(
        r["structuredContent"]["status"],
        json!("unknown"),
        "no confirmation while the broker is down: {r}"
    );
    healthy(&mut s);
    let (st, _) = s.finish(Duration::from_secs(5));
    assert!(st.success());
}

#[test]
fn refused_credentials() {
    let dir = common::scratch_dir("faults");
    let pwfile = dir.path().join("passwd");
    std::fs::write(&pwfile, "").unwrap();
    let made = Command::new("mosquitto_passwd")
        .args(["-b"])
        .arg(&pwfile)
        .args(["alice", "right-password"])
        .output();
    if !made.as_ref().is_ok_and(|o| o.status.success()) {
        if std::env::var_os("CI").is_some() {
            panic!("mosquitto_passwd is needed (apt-get install mosquitto): {made:?}");
        }
        eprintln!("NOTICE: refused_credentials skipped: mosquitto_passwd unavailable");
        return;
    }
    let Some((_m, ports)) = common::custom_mosquitto::start(
        "refused_credentials",
        dir.path(),
        1,
        |p| {
            format!("persistence false\nlog_dest stderr\nlistener {} 127.0.0.1\nallow_anonymous false\npassword_file {}\n", p[0], pwfile.display())
        },
    ) else {
        return;
    };
    let mut s = Server::embedded(&[]);
    s.initialize();
    for version in ["5", "3.1.1"] {
        let r = s.call("establish_connection", json!({"host": "127.0.0.1", "port": ports[0], "username": "alice", "password": "wrong-password", "protocol_version": version, "timeout_ms": 3000}));
        assert_eq!(r["isError"], json!(true), "{r}");
        let t = text(&r);
        assert!(
            t.contains("refused")
                && (t.contains("user name or password") || t.contains("not authorized")),
            "MQTT {version}: {t}"
        );
        assert!(!t.contains("wrong-password"));
        healthy(&mut s);
    }
    let ok = s.call_ok("establish_connection", json!({"host": "127.0.0.1", "port": ports[0], "username": "alice", "password": "right-password"}));
    assert_eq!(ok["protocol_version"], json!("5"));
    let (st, _) = s.finish(Duration::from_secs(5));
    assert!(st.success());
    assert!(!s.stdout().contains("right-password") && !s.stderr().contains("right-password"));
}
