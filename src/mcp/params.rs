//! Tool arguments. Field doc comments become the JSON-schema descriptions an
//! agent reads, so they say exactly what to pass.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use chantra_core::domain::Visibility;

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannelParams {
    /// "public" (anyone with the URL reads) or "private" (readers need a read token). Default "public".
    #[serde(default)]
    pub visibility: Visibility,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelAuthParams {
    /// The channel id (a UUID) returned by create_channel.
    pub channel_id: String,
    /// The channel's publish token (starts with "chp_"), returned once by create_channel.
    pub publish_token: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishParams {
    /// The channel id (a UUID).
    pub channel_id: String,
    /// The channel's publish token (starts with "chp_").
    pub publish_token: String,
    /// The message as UTF-8 text. Give exactly one of `payload` and `payload_base64`.
    pub payload: Option<String>,
    /// The message as base64 bytes, for binary payloads.
    pub payload_base64: Option<String>,
    /// MIME type for readers. Default "text/plain; charset=utf-8" for `payload`, "application/octet-stream" for `payload_base64`.
    pub content_type: Option<String>,
    /// Seconds until the message expires: 1 to 172800 (48 hours, the default).
    pub ttl_seconds: Option<i64>,
    /// Retrying with the same key returns the first message instead of publishing twice.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGrantParams {
    /// The private channel's id (a UUID).
    pub channel_id: String,
    /// The channel's publish token (starts with "chp_").
    pub publish_token: String,
    /// A name for the reader, e.g. "dashboard" (at most 200 characters).
    pub label: Option<String>,
    /// Lifetime in seconds (1 to 31536000); omit for a grant that lasts until revoked.
    pub expires_in_seconds: Option<i64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeGrantParams {
    /// The channel id (a UUID).
    pub channel_id: String,
    /// The channel's publish token (starts with "chp_").
    pub publish_token: String,
    /// The grant id (a UUID) from create_read_grant or get_channel.
    pub grant_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    /// The channel id (a UUID).
    pub channel_id: String,
    /// A read token (starts with "chr_"); required for private channels.
    pub read_token: Option<String>,
    /// Return messages after this message id (the `next_cursor` of the previous call); omit to start with the oldest kept message.
    pub after: Option<String>,
    /// How many messages at most: 1 to 500, default 50.
    pub limit: Option<u64>,
}

/// One message as an agent reads it. Its payload appears once: as
/// `payload_text` or as `payload_base64`, never both.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ReadMessage {
    /// Message id (UUIDv7); also a cursor.
    pub id: String,
    pub channel_id: String,
    /// The payload as text: given when the content type is textual (text/*, JSON, XML, YAML,
    /// JavaScript, form data) and the bytes are valid UTF-8. Otherwise `payload_base64` is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_text: Option<String>,
    /// The payload bytes in base64 (standard alphabet, padded): given when `payload_text` is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    pub content_type: String,
    pub created_at: String,
    pub expires_at: String,
}

/// The result of read_channel_messages.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ReadResult {
    pub messages: Vec<ReadMessage>,
    /// Pass as `after` to continue; the cursor you gave when nothing new arrived.
    pub next_cursor: Option<String>,
    /// Whether more messages are waiting right now.
    pub has_more: bool,
    /// The page stopped before `limit` because its messages reached the server's byte budget
    /// for one page; more follow: call again with `after` = `next_cursor`.
    pub truncated: bool,
}

/// The result of delete_channel.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Deleted {
    pub channel_id: String,
    pub deleted: bool,
}
