//! MCP prompts: three conversation starters that point the model at the
//! right tools (`prompts/list`, `prompts/get`).

use super::params;
use crate::jsonrpc::{code, RpcError};
use serde_json::{json, Value};

/// The prompts' names, for completion of `ref/prompt`.
pub const NAMES: [&str; 3] = ["explore_broker", "debug_device", "watch_topic"];

/// Prompt definitions for `prompts/list`.
pub fn prompts() -> Value {
    json!({ "prompts": [
        {"name": "explore_broker", "title": "Explore the broker", "description": "Map the topic tree and summarise which devices and services exist.",
         "arguments": [{"name": "session_id", "description": "Session to explore (default: the default session).", "required": false},
                       {"name": "filter", "description": "Part of the tree to explore, e.g. zigbee2mqtt/# (default #).", "required": false}]},
        {"name": "debug_device", "title": "Debug a device", "description": "Find a device's topics, check whether it is alive, and explain what it reports.",
         "arguments": [{"name": "device_id", "description": "The device id as it appears in topics.", "required": true},
                       {"name": "session_id", "description": "Session to use (default: the default session).", "required": false}]},
        {"name": "watch_topic", "title": "Watch a topic", "description": "Watch one topic or filter for a while and explain what changed.",
         "arguments": [{"name": "topic", "description": "Topic or filter to watch.", "required": true},
                       {"name": "window_s", "description": "How long to watch, in seconds (default 30).", "required": false},
                       {"name": "session_id", "description": "Session to use (default: the default session).", "required": false}]}
    ]})
}

fn arg<'a>(args: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    args.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `prompts/get`.
pub fn get_prompt(params: Option<&Value>) -> Result<Value, RpcError> {
    let params::PromptsGet { name, arguments } = params::parse(params).ok_or_else(|| {
        RpcError::new(
            code::INVALID_PARAMS,
            "Invalid params: prompts/get needs params.name",
        )
    })?;
    let args = &arguments.into_valid().unwrap_or_default();
    let sess = arg(args, "session_id")
        .map(|s| format!(" Use session_id \"{s}\" in every call."))
        .unwrap_or_default();
    let (description, text) = match name.as_str() {
        "explore_broker" => {
            let filter = arg(args, "filter").unwrap_or("#");
            ("Map the topic tree and summarise the devices", format!(
                "Explore the MQTT broker under the filter \"{filter}\".{sess} First call list_topics with filter \"{filter}\" and window_ms 5000 to see the topic tree, retained state and message rates. For the busiest or most interesting branches call get_topic_schema to learn the payload structure, and get_retained for the current state. Then summarise: which devices and services exist (group topics by device or integration, e.g. zigbee2mqtt/<device>, homeassistant/<component>/...), what each reports and how often, which can be controlled (topics ending in /set or /command), and anything that looks wrong (silent devices, error payloads). Do not publish anything."
            ))
        }
        "debug_device" => {
            let id = arg(args, "device_id").ok_or_else(|| RpcError::new(code::INVALID_PARAMS, "Invalid params: debug_device needs the argument device_id"))?;
            ("Debug one device", format!(
                "Debug the device \"{id}\".{sess} Call debug_device with device_id \"{id}\" and window_ms 10000 to find its topics, last values, rates and silent topics. For its state topics call topic_history to see recent changes, and get_topic_schema on its topics to understand the payloads. Explain whether the device is online and healthy, what it last reported, and what looks wrong, with the evidence. Only publish (publish_message) if the user asks you to send a command."
            ))
        }
        "watch_topic" => {
            let t = arg(args, "topic").ok_or_else(|| RpcError::new(code::INVALID_PARAMS, "Invalid params: watch_topic needs the argument topic"))?;
            let window: u64 = arg(args, "window_s").and_then(|w| w.parse().ok()).unwrap_or(30).clamp(1, 300);
            ("Watch a topic and explain the changes", format!(
                "Watch \"{t}\" for {window} seconds.{sess} Call subscribe_and_collect with filter \"{t}\" and duration_ms {} (or subscribe, then read_messages to follow it). Then use topic_history on the topics that changed to see field-level differences. Report what changed, how often, and whether the values look plausible.",
                window * 1000
            ))
        }
        other => return Err(RpcError::new(code::INVALID_PARAMS, format!("Invalid params: unknown prompt {other:?}; prompts/list shows explore_broker, debug_device and watch_topic"))),
    };
    Ok(
        json!({ "description": description, "messages": [{ "role": "user", "content": { "type": "text", "text": text } }] }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_refer_to_tools() {
        for (name, args) in [
            ("explore_broker", json!({})),
            ("debug_device", json!({"device_id": "lamp1"})),
            ("watch_topic", json!({"topic": "a/#", "window_s": "5"})),
        ] {
            let p = get_prompt(Some(&json!({"name": name, "arguments": args}))).unwrap();
            let text = p["messages"][0]["content"]["text"].as_str().unwrap();
            let tools: Vec<&str> = crate::tools::TOOLS.iter().map(|t| t.name).collect();
            assert!(tools.iter().any(|t| text.contains(t)), "{name}: {text}");
        }
        assert_eq!(
            get_prompt(Some(&json!({"name": "debug_device"})))
                .unwrap_err()
                .code,
            code::INVALID_PARAMS
        );
        assert_eq!(
            get_prompt(Some(&json!({"name": "nope"}))).unwrap_err().code,
            code::INVALID_PARAMS
        );
    }
}
