//! The config file (TOML): named broker profiles with credentials, TLS and
//! policy, so that secrets never pass through the model. Loaded and checked
//! once at start; a bad file stops the server with a message naming the
//! problem (never the secret).

use crate::decoders::{DecoderConfig, DecoderError, Decoders};
use crate::mqtt::client::Protocol;
use crate::mqtt::tls::TlsSettings;
use crate::mqtt::url::BrokerUrl;
use crate::policy::{Policy, PolicyConfig, PolicyError};
use crate::secret::{Sealed, SecretError, SecretString, Vault};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// May the model connect to brokers given by URL or host (not a profile)?
    #[serde(default = "yes")]
    pub allow_adhoc_connections: bool,
    /// Profile of the `default` session (instead of --broker or the embedded broker).
    pub default_profile: Option<String>,
    /// Where the audit log goes: "stderr" (default), "off", or a file path.
    pub audit_log: Option<String>,
    /// Policy of sessions not opened from a profile (ad-hoc, --broker, embedded).
    #[serde(default)]
    pub adhoc_policy: PolicyConfig,
    /// Decoders of every session (after a profile's own).
    #[serde(default)]
    pub decoders: Vec<DecoderConfig>,
    /// Named profiles.
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileConfig>,
}

fn yes() -> bool {
    true
}

/// One profile as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// Broker URL (mqtt:// or mqtts://); a password in it is allowed but discouraged.
    pub url: String,
    /// User name (overrides one in the URL).
    pub username: Option<String>,
    /// Password in the file (prefer password_env or password_file).
    pub password: Option<String>,
    /// Name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// File whose content (trimmed) is the password.
    pub password_file: Option<PathBuf>,
    /// MQTT client id.
    pub client_id: Option<String>,
    /// "5" or "3.1.1"; default 5 with fallback.
    pub protocol_version: Option<String>,
    /// Keep-alive seconds.
    pub keep_alive: Option<u64>,
    /// TLS settings (implies TLS even for mqtt:// URLs).
    pub tls: Option<TlsSettings>,
    /// What sessions of this profile may do.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// A sentence for list_profiles (what this broker is).
    pub description: Option<String>,
    /// Decoders of this profile's sessions (before the global ones).
    #[serde(default)]
    pub decoders: Vec<DecoderConfig>,
}

/// A checked profile.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Its name.
    pub name: String,
    /// URL without password.
    pub url: BrokerUrl,
    /// Password sealed by the vault.
    pub password: Option<Sealed>,
    /// Fixed protocol, or None for 5 with fallback.
    pub protocol: Option<Protocol>,
    /// Keep-alive seconds.
    pub keep_alive: Option<u64>,
    /// TLS settings, if TLS.
    pub tls: Option<TlsSettings>,
    /// Its policy.
    pub policy: Arc<Policy>,
    /// Its decoders, then the global ones.
    pub decoders: Arc<Decoders>,
    /// Shown by list_profiles.
    pub description: Option<String>,
}

/// Everything the file decides, checked.
#[derive(Debug, Clone)]
pub struct Profiles {
    /// By name.
    pub by_name: BTreeMap<String, Profile>,
    /// Ad-hoc connections allowed.
    pub allow_adhoc: bool,
    /// Policy of non-profile sessions.
    pub adhoc_policy: Arc<Policy>,
    /// Decoders of non-profile sessions (the global ones).
    pub adhoc_decoders: Arc<Decoders>,
    /// Profile of the default session.
    pub default_profile: Option<String>,
    /// Audit destination.
    pub audit_log: Option<String>,
}

impl Default for Profiles {
    fn default() -> Self {
        Self {
            by_name: BTreeMap::new(),
            allow_adhoc: true,
            adhoc_policy: Arc::new(Policy::permissive("ad-hoc sessions")),
            adhoc_decoders: Arc::default(),
            default_profile: None,
            audit_log: None,
        }
    }
}

