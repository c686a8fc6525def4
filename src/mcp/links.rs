//! Tool results link to the channel they concern: a `resource_link` content
//! item to `chantra://channels/{channel_id}` (the channel as an MCP resource,
//! resources.rs), and, when the result carries the channel's reader URL, a
//! second link to that URL for people (and plain HTTP clients).
//!
//! Added after the tool ran, in one place, so no tool repeats it: the
//! channel is the one the result names (`channel_id`, as create_channel
//! returns it) or else the one the call named.

use rmcp::model::{CallToolResponse, ContentBlock, JsonObject, Resource};
use serde_json::Value;

/// The scheme and path prefix of a channel's resource URI.
pub const CHANNEL_URI_PREFIX: &str = "chantra://channels/";

/// The resource URI of a channel (without a read token).
pub fn channel_uri(channel_id: &str) -> String {
    format!("{CHANNEL_URI_PREFIX}{channel_id}")
}

/// Appends the links to a successful result of `tool`. Nothing for
/// delete_channel (its resource is gone) or a failed call.
pub fn link_channel(tool: &str, arguments: Option<&JsonObject>, response: &mut CallToolResponse) {
    let CallToolResponse::Complete(result) = response else { return };
    if result.is_error == Some(true) || tool == "delete_channel" {
        return;
    }
    let structured = result.structured_content.as_ref();
    let from_result = structured.and_then(|s| s.get("channel_id")).and_then(Value::as_str);
    let from_call = arguments.and_then(|a| a.get("channel_id")).and_then(Value::as_str);
    let Some(channel_id) = from_result.or(from_call).map(str::to_owned) else { return };
    let reader_url = structured.and_then(|s| s.get("url")).and_then(Value::as_str).map(str::to_owned);

    let resource = Resource::new(channel_uri(&channel_id), format!("channel {channel_id}"))
        .with_title("Chantra channel")
        .with_description(
            "The channel as an MCP resource: resources/read gives its newest messages and state, \
             resources/subscribe notifies on each publish. Private channels: add ?read_token=... to the URI.",
        )
        .with_mime_type("application/json");
    result.content.push(ContentBlock::resource_link(resource));
    if let Some(url) = reader_url {
        let reader = Resource::new(url, format!("channel {channel_id} reader URL"))
            .with_title("Channel reader URL (Server-Sent Events)")
            .with_description("Follow the channel over HTTP: GET this URL as Server-Sent Events.")
            .with_mime_type("text/event-stream");
        result.content.push(ContentBlock::resource_link(reader));
    }
}
