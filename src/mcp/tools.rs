//! The channel tools. Each parses its arguments into domain values and
//! calls the same service method REST calls: no business rule lives here.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use rmcp::ErrorData;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListResourceTemplatesResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig, SubscribeRequestParams,
    SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::service::SubscriptionContext;
use rmcp::{RoleServer, ServerHandler, tool, tool_handler, tool_router};

use super::failure::ToolFailure;
use super::links::link_channel;
use super::params::{
    Args, ChannelAuthParams, CreateChannelParams, CreateGrantParams, Deleted, PublishParams, ReadFrom, ReadMessage,
    ReadParams, ReadResult, RevokeGrantParams, WaitParams, WaitResult, plain_formats, plain_input_schema,
};
use super::resources::{self, SessionSubscriptions};
use super::source::{MessageSource, PageStart, RemoteMessage, RemotePage};
use super::wait::Waits;
use chantra_core::domain::{
    ChannelId, ContentType, GrantId, IdempotencyKey, Label, MessageId, PublishToken, ReadToken, Ttl, decode_base64,
};
use chantra_core::error::AppError;
use chantra_core::service::views::{ChannelView, CreatedChannel, CreatedGrant, GrantView, PublishedMessage};
use chantra_core::service::{PublishInput, Service};

const TEXT_TYPE: &str = "text/plain; charset=utf-8";
const DEFAULT_LIMIT: u64 = 50;

/// One per MCP session: a cheap clone of the shared service plus the router.
#[derive(Clone)]
pub struct ChantraMcp {
    service: Service,
    source: MessageSource,
    /// PAGE_MAX_BYTES: the most bytes of messages (as JSON) one read returns.
    page_max_bytes: usize,
    waits: Waits,
    /// This session's channel resource subscriptions (resources.rs).
    subscriptions: Arc<SessionSubscriptions>,
    tool_router: ToolRouter<Self>,
}

fn publish_token(raw: &str) -> Result<PublishToken, AppError> {
    Ok(PublishToken::parse(raw)?)
}

#[tool_router]
impl ChantraMcp {
    /// A session's handler; `tools` is [`ChantraMcp::tools`], built once per process.
    pub fn new(
        service: Service,
        source: MessageSource,
        page_max_bytes: usize,
        waits: Waits,
        tools: ToolRouter<Self>,
        subscriptions: Arc<SessionSubscriptions>,
    ) -> Self {
        Self { service, source, page_max_bytes, waits, subscriptions, tool_router: tools }
    }

    /// The tools, with schemas every client can fill: optional arguments as
    /// plain types and only standard formats (params.rs).
    pub fn tools() -> ToolRouter<Self> {
        let mut router = Self::tool_router();
        for route in router.map.values_mut() {
            let mut input = (*route.attr.input_schema).clone();
            plain_input_schema(&mut input);
            route.attr.input_schema = Arc::new(input);
            if let Some(output) = &route.attr.output_schema {
                let mut output = (**output).clone();
                plain_formats(&mut output);
                route.attr.output_schema = Some(Arc::new(output));
            }
        }
        router
    }

    /// Names of every tool, in the order tools/list gives them.
    pub fn tool_names() -> Vec<String> {
        Self::tool_router().list_all().into_iter().map(|t| t.name.to_string()).collect()
    }

    /// Create a pub/sub channel. Returns its id, the URL readers follow as
    /// Server-Sent Events, and a publish token (plus a read token for a
    /// private channel). The tokens are shown only once: keep them.
    #[tool(annotations(
        title = "Create channel",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn create_channel(
        &self,
        Parameters(args): Parameters<Args<CreateChannelParams>>,
    ) -> Result<Json<CreatedChannel>, ToolFailure> {
        let params = args.parse()?;
        Ok(Json(self.service.create_channel(params.visibility).await?))
    }

