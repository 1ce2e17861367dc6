//! TLS to a real broker: Mosquitto with a TLS listener and an mTLS listener
//! on loopback, certificates generated at run time (rcgen). The right CA and
//! a client certificate connect; a wrong CA and a missing client certificate
//! fail with a clear `isError`.

mod common;

use common::Server;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Pki {
    ca: PathBuf,
    wrong_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    p
}

fn pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mqtt-mcp test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let other_key = KeyPair::generate().unwrap();
    let mut other = CertificateParams::new(Vec::<String>::new()).unwrap();
    other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    other
        .distinguished_name
        .push(DnType::CommonName, "some other CA");
    let other_cert = other.self_signed(&other_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut sp =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    sp.distinguished_name.push(DnType::CommonName, "localhost");
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = sp.signed_by(&server_key, &issuer).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut cp = CertificateParams::new(Vec::<String>::new()).unwrap();
    cp.distinguished_name
        .push(DnType::CommonName, "mqtt-mcp-client");
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = cp.signed_by(&client_key, &issuer).unwrap();

    Pki {
        ca: write(dir, "ca.pem", &ca_cert.pem()),
        wrong_ca: write(dir, "wrong-ca.pem", &other_cert.pem()),
        server_cert: write(dir, "server.pem", &server_cert.pem()),
        server_key: write(dir, "server.key", &server_key.serialize_pem()),
        client_cert: write(dir, "client.pem", &client_cert.pem()),
        client_key: write(dir, "client.key", &client_key.serialize_pem()),
    }
}

fn mosquitto(
    dir: &Path,
    pki: &Pki,
) -> Option<(common::custom_mosquitto::CustomMosquitto, u16, u16)> {
    let (m, ports) = common::custom_mosquitto::start("tls", dir, 2, |p| {
        format!(
            "per_listener_settings true\npersistence false\nlog_dest stderr\n\
             listener {tls} 127.0.0.1\nallow_anonymous true\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n\
             listener {mtls} 127.0.0.1\nallow_anonymous true\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\nrequire_certificate true\n",
            tls = p[0],
            mtls = p[1],
            ca = pki.ca.display(),
            cert = pki.server_cert.display(),
            key = pki.server_key.display(),
        )
    })?;
    Some((m, ports[0], ports[1]))
}

#[test]
fn tls_and_mutual_tls_profiles() {
    let dir = common::scratch_dir("tls");
    let pki = pki(dir.path());
    let Some((_mosq, tls, mtls)) = mosquitto(dir.path(), &pki) else {
        return;
    };
    let config = format!(
        r#"
[profiles.tls_ok]
url = "mqtts://127.0.0.1:{tls}"
[profiles.tls_ok.tls]
ca_file = "{ca}"

[profiles.tls_wrong_ca]
url = "mqtts://127.0.0.1:{tls}"
[profiles.tls_wrong_ca.tls]
ca_file = "{wrong}"

[profiles.tls_insecure]
url = "mqtts://localhost:{tls}"
[profiles.tls_insecure.tls]
insecure_skip_verify = true

[profiles.mtls_ok]
url = "mqtts://localhost:{mtls}"
[profiles.mtls_ok.tls]
ca_file = "{ca}"
client_cert = "{cc}"
client_key = "{ck}"

[profiles.mtls_no_cert]
url = "mqtts://localhost:{mtls}"
[profiles.mtls_no_cert.tls]
ca_file = "{ca}"
"#,
        ca = pki.ca.display(),
        wrong = pki.wrong_ca.display(),
        cc = pki.client_cert.display(),
        ck = pki.client_key.display(),
    );
    let cfg = write(dir.path(), "config.toml", &config);
    let mut s = Server::spawn(
        &[
            "serve".into(),
            "--no-embedded".into(),
            "--config".into(),
            cfg.display().to_string(),
        ],
        &[],
    );
    s.initialize();
    for ok in ["tls_ok", "tls_insecure", "mtls_ok"] {
        let sess = s.call_ok(
            "establish_connection",
            json!({"profile": ok, "timeout_ms": 5000}),
        );
        assert!(
            sess["broker_url"].as_str().unwrap().starts_with("mqtts://"),
            "{sess}"
        );
        // Traffic flows over TLS: a retained message round-trips.
        let topic = format!("tls/{ok}");
        s.call_ok("publish_message", json!({"session_id": sess["session_id"], "topic": topic, "payload": "secure", "retain": true}));
        let got = s.call_ok(
            "get_retained",
            json!({"session_id": sess["session_id"], "filter": topic}),
        );
        assert_eq!(
            got["messages"][0]["payload"]["text"],
            json!("secure"),
            "{got}"
        );
    }
    let wrong = s.call(
        "establish_connection",
        json!({"profile": "tls_wrong_ca", "timeout_ms": 5000}),
    );
    assert_eq!(wrong["isError"], json!(true), "{wrong}");
    let msg = wrong["content"][0]["text"].as_str().unwrap();
    assert!(
        msg.contains("tls.ca_file"),
        "a wrong CA must say how to fix it: {msg}"
    );
    eprintln!("wrong CA: {msg}");
    let nocert = s.call(
        "establish_connection",
        json!({"profile": "mtls_no_cert", "timeout_ms": 5000}),
    );
    assert_eq!(nocert["isError"], json!(true), "{nocert}");
    let msg = nocert["content"][0]["text"].as_str().unwrap();
    eprintln!("missing client certificate: {msg}");
    assert!(
        msg.contains("requires a client certificate") && msg.contains("tls.client_cert"),
        "{msg}"
    );

    assert!(
        s.stderr().contains("insecure_skip_verify"),
        "skipping verification must be logged"
    );
    let (st, _) = s.finish(Duration::from_secs(5));
    assert!(st.success());
}
