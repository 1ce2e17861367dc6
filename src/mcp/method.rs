//! The one table of MCP methods. A JSON-RPC `method` string is turned into a
//! [`Method`] here, once, where it enters; everything after matches on the
//! enum, so a misspelt method is a compile error instead of a silent
//! "Method not found", and what a method is (request or notification, which
//! protocol era has it, whether it may come before `initialize`, whether it
//! is answered on the reader task, how long its result may be cached) is
//! written down once, in [`Method::facts`].

use super::lifecycle::{Cache, Era, CACHE_LIVE, CACHE_STATIC, STATELESS_PROTOCOL_VERSION};
use crate::jsonrpc::{code, RpcError};

/// Every MCP method this server answers, reads or sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// `initialize`: opens the handshake era.
    Initialize,
    /// `ping`.
    Ping,
    /// `server/discover`: the stateless era's replacement of `initialize`.
    ServerDiscover,
    /// `tools/list`.
    ToolsList,
    /// `tools/call`.
    ToolsCall,
    /// `resources/list`.
    ResourcesList,
    /// `resources/read`.
    ResourcesRead,
    /// `resources/templates/list`.
    ResourcesTemplatesList,
    /// `resources/subscribe`.
    ResourcesSubscribe,
    /// `resources/unsubscribe`.
    ResourcesUnsubscribe,
    /// `prompts/list`.
    PromptsList,
    /// `prompts/get`.
    PromptsGet,
    /// `completion/complete`.
    CompletionComplete,
    /// `logging/setLevel`.
    LoggingSetLevel,
    /// `subscriptions/listen`: the stateless era's long-lived notification stream.
    SubscriptionsListen,
    /// `notifications/initialized`.
    Initialized,
    /// `notifications/cancelled` (both sides send it).
    Cancelled,
    /// `notifications/message`: a forwarded log event.
    LogMessage,
    /// `notifications/progress`.
    Progress,
    /// `notifications/resources/updated`.
    ResourceUpdated,
    /// `notifications/resources/list_changed`.
    ResourceListChanged,
    /// `notifications/subscriptions/acknowledged`: what a listen honours.
    SubscriptionsAcknowledged,
}

/// Whether a method expects an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Answered with a result or an error.
    Request,
    /// Never answered.
    Notification,
}

/// Who sends a method. The server sends no requests, so every request is
/// the client's; a notification the client cannot send is ignored when it
/// arrives anyway, like an unknown one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// Only the client.
    Client,
    /// Only the server.
    Server,
    /// Either side.
    Either,
}

/// What the server knows about one method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The name on the wire.
    pub name: &'static str,
    /// Request or notification.
    pub kind: Kind,
    /// Who may send it.
    pub sender: Sender,
    /// Exists in the handshake era (2024-11-05 .. 2025-11-25).
    pub handshake: bool,
    /// Exists in the stateless revision 2026-07-28.
    pub stateless: bool,
    /// Handshake era: may come before `initialize`. Every other request
    /// that early is refused with -32600, known or not; `server/discover`
    /// is let through so that its "not in this era" answer explains itself.
    pub before_initialize: bool,
    /// Answered on the reader task, in input order, because it is quick and
    /// touches connection state (a request sent right after `initialize`
    /// must see it); the others run as tasks of their own.
    pub inline: bool,
    /// Stateless era: the cache hints its result carries (`ttlMs`, `cacheScope`).
    pub cache: Option<Cache>,
}

/// A client request in the eras given; inline, after `initialize` and
/// without cache hints unless the builders below say otherwise.
const fn request(name: &'static str, handshake: bool, stateless: bool) -> Facts {
    Facts {
        name,
        kind: Kind::Request,
        sender: Sender::Client,
        handshake,
        stateless,
        before_initialize: false,
        inline: true,
        cache: None,
    }
}

/// A notification of the handshake era (and the stateless one if `stateless`).
const fn notification(name: &'static str, sender: Sender, stateless: bool) -> Facts {
    Facts {
        name,
        kind: Kind::Notification,
        sender,
        handshake: true,
        stateless,
        before_initialize: true,
        inline: true,
        cache: None,
    }
}

impl Facts {
    /// Runs as a task of its own: it may wait on the broker.
    const fn task(self) -> Self {
        Facts {
            inline: false,
            ..self
        }
    }

    const fn early(self) -> Self {
        Facts {
            before_initialize: true,
            ..self
        }
    }

    const fn cached(self, cache: Cache) -> Self {
        Facts {
            cache: Some(cache),
            ..self
        }
    }
}

impl Method {
    /// Every method, for parsing.
    pub const ALL: [Method; 22] = [
        Method::Initialize,
        Method::Ping,
        Method::ServerDiscover,
        Method::ToolsList,
        Method::ToolsCall,
        Method::ResourcesList,
        Method::ResourcesRead,
        Method::ResourcesTemplatesList,
        Method::ResourcesSubscribe,
        Method::ResourcesUnsubscribe,
        Method::PromptsList,
        Method::PromptsGet,
        Method::CompletionComplete,
        Method::LoggingSetLevel,
        Method::SubscriptionsListen,
        Method::Initialized,
        Method::Cancelled,
        Method::LogMessage,
        Method::Progress,
        Method::ResourceUpdated,
        Method::ResourceListChanged,
        Method::SubscriptionsAcknowledged,
    ];

