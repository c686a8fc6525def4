//! Tool arguments. Field doc comments become the JSON-schema descriptions an
//! agent reads, so they say exactly what to pass.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use chantra_core::domain::Visibility;
use chantra_core::error::AppError;

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
    /// Where to start without `after`: "oldest" (the default) or "latest" (the newest `limit`
    /// messages, oldest first: for joining a busy channel). Not with `after` or `since`.
    pub from: Option<ReadFrom>,
    /// Start with the messages published at or after this time: RFC 3339 (e.g.
    /// "2026-12-01T09:30:00Z") or Unix seconds (e.g. "1764581400"). Not with `after` or `from`.
    pub since: Option<String>,
}

/// Where read_channel_messages starts without a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub enum ReadFrom {
    Oldest,
    Latest,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// The channel id (a UUID).
    pub channel_id: String,
    /// A read token (starts with "chr_"); required for private channels.
    pub read_token: Option<String>,
    /// Wait for messages after this message id: the `next_cursor` of the previous call (or of
    /// read_channel_messages). Omit to wait only for messages published from now on.
    pub after: Option<String>,
    /// How long to wait for a message, in seconds: from 1 to the server's maximum (120 unless
    /// configured otherwise). Default 50, below common client tool timeouts.
    pub timeout_seconds: Option<u64>,
    /// The most messages one call returns: 1 to 500, default 50.
    pub max_messages: Option<u64>,
}

/// Messages after the cursor that are gone (expired or purged) before they were read.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GapReport {
    /// The cursor the call resumed after.
    pub requested_after: String,
    /// The oldest message still kept after it, where reading went on; absent when none is left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_available: Option<String>,
}

/// The result of wait_for_messages.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WaitResult {
    /// The messages after the cursor, oldest first: at least one unless `timed_out` or the wait ended.
    pub messages: Vec<ReadMessage>,
    /// Always given: pass it as `after` to the next call to miss nothing and see nothing twice.
    pub next_cursor: String,
    /// No message arrived within `timeout_seconds`: call again with `after` = `next_cursor`.
    pub timed_out: bool,
    /// More messages are waiting now (the call stopped at `max_messages` or at the server's byte
    /// budget for one answer): call again at once.
    pub has_more: bool,
    /// Messages after your cursor expired or were purged before you read them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap: Option<GapReport>,
    /// The channel was deleted: stop waiting on it.
    pub channel_deleted: bool,
    /// Set when the read token stopped working during the wait: "revoked" or "expired". Stop
    /// waiting with this token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_ended: Option<String>,
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

/// Tool arguments that always reach the tool: rmcp's `Parameters<T>` turns
/// arguments that do not fit `T` into a JSON-RPC protocol error carrying
/// serde's text, which agents read as a transport failure. Wrapped in
/// `Args`, the mistake reaches the tool, which answers it as a tool error
/// with the REST API's code for a body that does not fit (`invalid_json`)
/// and a message naming the argument. The JSON schema is `T`'s.
pub struct Args<T>(Result<T, AppError>);

impl<T> Args<T> {
    /// The arguments, or the tool error that explains why they do not fit.
    pub fn parse(self) -> Result<T, AppError> {
        self.0
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Args<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(Args(serde_path_to_error::deserialize(value).map_err(argument_error)))
    }
}

impl<T: JsonSchema> JsonSchema for Args<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }

    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// Says which argument is wrong and what was expected, in words an agent
/// can act on (serde names Rust types: "expected i64").
fn argument_error(err: serde_path_to_error::Error<serde_json::Error>) -> AppError {
    let path = err.path().to_string();
    let mut detail = err.into_inner().to_string();
    for (rust, words) in [
        ("expected i64", "expected an integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected struct ", "expected an object "),
    ] {
        detail = detail.replace(rust, words);
    }
    let message = if path == "." {
        format!("the arguments do not fit this tool: {detail}")
    } else {
        format!("argument {path}: {detail}")
    };
    AppError::bad_request("invalid_json", message)
}

/// JSON-schema formats defined by the JSON Schema standard (draft 2020-12)
/// that schemas here use; others (schemars' "int64", "uint64", ...) make
/// Ajv-based clients refuse the schema or the argument.
const STANDARD_FORMATS: &[&str] = &["date-time", "date", "time", "duration", "uuid", "uri", "email"];

/// Rewrites a tool's input schema so every client can fill it: an optional
/// argument is its plain type (`"type": "integer"`, not `["integer",
/// "null"]`: being absent from `required` already says it is optional), and
/// only standard formats remain.
pub fn plain_input_schema(schema: &mut serde_json::Map<String, serde_json::Value>) {
    use serde_json::Value;
    if let Some(Value::Array(types)) = schema.get("type") {
        let kept: Vec<Value> = types.iter().filter(|t| t.as_str() != Some("null")).cloned().collect();
        let replacement = match kept.len() {
            1 => kept.into_iter().next().unwrap_or(Value::Null),
            _ => Value::Array(kept),
        };
        schema.insert("type".into(), replacement);
    }
    // `Option<Enum>`: anyOf [the enum, {"type": "null"}] → the enum.
    if let Some(Value::Array(branches)) = schema.get("anyOf") {
        let kept: Vec<Value> =
            branches.iter().filter(|b| b.get("type").and_then(Value::as_str) != Some("null")).cloned().collect();
        if kept.len() == 1
            && let Some(Value::Object(only)) = kept.into_iter().next()
        {
            schema.remove("anyOf");
            for (key, value) in only {
                schema.entry(key).or_insert(value);
            }
        }
    }
    if let Some(Value::Array(values)) = schema.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
    plain_formats(schema);
    for (key, value) in schema.iter_mut() {
        match value {
            // Maps of names to schemas: each value is a schema, the map is not
            // (a property named "type" must not be taken for a keyword).
            Value::Object(named) if matches!(key.as_str(), "properties" | "$defs" | "definitions") => {
                named.values_mut().filter_map(Value::as_object_mut).for_each(plain_input_schema)
            }
            Value::Object(child) => plain_input_schema(child),
            Value::Array(items) => items.iter_mut().filter_map(Value::as_object_mut).for_each(plain_input_schema),
            _ => {}
        }
    }
}

/// Removes non-standard formats, here and below (for output schemas, whose
/// nullable fields stay nullable: they may be null).
pub fn plain_formats(schema: &mut serde_json::Map<String, serde_json::Value>) {
    use serde_json::Value;
    if schema.get("format").and_then(Value::as_str).is_some_and(|f| !STANDARD_FORMATS.contains(&f)) {
        schema.remove("format");
    }
    for value in schema.values_mut() {
        match value {
            Value::Object(child) => plain_formats(child),
            Value::Array(items) => items.iter_mut().filter_map(Value::as_object_mut).for_each(plain_formats),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn optional_arguments_become_plain_types_with_standard_formats() {
        let mut schema = json!({
            "type": "object",
            "properties": {
                "ttl_seconds": { "type": ["integer", "null"], "format": "int64" },
                "type": { "type": "string" },
                "from": { "anyOf": [{ "enum": ["oldest", "latest"], "type": "string" }, { "type": "null" }] },
                "at": { "type": ["string", "null"], "format": "date-time" }
            }
        });
        plain_input_schema(schema.as_object_mut().unwrap());
        assert_eq!(
            schema,
            json!({
                "type": "object",
                "properties": {
                    "ttl_seconds": { "type": "integer" },
                    "type": { "type": "string" },
                    "from": { "enum": ["oldest", "latest"], "type": "string" },
                    "at": { "type": "string", "format": "date-time" }
                }
            })
        );
    }
}
