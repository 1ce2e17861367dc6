//! What brokers and rumqttc report, in words a model can act on: CONNACK
//! refusals, reason codes of acknowledgements, connection errors with advice
//! (TLS above all), and which refusals make MQTT 3.1.1 worth a try.

use super::model::*;
use rumqttc::v5 as r5;

/// Wire values of MQTT 5 reason codes, for results and messages.
pub(super) fn v5_connect_refusal(code: r5::mqttbytes::v5::ConnectReturnCode) -> String {
    use r5::mqttbytes::v5::ConnectReturnCode as C;
    let hint = match code {
        C::BadUserNamePassword => "bad user name or password; check username/password",
        C::NotAuthorized => "not authorized; the user may not connect",
        C::ClientIdentifierNotValid | C::BadClientId => {
            "client id rejected; pass another client_id"
        }
        C::UnsupportedProtocolVersion | C::RefusedProtocolVersion => {
            "protocol version not supported"
        }
        C::ServerUnavailable | C::ServiceUnavailable | C::ServerBusy => {
            "the broker is unavailable or busy; retry later"
        }
        C::Banned => "this client is banned",
        _ => "",
    };
    if hint.is_empty() {
        format!("{code:?}")
    } else {
        format!("{code:?} ({hint})")
    }
}

pub(super) fn v4_connect_refusal(code: rumqttc::ConnectReturnCode) -> String {
    use rumqttc::ConnectReturnCode as C;
    let hint = match code {
        C::BadUserNamePassword => "bad user name or password; check username/password",
        C::NotAuthorized => "not authorized; the user may not connect",
        C::BadClientId => "client id rejected; pass another client_id",
        C::RefusedProtocolVersion => "protocol version not supported",
        C::ServiceUnavailable => "the broker is unavailable; retry later",
        C::Success => "",
    };
    format!("{code:?} ({hint})")
}

/// The wire value of an MQTT 5 PUBACK or PUBREC reason: rumqttc gives the
/// two the same variants in two enums.
macro_rules! ack_reason_code {
    ($name:ident, $reason:ident) => {
        pub(super) fn $name(r: r5::mqttbytes::v5::$reason) -> u8 {
            use r5::mqttbytes::v5::$reason as R;
            match r {
                R::Success => 0x00,
                R::NoMatchingSubscribers => 0x10,
                R::UnspecifiedError => 0x80,
                R::ImplementationSpecificError => 0x83,
                R::NotAuthorized => 0x87,
                R::TopicNameInvalid => 0x90,
                R::PacketIdentifierInUse => 0x91,
                R::QuotaExceeded => 0x97,
                R::PayloadFormatInvalid => 0x99,
            }
        }
    };
}

ack_reason_code!(puback_code, PubAckReason);
ack_reason_code!(pubrec_code, PubRecReason);

pub(super) fn suback_code(c: r5::mqttbytes::v5::SubscribeReasonCode) -> SubAckCode {
    use r5::mqttbytes::v5::SubscribeReasonCode as C;
    match c {
        C::Success(q) => SubAckCode::Granted(q as u8),
        C::Failure | C::Unspecified => SubAckCode::Refused(0x80),
        C::ImplementationSpecific => SubAckCode::Refused(0x83),
        C::NotAuthorized => SubAckCode::Refused(0x87),
        C::TopicFilterInvalid => SubAckCode::Refused(0x8F),
        C::PkidInUse => SubAckCode::Refused(0x91),
        C::QuotaExceeded => SubAckCode::Refused(0x97),
        C::SharedSubscriptionsNotSupported => SubAckCode::Refused(0x9E),
        C::SubscriptionIdNotSupported => SubAckCode::Refused(0xA1),
        C::WildcardSubscriptionsNotSupported => SubAckCode::Refused(0xA2),
    }
}

pub(super) fn map_io(addr: &str, e: std::io::Error) -> ConnectError {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
            ConnectError::ClosedBeforeConnAck(addr.to_string())
        }
        _ => ConnectError::Unreachable {
            addr: addr.to_string(),
            reason: e.to_string(),
        },
    }
}

/// The rustls error somewhere in `e`'s chain: rumqttc wraps it in its TLS
/// error, or tokio-rustls in an I/O error, depending on the stage.
fn rustls_error<'a>(mut e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    for _ in 0..8 {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            e = inner;
            continue;
        }
        e = e.source()?;
    }
    None
}

