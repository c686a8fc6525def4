//! Server-Sent Events frames, encoded once per message and shared by every
//! subscriber as `Bytes`. A message's data is compact JSON, which never
//! contains a raw newline, so each event has exactly one `data:` line.

use bytes::Bytes;
use serde::Serialize;

use crate::service::views::MessageEvent;

pub const KEEPALIVE: &[u8] = b": keep-alive\n\n";

pub fn retry(millis: u64) -> Bytes {
    Bytes::from(format!("retry: {millis}\n\n"))
}

pub fn message(event: &MessageEvent) -> Bytes {
    // MessageEvent is strings and numbers only: serialising cannot fail.
    let data = serde_json::to_string(event).unwrap_or_default();
    Bytes::from(format!("id: {}\nevent: message\ndata: {data}\n\n", event.id))
}

#[derive(Serialize)]
struct GapData<'a> {
    /// The oldest message still kept; the replay starts there.
    oldest_available_id: &'a str,
    /// The cursor the reader asked to resume after.
    requested_after: &'a str,
}

/// Said before a replay when messages after the reader's cursor are gone.
pub fn gap(oldest_available: &str, requested_after: &str) -> Bytes {
    let data =
        serde_json::to_string(&GapData { oldest_available_id: oldest_available, requested_after }).unwrap_or_default();
    Bytes::from(format!("event: gap\ndata: {data}\n\n"))
}

/// The last event of a stream whose channel was deleted. The data is built
/// by serde_json, not by hand, so it stays valid JSON whatever the text.
pub fn deleted(channel_id: &str) -> Bytes {
    Bytes::from(format!("event: deleted\ndata: {}\n\n", serde_json::json!({ "channel_id": channel_id })))
}

/// The last event of a stream whose read grant was revoked or expired.
pub fn revoked(reason: &str) -> Bytes {
    Bytes::from(format!("event: revoked\ndata: {}\n\n", serde_json::json!({ "reason": reason })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_frame_is_one_event() {
        let event = MessageEvent {
            id: "0193a0e8-0000-7000-8000-000000000001".into(),
            channel_id: "0193a0e8-0000-7000-8000-000000000002".into(),
            payload: "bGluZQpicmVhaw==".into(),
            content_type: "text/plain".into(),
            created_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            expires_at: chrono::DateTime::from_timestamp(60, 0).unwrap(),
        };
        let frame = String::from_utf8(message(&event).to_vec()).unwrap();
        assert!(frame.starts_with("id: 0193a0e8-0000-7000-8000-000000000001\nevent: message\ndata: {"));
        assert!(frame.ends_with("}\n\n"));
        assert_eq!(frame.matches('\n').count(), 4, "{frame}");
    }
}
