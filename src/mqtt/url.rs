//! Broker URLs: `mqtt://[user[:password]@]host[:port][/client_id]` and
//! `mqtts://` for TLS. Parsing keeps the password out of every `Debug` and
//! out of the redacted form shown to the model.

use crate::secret::SecretString;

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// TLS (`mqtts://`).
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port (default 1883 or 8883).
    pub port: u16,
    /// User name, percent-decoded.
    pub username: Option<String>,
    /// Password, percent-decoded; redacted in `Debug`.
    pub password: Option<SecretString>,
    /// Client id from the path, if given.
    pub client_id: Option<String>,
}

/// Why a URL was rejected; never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not mqtt:// or mqtts://.
    #[error("the URL must start with mqtt:// or mqtts:// (for example mqtt://user:pass@broker.local:1883)")]
    Scheme,
    /// No host.
    #[error("the URL has no host (expected mqtt://host[:port])")]
    NoHost,
    /// Port not a number in 1..=65535.
    #[error("the port must be a number from 1 to 65535")]
    Port,
    /// Bad percent-encoding or characters.
    #[error("the URL is malformed: {0}")]
    Malformed(&'static str),
}

/// Decodes one percent-encoded URL component (user, password, client id, a
/// resource URI's topic). Strict where the `percent-encoding` crate is
/// lenient: a `%` not followed by two hex digits is an error, not a literal,
/// since a misread URL would reach another broker, user or topic.
pub fn percent_decode(s: &str) -> Result<String, UrlError> {
    let well_formed = s.split('%').skip(1).all(|rest| {
        rest.as_bytes()
            .get(..2)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(UrlError::Malformed("bad percent-encoding"));
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| UrlError::Malformed("percent-encoding is not UTF-8"))
}

impl BrokerUrl {
    /// Plain MQTT to `addr` with no credentials or client id: how the server
    /// reaches the embedded broker's listener.
    pub fn plain(addr: std::net::SocketAddr) -> BrokerUrl {
        BrokerUrl {
            tls: false,
            host: addr.ip().to_string(),
            port: addr.port(),
            username: None,
            password: None,
            client_id: None,
        }
    }

    /// Parses a broker URL.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let url = url.trim();
        let (tls, rest) = if let Some(r) = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
        {
            (false, r)
        } else if let Some(r) = url
            .strip_prefix("mqtts://")
            .or_else(|| url.strip_prefix("ssl://"))
        {
            (true, r)
        } else {
            return Err(UrlError::Scheme);
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(ui) => match ui.split_once(':') {
                Some((u, p)) => (
                    Some(percent_decode(u)?),
                    Some(SecretString::new(percent_decode(p)?)),
                ),
                None => (Some(percent_decode(ui)?), None),
            },
        };
        let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or(UrlError::Malformed("unclosed [ in IPv6 address"))?;
            let host = &r[..end];
            let after = &r[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(UrlError::Malformed("unexpected text after ]")),
            };
            (host.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        if host.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
            return Err(UrlError::Malformed("the host contains invalid characters"));
        }
        let port = match port {
            None => {
                if tls {
                    8883
                } else {
                    1883
                }
            }
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or(UrlError::Port)?,
        };
        let client_id = match path {
            Some(p) if !p.is_empty() => Some(percent_decode(p)?),
            _ => None,
        };
        Ok(Self {
            tls,
            host,
            port,
            username: username.filter(|u| !u.is_empty()),
            password,
            client_id,
        })
    }

    /// The URL as shown to the model: user name kept, password removed.
    pub fn redacted(&self) -> String {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match &self.username {
            Some(u) => format!("{scheme}://{u}@{host}:{}", self.port),
            None => format!("{scheme}://{host}:{}", self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_are_decoded_strictly() {
        assert_eq!(percent_decode("a%2Fb%20c%C3%A9").unwrap(), "a/b cé");
        for bad in ["50%", "%4", "%zz", "%%41", "%C3"] {
            assert!(percent_decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_full_url() {
        let u = BrokerUrl::parse("mqtt://alice:s%40cret:x@broker.local:1884/my-client").unwrap();
        assert_eq!(u.host, "broker.local");
        assert_eq!(u.port, 1884);
        assert_eq!(u.username.as_deref(), Some("alice"));
        assert_eq!(u.password.as_ref().map(|p| p.expose()), Some("s@cret:x"));
        assert_eq!(u.client_id.as_deref(), Some("my-client"));
        assert!(!u.tls);
        assert_eq!(u.redacted(), "mqtt://alice@broker.local:1884");
        assert!(!format!("{u:?}").contains("s@cret"));
    }

    #[test]
    fn defaults_and_tls() {
        let u = BrokerUrl::parse("mqtts://h").unwrap();
        assert_eq!(
            (u.tls, u.port, u.username, u.client_id),
            (true, 8883, None, None)
        );
        assert_eq!(BrokerUrl::parse("mqtt://h").unwrap().port, 1883);
        let v6 = BrokerUrl::parse("mqtt://[::1]:1900").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 1900));
        assert_eq!(v6.redacted(), "mqtt://[::1]:1900");
    }

    #[test]
    fn rejects_bad_urls_without_echoing_secrets() {
        assert_eq!(BrokerUrl::parse("http://h"), Err(UrlError::Scheme));
        assert_eq!(BrokerUrl::parse("mqtt://"), Err(UrlError::NoHost));
        assert_eq!(BrokerUrl::parse("mqtt://h:0"), Err(UrlError::Port));
        assert_eq!(BrokerUrl::parse("mqtt://h:99999"), Err(UrlError::Port));
        let e = BrokerUrl::parse("mqtt://u:topsecret@h:abc").unwrap_err();
        assert!(!e.to_string().contains("topsecret"));
        assert!(BrokerUrl::parse("mqtt://u:p%zz@h").is_err());
    }
}