/// Advice for a TLS failure, decided by the kind of rustls error.
pub(super) fn tls_advice(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    use rustls::{AlertDescription as A, CertificateError as C, Error as R};
    Some(match rustls_error(e)? {
        R::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "the broker's certificate is not signed by a trusted CA; set tls.ca_file to the CA that issued it"
        }
        R::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the broker's certificate is not valid for this host name; connect with the name in the certificate"
        }
        R::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the broker's certificate has expired (or the clock is wrong)"
        }
        R::AlertReceived(A::CertificateRequired) => {
            "the broker requires a client certificate; set tls.client_cert and tls.client_key"
        }
        R::AlertReceived(A::BadCertificate | A::UnknownCA | A::DecryptError) => {
            "the broker rejected the client certificate; check tls.client_cert and tls.client_key"
        }
        R::InvalidMessage(_) => "the port does not speak TLS; use mqtt:// or the broker's TLS port",
        _ => return None,
    })
}

/// Puts the advice for a TLS failure (from [`tls_advice`]) in front of
/// what rumqttc said.
pub(super) fn explain_tls(addr: &str, hint: Option<&'static str>, e: ConnectError) -> ConnectError {
    let Some(hint) = hint else {
        return e;
    };
    let detail = match &e {
        ConnectError::Tls { reason, .. } | ConnectError::Other { reason, .. } => reason.clone(),
        _ => e.to_string(),
    };
    ConnectError::Tls {
        addr: addr.to_string(),
        reason: format!("{hint} (details: {detail})"),
    }
}

/// Writes the mapping of one of rumqttc's `ConnectionError`s to ours. The
/// 3.1.1 and 5 enums name their variants alike but are different types (as
/// are their `StateError`s), so the mapping is written once, here, and
/// instantiated for each; only the refusal and the timeout variants differ.
macro_rules! map_connection_error {
    (
        $(#[$doc:meta])*
        fn $name:ident($($err:ident)::+, $($state:ident)::+);
        refused($code:ident) => $refused:expr;
        timeout: $timeout:pat,
    ) => {
        $(#[$doc])*
        pub(super) fn $name(addr: &str, e: $($err)::+) -> ConnectError {
            use $($err)::+ as E;
            use $($state)::+ as S;
            match e {
                E::ConnectionRefused($code) => $refused,
                E::Io(io) | E::MqttState(S::Io(io)) => map_io(addr, io),
                $timeout => ConnectError::Timeout {
                    addr: addr.to_string(),
                    ms: 0,
                },
                E::Tls(t) => ConnectError::Tls {
                    addr: addr.to_string(),
                    reason: t.to_string(),
                },
                E::MqttState(S::ConnectionAborted) => {
                    ConnectError::ClosedBeforeConnAck(addr.to_string())
                }
                other => ConnectError::Other {
                    addr: addr.to_string(),
                    reason: other.to_string(),
                },
            }
        }
    };
}

map_connection_error! {
    /// A 3.1.1 connection error in our terms.
    fn map_v4_err(rumqttc::ConnectionError, rumqttc::StateError);
    refused(code) => ConnectError::Refused {
        reason: v4_connect_refusal(code),
        protocol_version: code == rumqttc::ConnectReturnCode::RefusedProtocolVersion,
    };
    timeout: E::NetworkTimeout | E::FlushTimeout,
}

map_connection_error! {
    /// An MQTT 5 connection error in our terms.
    fn map_v5_err(r5::ConnectionError, r5::StateError);
    refused(code) => ConnectError::Refused {
        reason: v5_connect_refusal(code),
        protocol_version: matches!(
            code,
            r5::mqttbytes::v5::ConnectReturnCode::UnsupportedProtocolVersion
                | r5::mqttbytes::v5::ConnectReturnCode::RefusedProtocolVersion
        ),
    };
    timeout: E::Timeout(_),
}

/// Errors after which 3.1.1 is worth a try: refusals of the protocol, or a
/// broker that closes the socket (what 3.1.1-only brokers often do with v5).
pub(crate) fn worth_fallback(e: &ConnectError) -> bool {
    match e {
        ConnectError::Refused {
            protocol_version, ..
        } => *protocol_version,
        ConnectError::ClosedBeforeConnAck(_) | ConnectError::Other { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_only_for_protocol_problems() {
        assert!(worth_fallback(&ConnectError::ClosedBeforeConnAck(
            "x".into()
        )));
        assert!(worth_fallback(&ConnectError::Refused {
            reason: "x".into(),
            protocol_version: true
        }));
        assert!(!worth_fallback(&ConnectError::Refused {
            reason: "UnsupportedProtocolVersion".into(),
            protocol_version: false
        }));
        assert!(!worth_fallback(&ConnectError::Unreachable {
            addr: "x".into(),
            reason: "y".into()
        }));
    }
}
