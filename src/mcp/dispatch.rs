//! Runs one admitted request: the one `match` over [`Method`], then the
//! era's finish (2026-07-28 results carry `resultType` and the method's
//! cache hints; an unknown resource is -32602 there instead of the
//! handshake era's -32002).

use super::lifecycle::{self, Era};
use super::message::{Notification, Outgoing, Reply, Sink};
use super::method::{self, Method, RequestMethod};
use super::params::{self, Field, Obj};
use super::{logging, prompts, resources, Conn};
use crate::jsonrpc::{code, Id, RpcError};
use crate::sync::lock;
use crate::tools::{self, ToolContext};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use tokio_util::sync::CancellationToken;

impl Conn {
    /// Answers `method`, already admitted in `era` by [`Conn::admit`].
    /// Inline methods run on the reader task and never wait; the others run
    /// in a task of their own until done or `cancel`. `reply` is where the
    /// answer will go (a listen stream sends its notifications there too).
    pub(super) async fn handle(
        &self,
        id: &Id,
        method: Method,
        params: Option<Value>,
        era: Era,
        cancel: CancellationToken,
        reply: &Sink,
    ) -> Outgoing {
        let p = params.as_ref();
        let result = match method {
            Method::Initialize => self.initialize(p),
            Method::Ping => Ok(json!({})),
            Method::ServerDiscover => {
                return Outgoing::result(id.clone(), Reply::Json(lifecycle::discover()))
            }
            Method::ToolsList => lifecycle::tools_list(p, self.app.config.list_page_size, |name| {
                self.app.tool_listed(name)
            }),
            Method::ToolsCall => return self.tools_call(id, params, cancel, era).await,
            Method::ResourcesList => resources::list(&self.app, p).await,
            Method::ResourcesRead => resources::read(&self.app, p).await,
            Method::ResourcesTemplatesList => Ok(resources::templates()),
            Method::ResourcesSubscribe => self.subscribe(p).await,
            Method::ResourcesUnsubscribe => self.unsubscribe(p),
            Method::PromptsList => Ok(prompts::prompts()),
            Method::PromptsGet => prompts::get_prompt(p),
            Method::CompletionComplete => resources::complete(&self.app, p).await,
            Method::LoggingSetLevel => self.set_level(p),
            Method::SubscriptionsListen => return self.listen(id, p, cancel, reply).await,
            // Notifications are not requests; admission never lets them here.
            Method::Initialized
            | Method::Cancelled
            | Method::LogMessage
            | Method::Progress
            | Method::ResourceUpdated
            | Method::ResourceListChanged
            | Method::SubscriptionsAcknowledged => Err(method::not_found(
                RequestMethod::Unknown(method.name()),
                era,
            )),
        };
        let id = id.clone();
        match (era, result) {
            (Era::Handshake, Ok(v)) => Outgoing::result(id, Reply::Json(v)),
            (Era::Stateless, Ok(v)) => Outgoing::result(
                id,
                Reply::Json(lifecycle::stateless_result(v, method.facts().cache)),
            ),
            (Era::Handshake, Err(e)) => Outgoing::error(Some(id), e),
            (Era::Stateless, Err(mut e)) => {
                if e.code == resources::RESOURCE_NOT_FOUND {
                    e.code = code::INVALID_PARAMS;
                }
                Outgoing::error(Some(id), e)
            }
        }
    }

    /// `initialize`, once per connection.
    fn initialize(&self, params: Option<&Value>) -> Result<Value, RpcError> {
        if self.initialized.load(Ordering::SeqCst) {
            return Err(RpcError::new(
                code::INVALID_REQUEST,
                "Invalid Request: initialize was already received; send it once per connection",
            ));
        }
        let (version, result) = lifecycle::initialize(params)?;
        *lock(&self.version) = Some(version);
        self.initialized.store(true, Ordering::SeqCst);
        Ok(result)
    }