    /// Delete a channel with all its messages and read grants; its live
    /// readers are disconnected. Cannot be undone.
    #[tool(annotations(
        title = "Delete channel",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn delete_channel(
        &self,
        Parameters(args): Parameters<Args<ChannelAuthParams>>,
    ) -> Result<Json<Deleted>, ToolFailure> {
        let params = args.parse()?;
        let id = ChannelId::parse(&params.channel_id).map_err(AppError::from)?;
        self.service.delete_channel(id, &publish_token(&params.publish_token)?).await?;
        Ok(Json(Deleted { channel_id: id.to_string(), deleted: true }))
    }

    /// Publish a message to a channel. Give the payload as UTF-8 text in
    /// `payload` or as base64 in `payload_base64`. Messages expire after
    /// `ttl_seconds` (at most 48 hours, the default).
    #[tool(annotations(
        title = "Publish message",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn publish_message(
        &self,
        Parameters(args): Parameters<Args<PublishParams>>,
    ) -> Result<Json<PublishedMessage>, ToolFailure> {
        let params = args.parse()?;
        let id = ChannelId::parse(&params.channel_id).map_err(AppError::from)?;
        let token = publish_token(&params.publish_token)?;
        let (payload, default_type) = match (params.payload, params.payload_base64) {
            (Some(text), None) => (Bytes::from(text), TEXT_TYPE),
            (None, Some(encoded)) => {
                let bytes = decode_base64(&encoded, "payload_base64")?;
                (Bytes::from(bytes), ContentType::DEFAULT)
            }
            _ => {
                return Err(AppError::bad_request(
                    "invalid_payload",
                    "give exactly one of payload (UTF-8 text) and payload_base64",
                )
                .into());
            }
        };
        let content_type = ContentType::parse(params.content_type.as_deref().unwrap_or(default_type))?;
        let ttl = params.ttl_seconds.map(Ttl::from_seconds).transpose()?.unwrap_or_default();
        let idempotency_key = params.idempotency_key.as_deref().map(IdempotencyKey::parse).transpose()?;
        let input = PublishInput { payload, content_type, ttl, idempotency_key };
        Ok(Json(self.service.publish(id, &token, input).await?.message))
    }

    /// Create a read grant on a private channel: a new read token (shown
    /// once) that can be revoked on its own.
    #[tool(annotations(
        title = "Create read grant",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn create_read_grant(
        &self,
        Parameters(args): Parameters<Args<CreateGrantParams>>,
    ) -> Result<Json<CreatedGrant>, ToolFailure> {
        let params = args.parse()?;
        let id = ChannelId::parse(&params.channel_id).map_err(AppError::from)?;
        let label = params.label.as_deref().map(Label::parse).transpose()?;
        let token = publish_token(&params.publish_token)?;
        Ok(Json(self.service.create_grant(id, &token, label, params.expires_in_seconds).await?))
    }

    /// Revoke a read grant: its token stops working and readers using it
    /// are disconnected. Revoking twice is harmless.
    #[tool(annotations(
        title = "Revoke read grant",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn revoke_read_grant(
        &self,
        Parameters(args): Parameters<Args<RevokeGrantParams>>,
    ) -> Result<Json<GrantView>, ToolFailure> {
        let params = args.parse()?;
        let id = ChannelId::parse(&params.channel_id).map_err(AppError::from)?;
        let grant = GrantId::parse(&params.grant_id).map_err(AppError::from)?;
        Ok(Json(self.service.revoke_grant(id, &publish_token(&params.publish_token)?, grant).await?))
    }

    /// Describe a channel: URL, last publish, when it will be deleted if
    /// idle, message count and read grants (never their tokens).
    #[tool(annotations(
        title = "Get channel",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn get_channel(
        &self,
        Parameters(args): Parameters<Args<ChannelAuthParams>>,
    ) -> Result<Json<ChannelView>, ToolFailure> {
        let params = args.parse()?;
        let id = ChannelId::parse(&params.channel_id).map_err(AppError::from)?;
        Ok(Json(self.service.get_channel(id, &publish_token(&params.publish_token)?).await?))
    }

