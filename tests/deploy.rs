//! The deployment files parse and agree with the image: `deploy/compose.yaml`
//! (mqtt-mcp next to Mosquitto) and the umbrelOS app in
//! `deploy/umbrel/bitsperity-mqtt-mcp/` (manifest fields umbrel-apps uses,
//! the Mosquitto app as a dependency, a read-only idling container).

use std::path::Path;
use yaml_rust2::{Yaml, YamlLoader};

fn load(rel: &str) -> Yaml {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(docs.len(), 1, "{rel}: one YAML document");
    docs.remove(0)
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The settings every mqtt-mcp service needs to work as documented.
fn check_service(file: &str, svc: &Yaml) {
    let image = svc["image"]
        .as_str()
        .unwrap_or_else(|| panic!("{file}: image"));
    assert!(
        image.ends_with(&format!("mqtt-mcp:{}", version())),
        "{file}: image {image} is not mqtt-mcp:{}",
        version()
    );
    assert_eq!(svc["command"][0].as_str(), Some("idle"), "{file}: command");
    assert_eq!(svc["read_only"].as_bool(), Some(true), "{file}: read_only");
    let broker = svc["environment"]["MQTT_MCP_BROKER"]
        .as_str()
        .unwrap_or_else(|| panic!("{file}: MQTT_MCP_BROKER"));
    assert!(broker.starts_with("mqtt://"), "{file}: {broker}");
}

#[test]
fn compose_runs_mqtt_mcp_next_to_mosquitto() {
    let file = "deploy/compose.yaml";
    let c = load(file);
    let services = &c["services"];
    let mcp = &services["mqtt-mcp"];
    check_service(file, mcp);
    assert_eq!(mcp["container_name"].as_str(), Some("mqtt-mcp"));
    assert_eq!(
        mcp["environment"]["MQTT_MCP_BROKER"].as_str(),
        Some("mqtt://mosquitto:1883")
    );
    assert!(services["mosquitto"]["image"]
        .as_str()
        .is_some_and(|i| i.starts_with("eclipse-mosquitto:")));
    assert_eq!(mcp["depends_on"][0].as_str(), Some("mosquitto"));
}

#[test]
fn umbrel_app_follows_the_umbrel_apps_layout() {
    let dir = "deploy/umbrel/bitsperity-mqtt-mcp";
    let file = format!("{dir}/umbrel-app.yml");
    let m = load(&file);
    let id = m["id"].as_str().expect("id");
    assert_eq!(id, "bitsperity-mqtt-mcp");
    assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'));
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/umbrel")
        .join(id)
        .is_dir());
    assert!(matches!(
        m["manifestVersion"],
        Yaml::Integer(1) | Yaml::Real(_)
    ));
    assert_eq!(m["version"].as_str(), Some(version()));
    for key in [
        "name",
        "tagline",
        "category",
        "description",
        "developer",
        "submitter",
    ] {
        assert!(
            m[key].as_str().is_some_and(|s| !s.is_empty()),
            "{file}: {key} missing or empty"
        );
    }
    assert!(m["port"].as_i64().is_some(), "{file}: port");
    let deps: Vec<&str> = m["dependencies"]
        .as_vec()
        .expect("dependencies")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(deps, ["mosquitto"]);

    let file = format!("{dir}/docker-compose.yml");
    let c = load(&file);
    let server = &c["services"]["server"];
    check_service(&file, server);
    // umbrel names containers <app-id>_<service>_1; the manifest tells users that name.
    let exec_name = format!("{id}_server_1");
    assert!(
        m["description"].as_str().unwrap().contains(&exec_name),
        "{dir}/umbrel-app.yml: the description must name the container {exec_name}"
    );
    // The Mosquitto app's broker service is `broker`: mosquitto_broker_1.
    assert_eq!(
        server["environment"]["MQTT_MCP_BROKER"].as_str(),
        Some("mqtt://mosquitto_broker_1:1883")
    );
    assert_eq!(server["user"].as_str(), Some("10001:10001"));
}