    /// `logging/setLevel`: the minimum level of forwarded log events.
    fn set_level(&self, params: Option<&Value>) -> Result<Value, RpcError> {
        let level = params::parse::<params::SetLevel>(params)
            .and_then(|p| logging::level_index(&p.level))
            .ok_or_else(|| {
                RpcError::new(
                    code::INVALID_PARAMS,
                    format!(
                        "Invalid params: level must be one of {}",
                        logging::LEVELS.join(", ")
                    ),
                )
            })?;
        self.log_level.store(level, Ordering::Relaxed);
        Ok(json!({}))
    }

    /// `resources/subscribe` (handshake era): the watch lives until
    /// `resources/unsubscribe` or the end of the connection.
    async fn subscribe(&self, params: Option<&Value>) -> Result<Value, RpcError> {
        let uri = resource_uri(params)?;
        let watch = resources::subscribe(
            &self.app,
            &uri,
            self.notes.clone(),
            self.app.config.resource_update_interval,
            resources::Emit::handshake(),
        )
        .await?;
        lock(&self.watches).insert(uri, watch);
        Ok(json!({}))
    }

    /// `resources/unsubscribe`: unknown URIs are not an error.
    fn unsubscribe(&self, params: Option<&Value>) -> Result<Value, RpcError> {
        let uri = resource_uri(params)?;
        lock(&self.watches).remove(&uri);
        Ok(json!({}))
    }

    /// `tools/call`: the tool's result stays typed (its output serialized
    /// once, by the tool); a tool failure is an `isError` result, not an error.
    async fn tools_call(
        &self,
        id: &Id,
        params: Option<Value>,
        cancel: CancellationToken,
        era: Era,
    ) -> Outgoing {
        let invalid = |message: String| {
            Outgoing::error(
                Some(id.clone()),
                RpcError::new(code::INVALID_PARAMS, message),
            )
        };
        let Some(call) = params::parse_owned::<params::ToolsCall>(params) else {
            return invalid(
                "Invalid params: tools/call needs params {\"name\": ..., \"arguments\": {...}}"
                    .into(),
            );
        };
        let Field::Valid(name) = &call.name else {
            return invalid(
                "Invalid params: \"name\" must be a tool name string; see tools/list".into(),
            );
        };
        let Some(tool) = tools::find(name).filter(|t| self.app.tool_listed(t.name)) else {
            return invalid(format!(
                "Invalid params: unknown tool {name:?}; call tools/list for the available tools"
            ));
        };
        let args = match call.arguments {
            None => Value::Object(Default::default()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => return invalid("Invalid params: \"arguments\" must be an object".into()),
        };
        let progress = call
            .meta
            .into_valid()
            .and_then(|Obj(meta)| meta.progress_token)
            .filter(|t| t.is_string() || t.is_number())
            .map(|token| {
                let notes = self.notes.clone();
                tools::Progress::new(move |progress, total, message| {
                    let n = Notification::progress(&token, progress, total, message);
                    notes.try_notify(n.method, n.params);
                })
            });
        let ctx = ToolContext {
            app: self.app.clone(),
            cancel,
            progress,
            tool: tool.name,
        };
        // The call's one deadline is computed and enforced inside `tools::call`.
        let result = tools::call(&ctx, tool, args).await;
        let result = match era {
            Era::Handshake => result,
            Era::Stateless => lifecycle::stateless_tool_result(result),
        };
        Outgoing::result(id.clone(), Reply::Tool(result))
    }
}

/// `params.uri` of `resources/subscribe` and `resources/unsubscribe`.
fn resource_uri(params: Option<&Value>) -> Result<String, RpcError> {
    params::parse::<params::Resource>(params)
        .map(|r| r.uri)
        .ok_or_else(|| {
            RpcError::new(
                code::INVALID_PARAMS,
                "Invalid params: params.uri is required",
            )
        })
}
