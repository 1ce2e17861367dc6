//! `establish_connection`, `list_active_connections`, `close_connection`.

use super::{params, results, Deadline, ToolContext, ToolError};
use crate::app::{OpenError, SpecOptions};
use crate::mqtt::client::Protocol;
use crate::mqtt::url::BrokerUrl;
use crate::session::rfc3339;
use std::time::Duration;

/// Opens a session from a profile, a URL, or structured fields.
pub async fn establish_connection(
    ctx: &ToolContext,
    p: params::EstablishConnection,
    _deadline: Deadline,
) -> Result<results::EstablishConnection, ToolError> {
    let structured = p.host.is_some()
        || p.port.is_some()
        || p.username.is_some()
        || p.password.is_some()
        || p.client_id.is_some()
        || p.tls.is_some();
    let app = &ctx.app;
    let timeout = p.timeout_ms.map(Duration::from_millis);
    let opened = if let Some(name) = &p.profile {
        if structured
            || p.connection_string.is_some()
            || p.protocol_version.is_some()
            || p.keep_alive.is_some()
            || p.clean_start.is_some()
        {
            return Err(ToolError::InvalidArguments(vec!["give profile alone (with timeout_ms at most): the profile defines the broker, credentials and options".into()]));
        }
        app.open_profile(name, false, timeout)
            .await
            .map_err(|e| (e, format!("profile {name:?}")))
    } else {
        if !app.profiles.allow_adhoc {
            return Err(ToolError::Failed(format!(
                "this server only connects to configured profiles (allow_adhoc_connections = false); call list_profiles and pass profile. Profiles: {}",
                app.profiles.by_name.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let url = match (&p.connection_string, structured) {
            (Some(_), true) => {
                return Err(ToolError::InvalidArguments(vec![
                    "give either connection_string or the fields host/port/tls/username/password/client_id, not both".into(),
                ]))
            }
            (Some(cs), false) => BrokerUrl::parse(cs).map_err(|e| ToolError::InvalidArguments(vec![format!("/connection_string: {e}")]))?,
            (None, _) => {
                let host = p.host.clone().ok_or_else(|| ToolError::InvalidArguments(vec!["give profile (see list_profiles), connection_string (mqtt://host:1883) or host".into()]))?;
                let tls = p.tls.unwrap_or(false);
                let port = match p.port {
                    Some(port) => u16::try_from(port).map_err(|_| ToolError::InvalidArguments(vec!["/port: must be 1..65535".into()]))?,
                    None if tls => 8883,
                    None => 1883,
                };
                BrokerUrl { tls, host, port, username: p.username.clone().filter(|u| !u.is_empty()), password: p.password.clone(), client_id: p.client_id.clone().filter(|c| !c.is_empty()) }
            }
        };
        if url.password.is_some() && url.username.is_none() {
            return Err(ToolError::InvalidArguments(vec![
                "a password needs a username".into(),
            ]));
        }
        let opts = SpecOptions {
            protocol: match p.protocol_version.as_deref() {
                Some("3.1.1") => Some(Protocol::V311),
                Some("5") => Some(Protocol::V5),
                _ => None,
            },
            keep_alive: p.keep_alive.map(Duration::from_secs),
            clean_start: p.clean_start,
            connect_timeout: timeout,
            ..Default::default()
        };
        let shown = url.redacted();
        app.open(&url, opts, false).await.map_err(|e| (e, shown))
    };
    let (s, info) = opened.map_err(|(e, target)| match e {
        OpenError::Connect(c) => ToolError::Failed(format!("could not connect to {target}: {c}")),
        other => ToolError::Failed(other.to_string()),
    })?;
    Ok(results::EstablishConnection {
        session_id: s.id.clone(),
        broker_url: s.broker_url.clone(),
        client_id: s.client_id.clone(),
        protocol_version: info.protocol.as_str().into(),
        fell_back_to_3_1_1: info.fell_back,
        session_present: info.session_present,
        expires_in_s: app.sessions.config().ttl.as_secs(),
        profile: s.profile.clone(),
        read_only: s.policy.read_only(),
    })
}

/// Lists the configured profiles (no secrets).
pub async fn list_profiles(
    ctx: &ToolContext,
    _p: params::ListProfiles,
    _deadline: Deadline,
) -> Result<results::ListProfiles, ToolError> {
    let pr = &ctx.app.profiles;
    let profiles = pr
        .by_name
        .values()
        .map(|p| {
            let r = &p.policy.rules;
            results::ListProfilesProfilesItem {
                name: p.name.clone(),
                broker_url: p.url.redacted(),
                tls: p.tls.is_some(),
                description: p.description.clone(),
                is_default: pr.default_profile.as_deref() == Some(p.name.as_str()),
                read_only: r.read_only,
                publish_allow: r.publish_allow.clone(),
                publish_deny: r.publish_deny.clone(),
                subscribe_allow: r.subscribe_allow.clone(),
                subscribe_deny: r.subscribe_deny.clone(),
                max_payload_bytes: r.max_payload_bytes.map(|v| v as u64),
                max_collect_messages: r.max_collect_messages.map(|v| v as u64),
                max_publishes_per_minute: r.max_publishes_per_minute.map(u64::from),
            }
        })
        .collect();
    Ok(results::ListProfiles {
        profiles,
        allow_adhoc_connections: pr.allow_adhoc,
    })
}

/// Lists sessions without secrets.
pub async fn list_active_connections(
    ctx: &ToolContext,
    _p: params::ListActiveConnections,
    _deadline: Deadline,
) -> Result<results::ListActiveConnections, ToolError> {
    ctx.app.wait_default().await;
    let mgr = &ctx.app.sessions;
    let sessions = mgr
        .list()
        .into_iter()
        .map(|s| {
            let (state, reconnects, last_error) = s.link.status();
            results::ListActiveConnectionsSessionsItem {
                session_id: s.id.clone(),
                broker_url: s.broker_url.clone(),
                client_id: s.client_id.clone(),
                protocol_version: s.link.protocol().as_str().into(),
                state: state.as_str().into(),
                is_default: s.is_default,
                created_at: rfc3339(s.created_at),
                last_used_at: rfc3339(s.last_used().1),
                expires_in_s: mgr.expires_in(&s),
                reconnects,
                last_error,
                profile: s.profile.clone(),
                read_only: s.policy.read_only(),
            }
        })
        .collect();
    Ok(results::ListActiveConnections {
        sessions,
        max_sessions: mgr.config().max_sessions as u64,
    })
}

/// Closes one session.
pub async fn close_connection(
    ctx: &ToolContext,
    p: params::CloseConnection,
    _deadline: Deadline,
) -> Result<results::CloseConnection, ToolError> {
    let s = ctx.app.sessions.close(&p.session_id).await?;
    Ok(results::CloseConnection {
        session_id: s.id.clone(),
        closed: true,
        broker_url: s.broker_url.clone(),
    })
}
