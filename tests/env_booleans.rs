//! Boolean `MQTT_MCP_*` variables take what people write: 1/0, true/false,
//! yes/no, on/off in any case (empty counts as unset); anything else is
//! refused with the variable's name and the accepted forms.

mod common;

use common::cli::run;
use common::Server;
use serde_json::json;

/// Whether `mqtt-mcp tools` offers publish_message under `env`.
fn offers_publish(env: &[(&str, &str)]) -> bool {
    let r = run(&["tools"], env);
    assert_eq!(r.code, 0, "{env:?}: {r:#?}");
    r.stdout.lines().any(|l| l.starts_with("publish_message "))
}

#[test]
fn read_only_takes_every_spelling() {
    for yes in ["1", "true", "TRUE", "yes", "Yes", "on", "ON"] {
        assert!(
            !offers_publish(&[("MQTT_MCP_READ_ONLY", yes)]),
            "MQTT_MCP_READ_ONLY={yes} should make sessions read-only"
        );
    }
    for no in ["0", "false", "False", "no", "NO", "off", "Off", ""] {
        assert!(
            offers_publish(&[("MQTT_MCP_READ_ONLY", no)]),
            "MQTT_MCP_READ_ONLY={no:?} should leave sessions writable"
        );
    }
}

#[test]
fn an_unknown_spelling_is_refused_with_the_variable_and_the_forms() {
    for (var, args) in [
        ("MQTT_MCP_READ_ONLY", vec!["tools"]),
        ("MQTT_MCP_NO_EMBEDDED", vec!["call", "list_profiles"]),
        ("MQTT_MCP_READ_ONLY", vec!["serve"]),
    ] {
        let r = run(&args, &[(var, "maybe")]);
        assert_eq!(r.code, 2, "{var} with {args:?}: {r:#?}");
        assert_eq!(r.stdout, "");
        assert!(r.stderr.contains(var), "{}", r.stderr);
        assert!(
            r.stderr
                .contains("1/0, true/false, yes/no, on/off (any case)"),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn no_embedded_takes_yes() {
    // Without the embedded broker and without --broker there is no default
    // session: a tool that needs one fails (exit 1) instead of running.
    let r = run(
        &["call", "list_topics", "window_ms=0"],
        &[("MQTT_MCP_NO_EMBEDDED", "Yes")],
    );
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(r.stderr.contains("no default session"), "{}", r.stderr);
}

#[test]
fn serve_reads_the_same_spellings() {
    let mut s = Server::embedded_env(&[], &[("MQTT_MCP_READ_ONLY", "1")]);
    s.initialize();
    let list = s.request("tools/list", json!({}));
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"list_topics"), "{names:?}");
    assert!(!names.contains(&"publish_message"), "{names:?}");
}