    /// Read a channel's messages after a cursor, oldest first (or, with
    /// `from: "latest"`, the newest `limit` ones; with `since`, those from a
    /// time on). Call again
    /// with `after` = `next_cursor` to continue while `has_more` is true. A
    /// page also stops early, with `truncated: true`, when its messages reach
    /// the server's byte budget (a few MiB): then continue from `next_cursor`
    /// too. Each payload comes once: `payload_text` for UTF-8 text with a
    /// textual content type (text/*, JSON, XML, ...), otherwise
    /// `payload_base64`. Private channels need a read token.
    #[tool(annotations(
        title = "Read channel messages",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn read_channel_messages(
        &self,
        Parameters(args): Parameters<Args<ReadParams>>,
    ) -> Result<Json<ReadResult>, ToolFailure> {
        let params = args.parse()?;
        let id = ChannelId::parse(&params.channel_id).map_err(AppError::from)?;
        let token = params.read_token.as_deref().map(ReadToken::parse).transpose().map_err(AppError::from)?;
        let start = page_start(params.after.as_deref(), params.since.as_deref(), params.from)?;
        let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=chantra_core::service::MAX_PAGE).contains(&limit) {
            return Err(AppError::bad_request("invalid_limit", "limit must be from 1 to 500").into());
        }
        let page = self.source.read(&self.service, id, token.as_ref(), start, limit).await?;
        Ok(Json(bounded_result(page, self.page_max_bytes)))
    }

    /// Wait for messages on a channel and return as soon as there is at
    /// least one after `after` (omit `after` to wait for messages published
    /// from now on), or empty with `timed_out: true` after
    /// `timeout_seconds`. Always returns `next_cursor`: call again with
    /// `after` = `next_cursor` to follow the channel with nothing missed or
    /// repeated. `gap` says messages expired before you read them;
    /// `channel_deleted` or `access_ended` say to stop. Sends progress
    /// notifications while waiting when the request carries a progressToken.
    /// Private channels need a read token.
    #[tool(annotations(
        title = "Wait for messages",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn wait_for_messages(
        &self,
        Parameters(args): Parameters<Args<WaitParams>>,
        context: RequestContext<RoleServer>,
    ) -> Result<Json<WaitResult>, ToolFailure> {
        let params = args.parse()?;
        Ok(Json(self.waits.wait(&self.service, params, &context).await?))
    }
}

/// Where a read starts: after a cursor, at a time (the floor id of that
/// moment, as the SSE `?since=`), the newest messages, or the oldest.
fn page_start(after: Option<&str>, since: Option<&str>, from: Option<ReadFrom>) -> Result<PageStart, AppError> {
    let latest = from == Some(ReadFrom::Latest);
    if [after.is_some(), since.is_some(), latest].iter().filter(|given| **given).count() > 1 {
        return Err(AppError::InvalidCursor("give at most one of after, since and from: \"latest\"".into()));
    }
    if latest {
        return Ok(PageStart::Latest);
    }
    if let Some(after) = after {
        let after = MessageId::parse(after).map_err(|e| AppError::InvalidCursor(format!("after: {e}")))?;
        return Ok(PageStart::After(Some(after)));
    }
    let Some(since) = since else { return Ok(PageStart::After(None)) };
    let since = since.trim();
    let millis = match since.parse::<u64>() {
        Ok(seconds) => seconds.checked_mul(1000),
        Err(_) => chrono::DateTime::parse_from_rfc3339(since)
            .ok()
            .and_then(|time| u64::try_from(time.timestamp_millis()).ok()),
    }
    .filter(|millis| *millis < 1 << 48)
    .ok_or_else(|| {
        AppError::InvalidCursor(
            "since must be an RFC 3339 time (e.g. 2026-12-01T09:30:00Z) or Unix seconds (e.g. 1764581400)".into(),
        )
    })?;
    Ok(PageStart::After(Some(MessageId::floor_at(millis))))
}

