//! Broker profiles and policies from a config file: credentials that never
//! pass through the model, read-only mode, allow/deny lists, caps, the
//! audit log, and `tools/list` following the policy.

mod common;

use common::brokers::BrokerProcess;
use common::Server;
use serde_json::{json, Value};
use std::time::Duration;

const SECRET: &str = "Profile-Secret-0xC0FFEE";

struct Setup {
    server: Server,
    audit: std::path::PathBuf,
    _broker: BrokerProcess,
    _dir: tempfile::TempDir,
}

fn setup(config: &str) -> Setup {
    let broker = BrokerProcess::start();
    let dir = common::scratch_dir("profiles");
    let audit = dir.path().join("audit.jsonl");
    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, format!("{SECRET}\n")).unwrap();
    let config = config
        .replace("{V5}", &broker.v5_port.to_string())
        .replace("{V4}", &broker.v4_port.to_string())
        .replace("{AUDIT}", &audit.display().to_string())
        .replace("{PWFILE}", &pwfile.display().to_string());
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut server = Server::spawn(
        &[
            "serve".into(),
            "--config".into(),
            path.display().to_string(),
        ],
        &[("LAB_PW", SECRET)],
    );
    server.initialize();
    Setup {
        server,
        audit,
        _broker: broker,
        _dir: dir,
    }
}

