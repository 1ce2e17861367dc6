//! `mqtt-mcp tools` and `mqtt-mcp call`: one tool call from a shell, its
//! result on stdout (compact when piped, pretty on a terminal) and its exit
//! status: 0 success, 1 the tool failed (`isError`), 2 refused before it ran.

mod common;

use common::brokers::Mosquitto;
use common::cli::{run, run_on_terminal, Run};
use serde_json::json;

/// Asserts the exit status, showing everything on failure.
fn expect(r: &Run, code: i32) {
    assert_eq!(r.code, code, "exit status; {r:#?}");
}

/// The tool names of `schema/`, sorted.
fn schema_tools() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/schema"))
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

#[test]
fn tools_lists_every_tool_one_line_each() {
    let r = run(&["tools"], &[]);
    expect(&r, 0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let names: Vec<String> = lines
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, schema_tools(), "{}", r.stdout);
    let publish = lines
        .iter()
        .find(|l| l.starts_with("publish_message "))
        .unwrap();
    assert!(
        publish.ends_with("Publish a message (needs topic)"),
        "{publish}"
    );
}

#[test]
fn call_publishes_on_the_embedded_broker_by_default() {
    let r = run(
        &[
            "call",
            "publish_message",
            "topic=cli/embedded",
            "payload=21.5",
            "qos=1",
        ],
        &[],
    );
    expect(&r, 0);
    let v = r.json();
    assert_eq!(v["status"], "acknowledged", "{v}");
    assert_eq!(v["qos"], 1, "{v}");
    assert_eq!(v["topic"], "cli/embedded", "{v}");
    assert_eq!(v["session_id"], "default", "{v}");
}

#[test]
fn calls_on_one_broker_see_each_others_messages() {
    let Some(broker) = Mosquitto::start("calls_on_one_broker_see_each_others_messages") else {
        return;
    };
    let url = broker.url();
    let publish = run(
        &[
            "call",
            "--broker",
            &url,
            "publish_message",
            "topic=home/kitchen/temp",
            r#"payload={"c":21.5}"#,
            "retain=yes",
            "qos=1",
        ],
        &[],
    );
    expect(&publish, 0);
    assert_eq!(publish.json()["retain"], true);

    // The issue's example, word for word after the broker option.
    let topics = run(
        &["call", "--broker", &url, "list_topics", "filter=home/#"],
        &[],
    );
    expect(&topics, 0);
    let v = topics.json();
    let names: Vec<&str> = v["topics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["topic"].as_str())
        .collect();
    assert_eq!(names, ["home/kitchen/temp"], "{v}");

    // The JSON form, with the broker from the environment as `serve` takes it.
    let retained = run(
        &["call", "get_retained", r#"{"filter": "home/+/temp"}"#],
        &[("MQTT_MCP_BROKER", &url)],
    );
    expect(&retained, 0);
    let v = retained.json();
    assert_eq!(v["messages"][0]["topic"], "home/kitchen/temp", "{v}");
    assert_eq!(
        v["messages"][0]["payload"]["json"],
        json!({"c": 21.5}),
        "{v}"
    );
}

#[test]
fn piped_output_is_one_compact_line_and_a_terminal_gets_it_pretty() {
    let piped = run(&["call", "list_profiles"], &[]);
    expect(&piped, 0);
    let line = piped
        .stdout
        .strip_suffix('\n')
        .expect("ends with a newline");
    assert!(!line.contains('\n'), "{}", piped.stdout);
    assert!(!line.contains(": "), "compact: {line}");
    let Some(tty) = run_on_terminal(&["call", "list_profiles"]) else {
        eprintln!("skipped the terminal half: python3 is not installed");
        return;
    };
    expect(&tty, 0);
    assert!(tty.stdout.lines().count() > 2, "pretty: {}", tty.stdout);
    assert!(tty.stdout.contains("\n  \""), "indented: {}", tty.stdout);
    assert_eq!(tty.json(), piped.json());
}

#[test]
fn a_tool_that_fails_exits_1_with_its_message_on_stderr_only() {
    // A wildcard topic passes the schema and is refused by the tool.
    let r = run(&["call", "publish_message", "topic=home/#"], &[]);
    expect(&r, 1);
    assert_eq!(r.stdout, "");
    assert!(r.stderr.contains("wildcards"), "{}", r.stderr);

    // A topic the policy denies, refused at run time.
    let dir = common::scratch_dir("cli-policy");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[adhoc_policy]\npublish_deny = [\"home/alarm/#\"]\n",
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    let r = run(
        &[
            "call",
            "--config",
            &config,
            "publish_message",
            "topic=home/alarm/arm",
            "payload=on",
        ],
        &[],
    );
    expect(&r, 1);
    assert_eq!(r.stdout, "");
    assert!(r.stderr.contains("home/alarm/arm"), "{}", r.stderr);
    // The refusal is audited on stderr too; stdout stays clean.
    let allowed = run(
        &[
            "call",
            "--config",
            &config,
            "publish_message",
            "topic=home/lamp",
        ],
        &[],
    );
    expect(&allowed, 0);
}

#[test]
fn arguments_refused_before_the_call_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["call", "no_such_tool"], "unknown tool"),
        (
            &["call", "list_topics", r##"{"filter": "#""##],
            "not valid JSON",
        ),
        (
            &["call", "list_topics", "window_ms=soon"],
            "window_ms= needs an integer",
        ),
        (
            &["call", "list_topics", "colour=red"],
            "unknown argument \"colour\"",
        ),
        (&["call", "list_topics", "filter"], "has no '='"),
        (&["call", "publish_message", "topic=a", "qos=5"], "/qos"),
        (&["call", "publish_message", "payload=x"], "topic"),
        (&["call", "list_topics", r#"{"filter": 7}"#], "/filter"),
        (&["call"], "TOOL"),
    ];
    for (args, says) in cases {
        let r = run(args, &[]);
        expect(&r, 2);
        assert_eq!(r.stdout, "", "{args:?}");
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
    // A write tool is not offered to read-only sessions: refused, not run.
    let r = run(&["call", "--read-only", "publish_message", "topic=a"], &[]);
    expect(&r, 2);
    assert!(r.stderr.contains("not offered"), "{}", r.stderr);
}

#[test]
fn secrets_stay_out_of_both_streams() {
    let secret = "s3cr3t-cli-pw";
    let debug = ("MQTT_MCP_LOG_LEVEL", "debug");
    // A broker that is not there: the call fails, and says where it tried.
    let port = common::free_port().to_string();
    let failed = run(
        &[
            "call",
            "--broker",
            &format!("mqtt://user:{secret}@127.0.0.1:{port}"),
            "--connect-timeout-ms",
            "300",
            "publish_message",
            "topic=a",
        ],
        &[debug],
    );
    expect(&failed, 1);
    assert!(failed.stderr.contains(&port), "{failed:#?}");
    let mut runs = vec![failed];
    // A broker that is there, the password from the environment.
    if let Some(broker) = Mosquitto::start("secrets_stay_out_of_both_streams") {
        let listed = run(
            &[
                "call",
                "--broker",
                &format!("mqtt://user@127.0.0.1:{}", broker.port),
                "list_active_connections",
            ],
            &[("MQTT_MCP_PASSWORD", secret), debug],
        );
        expect(&listed, 0);
        let v = listed.json();
        assert!(
            v.to_string().contains("user@127.0.0.1"),
            "the URL is shown without its password: {v}"
        );
        runs.push(listed);
    }
    for r in &runs {
        assert!(!r.stdout.contains(secret), "{r:#?}");
        assert!(!r.stderr.contains(secret), "{r:#?}");
    }
}