    /// The table.
    pub const fn facts(self) -> Facts {
        use Sender::{Client, Either, Server};
        match self {
            Method::Initialize => request("initialize", true, false).early(),
            Method::Ping => request("ping", true, false).early(),
            Method::ServerDiscover => request("server/discover", false, true)
                .early()
                .cached(CACHE_STATIC),
            Method::ToolsList => request("tools/list", true, true).cached(CACHE_STATIC),
            Method::ToolsCall => request("tools/call", true, true).task(),
            Method::ResourcesList => request("resources/list", true, true)
                .task()
                .cached(CACHE_LIVE),
            Method::ResourcesRead => request("resources/read", true, true)
                .task()
                .cached(CACHE_LIVE),
            Method::ResourcesTemplatesList => {
                request("resources/templates/list", true, true).cached(CACHE_STATIC)
            }
            Method::ResourcesSubscribe => request("resources/subscribe", true, false).task(),
            Method::ResourcesUnsubscribe => request("resources/unsubscribe", true, false).task(),
            Method::PromptsList => request("prompts/list", true, true).cached(CACHE_STATIC),
            Method::PromptsGet => request("prompts/get", true, true),
            Method::CompletionComplete => request("completion/complete", true, true).task(),
            Method::LoggingSetLevel => request("logging/setLevel", true, false),
            Method::SubscriptionsListen => request("subscriptions/listen", false, true).task(),
            Method::Initialized => notification("notifications/initialized", Client, false),
            Method::Cancelled => notification("notifications/cancelled", Either, true),
            Method::LogMessage => notification("notifications/message", Server, true),
            Method::Progress => notification("notifications/progress", Server, true),
            Method::ResourceUpdated => {
                notification("notifications/resources/updated", Server, true)
            }
            Method::ResourceListChanged => {
                notification("notifications/resources/list_changed", Server, true)
            }
            Method::SubscriptionsAcknowledged => {
                let mut f = notification("notifications/subscriptions/acknowledged", Server, true);
                f.handshake = false;
                f
            }
        }
    }

    /// The name on the wire.
    pub const fn name(self) -> &'static str {
        self.facts().name
    }

    /// The method called `name` that a client may send as `kind`; None for
    /// names we do not know, and for a known name sent as the wrong kind
    /// (a notification name with an id is an unknown request).
    pub fn parse(name: &str, kind: Kind) -> Option<Method> {
        Method::ALL.into_iter().find(|m| {
            let f = m.facts();
            f.name == name && f.kind == kind && f.sender != Sender::Server
        })
    }

    /// Whether the method exists in `era`.
    pub const fn in_era(self, era: Era) -> bool {
        match era {
            Era::Handshake => self.facts().handshake,
            Era::Stateless => self.facts().stateless,
        }
    }

    /// The answer to a known request that does not exist in `era`: a
    /// method of the other era says where it went.
    pub fn absent_in(self, era: Era) -> RpcError {
        let name = self.name();
        let message = match era {
            Era::Handshake if self == Method::ServerDiscover => format!("Method not found: {name}; this server speaks MCP 2024-11-05 to 2025-11-25, send initialize"),
            Era::Handshake => format!("Method not found: {name}"),
            Era::Stateless => format!("Method not found: {name} is not part of MCP {STATELESS_PROTOCOL_VERSION} (the log level goes in _meta, resource updates come through subscriptions/listen)"),
        };
        RpcError::new(code::METHOD_NOT_FOUND, message)
    }
}

/// A request's `method` as the client sent it: one of ours, or a name we do
/// not know, kept for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestMethod<'a> {
    /// A request this server knows (in some era).
    Known(Method),
    /// Anything else, including a notification's name sent with an id.
    Unknown(&'a str),
}

impl<'a> RequestMethod<'a> {
    /// Parses a request's `method`.
    pub fn parse(name: &'a str) -> Self {
        match Method::parse(name, Kind::Request) {
            Some(m) => RequestMethod::Known(m),
            None => RequestMethod::Unknown(name),
        }
    }

    /// The known method, if it is one.
    pub fn known(self) -> Option<Method> {
        match self {
            RequestMethod::Known(m) => Some(m),
            RequestMethod::Unknown(_) => None,
        }
    }

    /// The name as sent.
    pub fn name(self) -> &'a str {
        match self {
            RequestMethod::Known(m) => m.name(),
            RequestMethod::Unknown(n) => n,
        }
    }
}

impl<'a> From<&'a str> for RequestMethod<'a> {
    fn from(name: &'a str) -> Self {
        RequestMethod::parse(name)
    }
}

/// The error for any request that does not exist in `era`, known or not.
pub fn not_found(method: RequestMethod<'_>, era: Era) -> RpcError {
    match method {
        RequestMethod::Known(m) => m.absent_in(era),
        RequestMethod::Unknown(name) => {
            RpcError::new(code::METHOD_NOT_FOUND, format!("Method not found: {name}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_parses_from_its_name_and_names_are_unique() {
        let mut names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
        for m in Method::ALL {
            let f = m.facts();
            let parsed = Method::parse(f.name, f.kind);
            if f.sender == Sender::Server {
                assert_eq!(parsed, None, "{} is the server's", f.name);
            } else {
                assert_eq!(parsed, Some(m), "{}", f.name);
            }
            assert!(f.handshake || f.stateless, "{} is in no era", f.name);
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Method::ALL.len());
    }

    #[test]
    fn a_name_sent_as_the_wrong_kind_is_unknown() {
        assert_eq!(
            RequestMethod::parse("notifications/cancelled"),
            RequestMethod::Unknown("notifications/cancelled")
        );
        assert_eq!(Method::parse("ping", Kind::Notification), None);
        assert_eq!(
            Method::parse("notifications/cancelled", Kind::Notification),
            Some(Method::Cancelled)
        );
        assert_eq!(
            Method::parse("notifications/progress", Kind::Notification),
            None
        );
        assert_eq!(RequestMethod::parse("tools/call").name(), "tools/call");
        assert_eq!(RequestMethod::parse("nope").name(), "nope");
    }
}