/// Why the config file was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Unreadable.
    #[error("cannot read the config file {0}: {1}")]
    Read(PathBuf, String),
    /// Not valid TOML or unknown keys.
    #[error("the config file {0} is invalid: {1}")]
    Parse(PathBuf, String),
    /// A profile is inconsistent.
    #[error("profile {0:?}: {1}")]
    Profile(String, String),
    /// A policy filter is invalid.
    #[error("{0}")]
    Policy(#[from] PolicyError),
    /// Sealing failed.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A decoder entry is invalid or its .proto does not compile.
    #[error(transparent)]
    Decoder(#[from] DecoderError),
}

impl Profiles {
    /// Reads and checks a config file.
    pub fn load(path: &Path, vault: &Vault) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read(path.into(), e.to_string()))?;
        let mut file: FileConfig = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse(path.into(), e.message().to_string()))?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        crate::decoders::resolve_paths(&mut file.decoders, dir);
        for p in file.profiles.values_mut() {
            crate::decoders::resolve_paths(&mut p.decoders, dir);
        }
        Self::from_file(file, vault, |k| std::env::var(k).ok())
    }

    /// Checks a parsed config; `env` looks up environment variables.
    pub fn from_file(
        file: FileConfig,
        vault: &Vault,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut by_name = BTreeMap::new();
        let global = Decoders::build(&file.decoders)?;
        for (name, p) in file.profiles {
            let bad = |m: &str| ConfigError::Profile(name.clone(), m.to_string());
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                return Err(bad("profile names use letters, digits, '-', '_' and '.'"));
            }
            let mut url = BrokerUrl::parse(&p.url).map_err(|e| bad(&format!("url: {e}")))?;
            if let Some(u) = p.username {
                url.username = Some(u);
            }
            if let Some(c) = p.client_id {
                url.client_id = Some(c);
            }
            let sources = [
                p.password.is_some(),
                p.password_env.is_some(),
                p.password_file.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if sources > 1 {
                return Err(bad(
                    "give at most one of password, password_env, password_file",
                ));
            }
            let password: Option<SecretString> = if let Some(pw) = p.password {
                Some(SecretString::new(pw))
            } else if let Some(var) = p.password_env {
                Some(SecretString::new(env(&var).ok_or_else(|| {
                    bad(&format!(
                        "password_env: the environment variable {var} is not set"
                    ))
                })?))
            } else if let Some(file) = p.password_file {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| bad(&format!("password_file {}: {e}", file.display())))?;
                Some(SecretString::new(
                    text.trim_end_matches(['\n', '\r']).to_string(),
                ))
            } else {
                url.password.take()
            };
            url.password = None;
            if password.is_some() && url.username.is_none() {
                return Err(bad("a password needs a username"));
            }
            let protocol = match p.protocol_version.as_deref() {
                None => None,
                Some("5") => Some(Protocol::V5),
                Some("3.1.1") => Some(Protocol::V311),
                Some(_) => return Err(bad("protocol_version must be \"5\" or \"3.1.1\"")),
            };
            let tls = match (p.tls, url.tls) {
                (Some(t), _) => Some(t),
                (None, true) => Some(TlsSettings::default()),
                (None, false) => None,
            };
            if let Some(t) = &tls {
                for f in [&t.ca_file, &t.client_cert, &t.client_key]
                    .into_iter()
                    .flatten()
                {
                    if !f.exists() {
                        return Err(bad(&format!("tls file {} does not exist", f.display())));
                    }
                }
                if t.client_cert.is_some() != t.client_key.is_some() {
                    return Err(bad("tls.client_cert and tls.client_key go together"));
                }
            }
            url.tls = tls.is_some();
            let policy = Arc::new(Policy::new(format!("profile {name:?}"), p.policy)?);
            let decoders = Arc::new(Decoders::chain(
                &Decoders::build(&p.decoders).map_err(|e| bad(&e.to_string()))?,
                &global,
            ));
            let sealed = match password {
                Some(pw) => Some(vault.seal(pw.expose())?),
                None => None,
            };
            by_name.insert(
                name.clone(),
                Profile {
                    name,
                    url,
                    password: sealed,
                    protocol,
                    keep_alive: p.keep_alive,
                    tls,
                    policy,
                    decoders,
                    description: p.description,
                },
            );
        }
        if let Some(d) = &file.default_profile {
            if !by_name.contains_key(d) {
                return Err(ConfigError::Profile(
                    d.clone(),
                    "default_profile names no profile in this file".into(),
                ));
            }
        }
        Ok(Self {
            by_name,
            allow_adhoc: file.allow_adhoc_connections,
            adhoc_policy: Arc::new(Policy::new("ad-hoc sessions", file.adhoc_policy)?),
            adhoc_decoders: Arc::new(global),
            default_profile: file.default_profile,
            audit_log: file.audit_log,
        })
    }

    /// True if some session could write (a tool that writes is worth listing).
    pub fn writes_possible(&self) -> bool {
        (self.allow_adhoc || self.default_profile.is_none()) && !self.adhoc_policy.read_only()
            || self.by_name.values().any(|p| !p.policy.read_only())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Profiles, ConfigError> {
        let vault = Vault::new().unwrap();
        let file: FileConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse("t".into(), e.to_string()))?;
        Profiles::from_file(file, &vault, |k| {
            (k == "HOME_PW").then(|| "from-env".to_string())
        })
    }

    #[test]
    fn loads_profiles_with_secrets_from_env() {
        let p = parse(
            r#"
            allow_adhoc_connections = false
            default_profile = "home"
            [profiles.home]
            url = "mqtt://assistant@home.local:1883"
            password_env = "HOME_PW"
            [profiles.home.policy]
            read_only = true
            subscribe_deny = ["home/alarm/#"]
            "#,
        )
        .unwrap();
        let home = &p.by_name["home"];
        assert_eq!(home.url.redacted(), "mqtt://assistant@home.local:1883");
        assert!(home.password.is_some());
        assert!(home.policy.read_only());
        assert!(!p.allow_adhoc);
        assert!(!p.writes_possible());
        assert!(!format!("{p:?}").contains("from-env"));
    }

    #[test]
    fn rejects_mistakes_clearly() {
        let e = parse("[profiles.x]\nurl = \"http://h\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("url"), "{e}");
        let e = parse("[profiles.x]\nurl = \"mqtt://u@h\"\npassword = \"a\"\npassword_env = \"B\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most one"), "{e}");
        let e = parse("[profiles.x]\nurl = \"mqtt://h\"\npassword_env = \"NOPE\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("NOPE"), "{e}");
        let e = parse("default_profile = \"y\"").unwrap_err().to_string();
        assert!(e.contains("default_profile"), "{e}");
        let e = parse(
            "[profiles.x]\nurl = \"mqtt://h\"\n[profiles.x.policy]\npublish_deny = [\"a/#/b\"]",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("a/#/b"), "{e}");
        assert!(parse("bogus = 1").is_err(), "unknown keys are errors");
        let e = parse("[profiles.x]\nurl = \"mqtt://u:inline-secret@h\"\nprotocol_version = \"4\"")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("inline-secret"), "{e}");
    }

    #[test]
    fn writes_possible_follows_policies() {
        assert!(parse("").unwrap().writes_possible());
        assert!(!parse("[adhoc_policy]\nread_only = true")
            .unwrap()
            .writes_possible());
        assert!(parse("allow_adhoc_connections = false\n[adhoc_policy]\nread_only = true\n[profiles.w]\nurl = \"mqtt://h\"").unwrap().writes_possible());
    }
}

#[cfg(test)]
mod example {
    /// The documented example must stay valid (its files and env vars aside).
    #[test]
    fn example_config_parses() {
        let text = include_str!("../config.example.toml");
        let file: super::FileConfig = toml::from_str(text).expect("config.example.toml parses");
        assert_eq!(file.default_profile.as_deref(), Some("home"));
        assert_eq!(file.profiles.len(), 2);
        for (name, p) in &file.profiles {
            crate::policy::Policy::new(name.clone(), p.policy.clone())
                .expect("policy filters are valid");
            crate::mqtt::url::BrokerUrl::parse(&p.url).expect("url parses");
        }
        // One entry of each codec; the protobuf one names a file that is
        // the operator's, so only the others are built here.
        let mut entries = file.decoders.clone();
        entries.extend(file.profiles["lab"].decoders.iter().cloned());
        let mut codecs: Vec<&str> = entries.iter().map(|e| e.codec.as_str()).collect();
        codecs.sort_unstable();
        assert_eq!(
            codecs,
            ["cbor", "json", "msgpack", "protobuf", "raw", "text"]
        );
        entries.retain(|e| e.codec != crate::decoders::Codec::Protobuf);
        crate::decoders::Decoders::build(&entries).expect("decoder entries are valid");
    }
}
