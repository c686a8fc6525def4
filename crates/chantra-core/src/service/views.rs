//! What the service layer returns: plain data that REST serialises as JSON
//! (and documents in OpenAPI) and MCP returns as structured content.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::Visibility;

/// A channel just created. The tokens appear here and nowhere else, ever.
#[derive(Debug, Clone, Serialize, ToSchema, schemars::JsonSchema)]
pub struct CreatedChannel {
    #[schema(value_type = String, format = Uuid)]
    pub channel_id: String,
    pub visibility: Visibility,
    /// Where readers follow the channel as Server-Sent Events.
    pub url: String,
    /// Authorises publishing, grants and deletion. Shown once.
    pub publish_token: String,
    /// Private channels only: the first read grant's token. Shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_token: Option<String>,
    /// Private channels only: the id of that first grant (to revoke it without listing grants).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub read_grant_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A channel's metadata, as its publisher sees it.
#[derive(Debug, Clone, Serialize, ToSchema, schemars::JsonSchema)]
pub struct ChannelView {
    #[schema(value_type = String, format = Uuid)]
    pub channel_id: String,
    pub visibility: Visibility,
    pub url: String,
    pub created_at: DateTime<Utc>,
    pub last_published_at: Option<DateTime<Utc>>,
    /// When the channel is deleted if nothing is published before then.
    pub idle_deletion_at: DateTime<Utc>,
    /// Unexpired messages currently kept.
    pub live_messages: u64,
    /// Read grants, oldest first (never their tokens): the first 100 at
    /// most; `GET /v1/channels/{id}/read-grants` lists them all, page by page.
    pub read_grants: Vec<GrantView>,
    /// How many grants the channel holds, revoked and expired ones included
    /// until the sweeper purges them.
    pub read_grants_total: u64,
    /// More grants exist than `read_grants` shows.
    pub read_grants_truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GrantState {
    Active,
    Revoked,
    Expired,
}

#[derive(Debug, Clone, Serialize, ToSchema, schemars::JsonSchema)]
pub struct GrantView {
    #[schema(value_type = String, format = Uuid)]
    pub grant_id: String,
    pub label: Option<String>,
    pub state: GrantState,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A page of a channel's read grants, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema, schemars::JsonSchema)]
pub struct GrantPage {
    pub read_grants: Vec<GrantView>,
    /// Pass as `after` to get the next page (the cursor given, when the page is empty).
    #[schema(value_type = Option<String>, format = Uuid)]
    pub next_cursor: Option<String>,
    /// Whether more grants follow.
    pub has_more: bool,
}

/// A read grant just created; `read_token` is shown once.
#[derive(Debug, Clone, Serialize, ToSchema, schemars::JsonSchema)]
pub struct CreatedGrant {
    #[schema(value_type = String, format = Uuid)]
    pub grant_id: String,
    pub read_token: String,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// An accepted message.
#[derive(Debug, Clone, Serialize, ToSchema, schemars::JsonSchema)]
pub struct PublishedMessage {
    /// UUIDv7; also the cursor for `Last-Event-ID`.
    #[schema(value_type = String, format = Uuid)]
    pub message_id: String,
    #[schema(value_type = String, format = Uuid)]
    pub channel_id: String,
    pub content_type: String,
    pub payload_size: u64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// One message as readers receive it: the `data` of an SSE `message` event,
/// and an item of the internal read API.
#[derive(Debug, Clone, Serialize, ToSchema, schemars::JsonSchema)]
pub struct MessageEvent {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    #[schema(value_type = String, format = Uuid)]
    pub channel_id: String,
    /// The payload bytes, base64 (standard alphabet, padded).
    pub payload: String,
    pub content_type: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A page of messages after a cursor.
#[derive(Debug, Clone, Serialize, ToSchema, schemars::JsonSchema)]
pub struct MessagePage {
    pub messages: Vec<MessageEvent>,
    /// Pass as `after` to get the next page (the cursor given, when the page is empty).
    #[schema(value_type = Option<String>, format = Uuid)]
    pub next_cursor: Option<String>,
    /// Whether more messages follow right now.
    pub has_more: bool,
    /// The page stopped before `limit` because its payloads filled the byte
    /// budget (PAGE_MAX_BYTES); the rest follow from `next_cursor`.
    pub truncated: bool,
}
