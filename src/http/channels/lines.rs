//! NDJSON lines (`application/x-ndjson`): the same stream as SSE, one JSON
//! object per line, named by its `event` field —
//!
//! ```text
//! {"event":"message","id":"…","channel_id":"…","content_type":"…","encoding":"…","payload":…,"created_at":"…","expires_at":"…"}
//! {"event":"gap","oldest_available_id":"…"|null,"requested_after":"…"}
//! {"event":"deleted","channel_id":"…"}
//! {"event":"revoked","reason":"revoked"|"expired"}
//! {"event":"keepalive"}
//! ```
//!
//! A reader resumes after the `id` of the last message line it handled
//! (`Last-Event-ID` header or `?last_event_id=`). A live message's line is
//! encoded once per process, like its SSE frame.

use bytes::Bytes;

use chantra_core::db::entity::message;
use chantra_core::fanout::{Framing, LiveMessage};
use chantra_core::service::{Gap, StreamEvent};

use super::message::{capacity_hint, write_object};
use super::sse::{Frames, gap_json};

pub const KEEPALIVE: &[u8] = b"{\"event\":\"keepalive\"}\n";

/// NDJSON framing: no preamble.
pub struct JsonLines;

impl Frames for JsonLines {
    fn preamble(&self) -> Option<Bytes> {
        None
    }

    fn encode(&self, event: StreamEvent, channel_id: &str) -> Bytes {
        match event {
            StreamEvent::Live(live) => live.encoded(Framing::JsonLines, live_message),
            StreamEvent::Replayed { row, payload } => message(&row, &payload),
            StreamEvent::Gap(gap) => gap_line(&gap),
            StreamEvent::KeepAlive => Bytes::from_static(KEEPALIVE),
            StreamEvent::Deleted => line(serde_json::json!({ "event": "deleted", "channel_id": channel_id })),
            StreamEvent::Revoked(why) => line(serde_json::json!({ "event": "revoked", "reason": why.as_str() })),
        }
    }
}

fn live_message(live: &LiveMessage) -> Bytes {
    message(&live.row, &live.payload)
}

/// A message's line, its payload written straight into it.
pub fn message(row: &message::Model, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(capacity_hint(row, payload) + 24);
    write_object(&mut out, "\"event\":\"message\",", row, payload);
    out.push(b'\n');
    Bytes::from(out)
}

pub fn gap_line(gap: &Gap) -> Bytes {
    // `{"oldest_available_id":…}` with the event name put first.
    let data = gap_json(gap);
    Bytes::from(format!("{{\"event\":\"gap\",{}\n", &data[1..]))
}

fn line(value: serde_json::Value) -> Bytes {
    let mut out = value.to_string().into_bytes();
    out.push(b'\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::channels::sse::frame_tests::row;
    use chantra_core::domain::MessageId;
    use serde_json::{Value, json};

    fn parse(bytes: &Bytes) -> Value {
        let text = std::str::from_utf8(bytes).unwrap();
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1, "{text:?}");
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn each_event_is_one_line() {
        let payload = b"{\n \"temp\": 21.5 }";
        let line = parse(&message(&row("application/json", payload), payload));
        assert_eq!(line["event"], "message");
        assert_eq!(line["encoding"], "json");
        assert_eq!(line["payload"], json!({"temp": 21.5}));
        assert_eq!(line.as_object().unwrap().len(), 8);

        let gap = Gap { oldest_available: None, requested_after: MessageId::MIN };
        assert_eq!(
            parse(&gap_line(&gap)),
            json!({"event": "gap", "oldest_available_id": null, "requested_after": MessageId::MIN.to_string()})
        );
        let frames = JsonLines;
        assert_eq!(
            parse(&frames.encode(StreamEvent::Deleted, "c\"\n")),
            json!({"event": "deleted", "channel_id": "c\"\n"})
        );
        assert_eq!(
            parse(&frames.encode(StreamEvent::Revoked(chantra_core::service::Revocation::Expired), "c")),
            json!({"event": "revoked", "reason": "expired"})
        );
        assert_eq!(parse(&frames.encode(StreamEvent::KeepAlive, "c")), json!({"event": "keepalive"}));
    }
}