/// The tool result of a page, itself bounded: messages are added while
/// their JSON fits in `budget` bytes (always at least one, so a reader
/// moves on past a message larger than the budget). A page cut here is
/// `truncated` and continues after its last message.
fn bounded_result(page: RemotePage, budget: usize) -> ReadResult {
    let mut messages = Vec::new();
    let mut used = 0usize;
    let mut cut = false;
    for remote in page.messages {
        let message = read_message(remote);
        let size = json_len(&message);
        if !messages.is_empty() && used.saturating_add(size) > budget {
            cut = true;
            break;
        }
        used = used.saturating_add(size);
        messages.push(message);
    }
    if cut {
        let next_cursor = messages.last().map(|m: &ReadMessage| m.id.clone());
        return ReadResult { messages, next_cursor, has_more: true, truncated: true };
    }
    ReadResult { messages, next_cursor: page.next_cursor, has_more: page.has_more, truncated: page.truncated }
}

/// The payload once: as text when it is textual and UTF-8, else as base64.
pub(super) fn read_message(m: RemoteMessage) -> ReadMessage {
    let text = if is_textual(&m.content_type) {
        STANDARD.decode(&m.payload).ok().and_then(|bytes| String::from_utf8(bytes).ok())
    } else {
        None
    };
    let (payload_text, payload_base64) = match text {
        Some(text) => (Some(text), None),
        None => (None, Some(m.payload)),
    };
    ReadMessage {
        id: m.id,
        channel_id: m.channel_id,
        payload_text,
        payload_base64,
        content_type: m.content_type,
        created_at: m.created_at,
        expires_at: m.expires_at,
    }
}

/// Whether a content type names text an agent can read as is.
fn is_textual(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind == "text"
        || matches!(
            subtype,
            "json" | "xml" | "yaml" | "x-yaml" | "javascript" | "ecmascript" | "x-ndjson" | "x-www-form-urlencoded"
        )
        || ["+json", "+xml", "+yaml"].iter().any(|suffix| subtype.ends_with(suffix))
}

/// The length of a value's JSON, counted without building it.
pub(super) fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail, and these structs always serialize.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

const INSTRUCTIONS: &str = "Chantra: anonymous pub/sub channels. create_channel gives a channel id, a reader URL (Server-Sent Events) and a publish token; publish_message sends messages (kept up to 48 h); read_channel_messages pages through them; wait_for_messages waits for the next ones (loop on it with after = next_cursor to follow a channel). Each channel is also the resource chantra://channels/{channel_id} (add ?read_token=... for a private one): read it for its newest messages, subscribe to it to be notified of each publish. Private channels need read tokens (create_read_grant / revoke_read_grant). Tokens are shown once; pass them as tool arguments.";

#[tool_handler(router = self.tool_router)]
impl ServerHandler for ChantraMcp {
    fn get_info(&self) -> ServerConfig {
        let capabilities =
            ServerCapabilities::builder().enable_tools().enable_resources().enable_resources_subscribe().build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("chantra", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS.to_string())
    }

    /// The router's call, then the links to the channel the result concerns (links.rs).
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let tool = request.name.to_string();
        let arguments = request.arguments.clone();
        let call = ToolCallContext::new(self, request, context);
        let mut response = self.tool_router.call(call).await?;
        link_channel(&tool, arguments.as_ref(), &mut response);
        Ok(response)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![resources::channel_template()]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        Ok(resources::read(&self.service, &self.source, self.page_max_bytes, &request.uri).await?.into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscriptions.subscribe(&self.service, &request.uri, context.peer.clone()).await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscriptions.unsubscribe(&request.uri);
        Ok(())
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        Some(self.subscriptions.accepted(requested))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let uris = context.accepted().resource_subscriptions.clone().unwrap_or_default();
        let cancelled = context.request_context().ct.clone();
        let sink = context.sink().clone();
        self.subscriptions.listen(&self.service, &uris, sink, cancelled).await
    }
}
