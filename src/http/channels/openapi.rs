//! The channels role's OpenAPI 3.1 document (`GET /openapi.json`, also
//! under `/channel`): the read routes and their three forms — SSE, NDJSON,
//! poll. The frames are written by hand for speed (`message.rs`), so the
//! shapes here are schema-only types, checked against the writer by a test.

use axum::Json;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::message::Encoding;
use crate::http::error::ErrorBody;

/// A message as readers get it: SSE `data` of a `message` event, an item of
/// a poll's `messages`, an NDJSON line (with `"event":"message"` first).
#[derive(Serialize, ToSchema)]
pub struct MessageObject {
    /// UUIDv7; also the cursor (Last-Event-ID).
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = Uuid)]
    pub channel_id: String,
    pub content_type: String,
    /// How `payload` carries the bytes. A client that finds no `encoding`
    /// (an older server) reads `payload` as base64.
    pub encoding: Encoding,
    /// `json`: the published JSON document itself (minified; numbers as
    /// sent). `text`: a string. `base64`: standard padded base64.
    pub payload: serde_json::Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Said when messages after the cursor are gone (expired, purged, or
/// beyond SSE_REPLAY_MAX); what follows starts at `oldest_available_id`.
#[derive(Serialize, ToSchema)]
pub struct GapObject {
    /// `null`: nothing after the cursor is kept.
    #[schema(format = Uuid)]
    pub oldest_available_id: Option<String>,
    #[schema(format = Uuid)]
    pub requested_after: String,
}

/// The answer of a poll.
#[derive(Serialize, ToSchema)]
pub struct PollPage {
    /// Oldest first: at most `limit`, and at most PAGE_MAX_BYTES of payloads (at least one message).
    pub messages: Vec<MessageObject>,
    /// Pass as `last_event_id` (or Last-Event-ID) to get what follows: the
    /// last message's id, else the cursor given (`null` when none was).
    #[schema(format = Uuid)]
    pub next_cursor: Option<String>,
    /// More messages follow right now: poll again at once.
    pub has_more: bool,
    /// Messages after the cursor that are gone, if any.
    pub gap: Option<GapObject>,
}

const READ_DESCRIPTION: &str = "Reads the channel in the form the request asks for. \
    **SSE** (default; `Accept: text/event-stream`): `retry:`, then events `message` (id = message id, data = message object), \
    `gap` (data = gap object), `deleted` and `revoked` (last events) and `: keep-alive` comments. \
    **NDJSON** (`Accept: application/x-ndjson`, or the `/json` path): one JSON object per line: \
    `{\"event\":\"message\",…message object}`, `{\"event\":\"gap\",…gap object}`, `{\"event\":\"deleted\",\"channel_id\"}`, \
    `{\"event\":\"revoked\",\"reason\":\"revoked\"|\"expired\"}`, `{\"event\":\"keepalive\"}` every SSE_KEEPALIVE_SECS. \
    **Poll** (`?poll=1`, or `Accept: application/json` not preferring an event stream): the messages after the cursor as one \
    JSON document, then the response ends; with no cursor it starts at the oldest message kept. \
    Cursor: `Last-Event-ID` header, `?last_event_id=` or `?since=<unix seconds>`; a stream resumes after it with no gap or \
    duplicate, and says `gap` when messages after it are gone (at most SSE_REPLAY_MAX are replayed).";

/// Parameters every read route takes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ReadParams {
    /// Resume after this message id (as the Last-Event-ID header).
    #[param(format = Uuid)]
    last_event_id: Option<String>,
    /// Resume from this Unix time (whole seconds).
    since: Option<u64>,
    /// `1`: answer one poll page (application/json) and end.
    poll: Option<String>,
    /// Poll page size: 1 to SSE_REPLAY_MAX (default 100).
    #[param(minimum = 1)]
    limit: Option<u64>,
}

/// Private channels' credentials (besides X-Read-Token / Authorization: Bearer).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PrivateParams {
    /// The read token, for clients that cannot send headers (EventSource).
    token: Option<String>,
}

macro_rules! read_path {
    ($name:ident, $path:literal, $id:literal) => {
        #[utoipa::path(
            get, path = $path, tag = "reading", operation_id = $id, description = READ_DESCRIPTION,
            params(
                ("channel_id" = String, Path, format = Uuid, description = "Channel id (UUID)"),
                ("Last-Event-ID" = Option<String>, Header, description = "Resume after this message id"),
                ("Accept" = Option<String>, Header, description = "text/event-stream (default), application/x-ndjson, or application/json (a poll)"),
                ReadParams,
            ),
            responses(
                (status = 200, description = "The stream, or a poll page", content(
                    (String = "text/event-stream"),
                    (MessageObject = "application/x-ndjson"),
                    (PollPage = "application/json"),
                )),
                (status = 400, description = "Malformed id, cursor (`invalid_cursor`) or limit (`invalid_limit`)", body = ErrorBody),
                (status = 401, description = "Private channels: missing or wrong read token, grant revoked (`grant_revoked`) or expired (`grant_expired`)", body = ErrorBody),
                (status = 404, description = "No such channel with this visibility", body = ErrorBody),
                (status = 429, description = "Too many streams from this client (`too_many_streams`) or rate limited", body = ErrorBody),
                (status = 503, description = "No room for more streams (`server_busy`), backend unavailable, or a poll that timed out", body = ErrorBody),
            )
        )]
        #[allow(dead_code)]
        fn $name() {}
    };
}

read_path!(public, "/v1/public/{channel_id}", "read_public");
read_path!(private, "/v1/private/{channel_id}", "read_private");
read_path!(public_lines, "/v1/public/{channel_id}/json", "read_public_ndjson");
read_path!(private_lines, "/v1/private/{channel_id}/json", "read_private_ndjson");

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chantra channels",
        description = "Read channels: Server-Sent Events, NDJSON, or a poll, with one cursor. Private channels need a read token \
            (X-Read-Token, Authorization: Bearer, or ?token=). Every path also works under /channel (the URLs the REST API returns). \
            Errors are {\"error\":{\"code\",\"message\"}}.",
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(public, private, public_lines, private_lines),
    tags((name = "reading", description = "Read a channel")),
)]
pub struct ChannelsDoc;

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ChannelsDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::channels::sse::frame_tests::row;

    /// The documented message object has exactly the fields the writer writes, in order.
    #[test]
    fn schema_matches_the_writer() {
        let mut out = Vec::new();
        super::super::message::write_object(&mut out, "", &row("text/plain", b"x"), b"x");
        let written: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&out).unwrap();
        let doc = serde_json::to_value(ChannelsDoc::openapi()).unwrap();
        let schema = &doc["components"]["schemas"]["MessageObject"]["properties"];
        let documented: Vec<&String> = schema.as_object().unwrap().keys().collect();
        let mut written_keys: Vec<&String> = written.keys().collect();
        let mut documented_sorted = documented.clone();
        written_keys.sort();
        documented_sorted.sort();
        assert_eq!(written_keys, documented_sorted);
        assert_eq!(doc["paths"].as_object().unwrap().len(), 4);
    }
}