fn tool_names(s: &mut Server) -> Vec<String> {
    let r = s.request("tools/list", json!({}));
    r["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

fn text(res: &Value) -> String {
    res["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn read_only_everywhere_hides_the_writing_tools() {
    let mut s = setup(
        r#"
        allow_adhoc_connections = false
        default_profile = "home"
        [profiles.home]
        url = "mqtt://assistant@127.0.0.1:{V5}"
        password_file = "{PWFILE}"
        [profiles.home.policy]
        read_only = true
        "#,
    );
    let names = tool_names(&mut s.server);
    for hidden in ["publish_message", "clear_retained", "request_response"] {
        assert!(
            !names.contains(&hidden.to_string()),
            "{hidden} listed under a read-only policy"
        );
    }
    assert!(names.contains(&"subscribe_and_collect".to_string()));
    let r = s.server.request(
        "tools/call",
        json!({"name": "publish_message", "arguments": {"topic": "a", "payload": "x"}}),
    );
    assert_eq!(r["error"]["code"], json!(-32602), "{r}");
    let sessions = s.server.call_ok("list_active_connections", json!({}));
    assert_eq!(sessions["sessions"][0]["profile"], json!("home"));
    assert_eq!(sessions["sessions"][0]["read_only"], json!(true));
    // Ad-hoc connections are refused with a pointer to the profiles.
    let r = s.server.call(
        "establish_connection",
        json!({"host": "127.0.0.1", "port": 1}),
    );
    assert_eq!(r["isError"], json!(true));
    assert!(text(&r).contains("profile"), "{r}");
    let cleared = s.server.request(
        "tools/call",
        json!({"name": "clear_retained", "arguments": {"filter": "#", "dry_run": false}}),
    );
    assert_eq!(
        cleared["error"]["code"],
        json!(-32602),
        "hidden tools are unknown tools: {cleared}"
    );
    let (st, _) = s.server.finish(Duration::from_secs(5));
    assert!(st.success());
    assert!(!s.server.stdout().contains(SECRET) && !s.server.stderr().contains(SECRET));
}

#[test]
fn allow_deny_caps_rate_and_audit() {
    let mut s = setup(
        r#"
        audit_log = "{AUDIT}"
        [adhoc_policy]
        read_only = true
        [profiles.lab]
        description = "the lab"
        url = "mqtt://lab@127.0.0.1:{V5}/profile-lab"
        password_env = "LAB_PW"
        [profiles.lab.policy]
        publish_allow = ["lab/#"]
        publish_deny = ["lab/danger/#"]
        subscribe_deny = ["lab/secret/#"]
        max_payload_bytes = 64
        max_collect_messages = 2
        max_publishes_per_minute = 6
        "#,
    );
    let srv = &mut s.server;
    let profiles = srv.call_ok("list_profiles", json!({}));
    assert_eq!(profiles["profiles"][0]["name"], json!("lab"));
    assert_eq!(
        profiles["profiles"][0]["broker_url"],
        json!(format!("mqtt://lab@127.0.0.1:{}", s._broker.v5_port))
    );
    assert_eq!(
        profiles["profiles"][0]["publish_deny"],
        json!(["lab/danger/#"])
    );
    let unknown = srv.call("establish_connection", json!({"profile": "nope"}));
    assert!(text(&unknown).contains("lab"), "{unknown}");
    let mixed = srv.call(
        "establish_connection",
        json!({"profile": "lab", "host": "x"}),
    );
    assert_eq!(mixed["isError"], json!(true));
    let lab = srv.call_ok("establish_connection", json!({"profile": "lab"}));
    assert_eq!(lab["client_id"], json!("profile-lab"));
    assert_eq!(lab["profile"], json!("lab"));
    let sid = lab["session_id"].as_str().unwrap().to_string();
    // The default (embedded, ad-hoc) session is read-only by adhoc_policy.
    let r = srv.call("publish_message", json!({"topic": "lab/x", "payload": "1"}));
    assert!(text(&r).contains("read-only"), "{r}");

    let ok = srv.call_ok(
        "publish_message",
        json!({"session_id": sid, "topic": "lab/ok", "payload": "fine", "retain": true}),
    );
    assert_eq!(ok["status"], json!("acknowledged"));
    let c = srv.call_ok(
        "get_retained",
        json!({"session_id": sid, "filter": "lab/#"}),
    );
    assert_eq!(c["count"], json!(1), "{c}");
    // A background subscription on lab/# must never show lab/secret/... topics.
    let sub = srv.call_ok("subscribe", json!({"session_id": sid, "filter": "lab/#"}));
    srv.call_ok(
        "publish_message",
        json!({"session_id": sid, "topic": "lab/secret/plan", "payload": "hidden"}),
    );
    for (topic, payload, why) in [
        ("lab/danger/door", "open", "denied"),
        ("office/light", "on", "not in the allow list"),
        (
            "lab/big",
            "0123456789012345678901234567890123456789012345678901234567890123456789",
            "payload cap",
        ),
    ] {
        let r = srv.call(
            "publish_message",
            json!({"session_id": sid, "topic": topic, "payload": payload}),
        );
        assert_eq!(r["isError"], json!(true), "{why}: {r}");
        assert!(text(&r).contains("policy"), "{why}: {r}");
    }
    let refused = srv.call(
        "subscribe_and_collect",
        json!({"session_id": sid, "filter": "lab/secret/#", "duration_ms": 100}),
    );
    assert!(
        text(&refused).contains("not allowed by policy"),
        "{refused}"
    );
    let hist = srv.call(
        "topic_history",
        json!({"session_id": sid, "topic": "lab/secret/x"}),
    );
    assert_eq!(hist["isError"], json!(true));
    // Rate: 6 per minute in all; one publish and no refused ones counted so far... fill it up.
    let mut limited = None;
    for i in 0..8 {
        let r = srv.call(
            "publish_message",
            json!({"session_id": sid, "topic": format!("lab/n{i}"), "payload": "x", "qos": 0}),
        );
        if r["isError"] == json!(true) {
            limited = Some(text(&r));
            break;
        }
    }
    let limited = limited.expect("the rate limit must bite within 8 publishes");
    assert!(limited.contains("per minute"), "{limited}");
    // The denied topic is filtered out of a subscription that overlaps the deny list.
    let r = srv.call_ok(
        "read_messages",
        json!({"session_id": sid, "subscription_id": sub["subscription_id"], "wait_ms": 3000}),
    );
    let topics: Vec<String> = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["topic"].as_str().unwrap().to_string())
        .collect();
    assert!(topics.contains(&"lab/ok".to_string()), "{topics:?}");
    assert!(
        !topics.iter().any(|t| t.starts_with("lab/secret/")),
        "denied topics must be filtered out: {topics:?}"
    );
    let r = srv.call_ok("read_messages", json!({"session_id": sid, "subscription_id": sub["subscription_id"], "since": r["next_cursor"], "wait_ms": 500}));
    assert!(!r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["topic"].as_str().unwrap().starts_with("lab/secret/")));

    let (st, _) = srv.finish(Duration::from_secs(5));
    assert!(st.success());
    assert!(
        !srv.stdout().contains(SECRET) && !srv.stderr().contains(SECRET),
        "secret leaked"
    );

    let audit = std::fs::read_to_string(&s.audit).unwrap();
    assert!(!audit.contains(SECRET), "secret in the audit log");
    assert!(!audit.contains("fine"), "payloads must not be audited");
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().any(|l| l["topic"] == json!("lab/ok")
        && l["outcome"] == json!("acknowledged")
        && l["profile"] == json!("lab")));
    assert!(lines
        .iter()
        .any(|l| l["topic"] == json!("lab/danger/door") && l["outcome"] == json!("refused")));
    assert!(lines
        .iter()
        .any(|l| l["tool"] == json!("subscribe_and_collect") && l["outcome"] == json!("refused")));
    assert!(lines
        .iter()
        .all(|l| l["time"].is_string() && l["session"].is_string()));
}

#[test]
fn secrets_in_config_are_validated_at_start() {
    let dir = common::scratch_dir("badconfig");
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[profiles.x]\nurl = \"mqtt://u:Inline-Secret-42@h\"\nprotocol_version = \"9\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--config"])
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "a bad config must stop the server");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("protocol_version"), "{err}");
    assert!(!err.contains("Inline-Secret-42"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "stdout carries protocol messages only"
    );
}
