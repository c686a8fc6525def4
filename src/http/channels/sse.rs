//! Server-Sent Events frames: how the service's stream events
//! ([`StreamEvent`]) become bytes on the wire of `text/event-stream` reads
//! (the handlers are in [`super::read`]). A live message is encoded once
//! per process and its frame shared by every subscriber
//! ([`LiveMessage::encoded`]). A message's data is the message object of
//! [`super::message`], which never contains a raw line break, so each event
//! has exactly one `data:` line.

use bytes::Bytes;
use futures::Stream;
use serde::Serialize;

use chantra_core::db::entity::message;
use chantra_core::fanout::{Framing, LiveMessage};
use chantra_core::service::{Gap, ReaderStream, StreamEvent};

use super::message::{capacity_hint, write_object};

/// How a stream's events become bytes: SSE frames or NDJSON lines.
pub trait Frames: Send + 'static {
    /// Written before the first event (SSE's `retry:` hint), if anything.
    fn preamble(&self) -> Option<Bytes>;
    fn encode(&self, event: StreamEvent, channel_id: &str) -> Bytes;
}

/// SSE framing, with the `retry:` hint it starts with.
pub struct EventStream {
    pub retry_ms: u64,
}

impl Frames for EventStream {
    fn preamble(&self) -> Option<Bytes> {
        Some(retry(self.retry_ms))
    }

    fn encode(&self, event: StreamEvent, channel_id: &str) -> Bytes {
        encode(event, channel_id)
    }
}

/// The frames of a stream response: the framing's preamble, then the
/// reader's events. `guard` (e.g. the client's stream slot) is released
/// when the stream ends.
pub fn framed_stream<F: Frames, G: Send + 'static>(
    stream: ReaderStream,
    frames: F,
    guard: G,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let channel = stream.reader().channel.to_string();
    let preamble = frames.preamble();
    // Boxed: the state moves into each event's future and back out, and a
    // pointer moves faster than the reader's stream.
    let state = Box::new(Framed { stream, frames, preamble, channel, _guard: guard });
    futures::stream::unfold(state, |mut state| async {
        let bytes = match state.preamble.take() {
            Some(preamble) => preamble,
            None => {
                let event = state.stream.next().await?;
                state.frames.encode(event, &state.channel)
            }
        };
        Some((bytes, state))
    })
}

struct Framed<F, G> {
    stream: ReaderStream,
    frames: F,
    /// Sent before the first event, then `None`.
    preamble: Option<Bytes>,
    /// The channel's id, which a `deleted` frame names.
    channel: String,
    _guard: G,
}

/// One event's frame.
pub fn encode(event: StreamEvent, channel_id: &str) -> Bytes {
    match event {
        StreamEvent::Live(live) => live.encoded(Framing::EventStream, live_message),
        StreamEvent::Replayed { row, payload } => message(&row, &payload),
        StreamEvent::Gap(gap) => gap_frame(&gap),
        StreamEvent::KeepAlive => Bytes::from_static(KEEPALIVE),
        StreamEvent::Deleted => deleted(channel_id),
        StreamEvent::Revoked(why) => revoked(why.as_str()),
    }
}

fn live_message(live: &LiveMessage) -> Bytes {
    message(&live.row, &live.payload)
}

pub const KEEPALIVE: &[u8] = b": keep-alive\n\n";

pub fn retry(millis: u64) -> Bytes {
    Bytes::from(format!("retry: {millis}\n\n"))
}

/// A message's frame, its payload written straight into it (one buffer,
/// sized up front): a replay holds the payload and its frame, never an
/// intermediate base64 or JSON string too.
pub fn message(row: &message::Model, payload: &[u8]) -> Bytes {
    let id = row.id.to_string();
    let mut out = Vec::with_capacity(capacity_hint(row, payload) + id.len() + 32);
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\nevent: message\ndata: ");
    write_object(&mut out, "", row, payload);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[derive(Serialize)]
pub(crate) struct GapData<'a> {
    /// The oldest message still kept after the cursor; the replay starts
    /// there (`null`: none is left, the replay is empty).
    pub oldest_available_id: Option<&'a str>,
    /// The cursor the reader asked to resume after.
    pub requested_after: &'a str,
}

/// The `gap` object's JSON (`{"oldest_available_id","requested_after"}`).
pub(crate) fn gap_json(gap: &Gap) -> String {
    let oldest = gap.oldest_available.map(|id| id.to_string());
    let requested = gap.requested_after.to_string();
    let data = GapData { oldest_available_id: oldest.as_deref(), requested_after: &requested };
    serde_json::to_string(&data).unwrap_or_default()
}

/// Said before a replay when messages after the reader's cursor are gone;
/// `oldest_available_id: null` when nothing is left to replay.
pub fn gap_frame(gap: &Gap) -> Bytes {
    Bytes::from(format!("event: gap\ndata: {}\n\n", gap_json(gap)))
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
pub(crate) mod frame_tests {
    use super::*;
    use chantra_core::domain::{ChannelId, MessageId};

    /// A stored message with fixed ids and times (snapshots stay stable).
    pub(crate) fn row(content_type: &str, payload: &[u8]) -> message::Model {
        let uuid = |n: u128| uuid::Uuid::from_u128(0x0193a0e8_0000_7000_8000_000000000000 | n);
        message::Model {
            id: MessageId::from_uuid(uuid(1)),
            channel_id: ChannelId::from_uuid(uuid(2)),
            payload_object_key: String::new(),
            payload_size: payload.len() as i64,
            content_type: content_type.into(),
            created_at: chrono::DateTime::from_timestamp(1_764_000_000, 123_000_000).unwrap(),
            expires_at: chrono::DateTime::from_timestamp(1_764_172_800, 123_000_000).unwrap(),
            idempotency_key: None,
            payload_inline: false,
        }
    }

    fn frame(content_type: &str, payload: &[u8]) -> String {
        String::from_utf8(message(&row(content_type, payload), payload).to_vec()).unwrap()
    }

    #[test]
    fn message_frames_pin_each_encoding() {
        insta::assert_snapshot!(
            "json",
            frame("application/json", b"{\n  \"temp\": 21.50,\n  \"unit\": \"\xc2\xb0C\"\n}\n")
        );
        insta::assert_snapshot!(
            "text",
            frame("text/plain; charset=utf-8", "line one\nline \"two\"\r\nend é".as_bytes())
        );
        insta::assert_snapshot!("text_not_utf8", frame("text/plain", b"caf\xe9"));
        insta::assert_snapshot!("binary", frame("application/octet-stream", &[0, 1, 2, 0xfe, 0xff]));
    }

    #[test]
    fn a_message_frame_is_one_event() {
        for (content_type, payload) in [
            ("text/plain", &b"line\nbreak\r\n\n"[..]),
            ("application/json", b"{\"a\":\n[1,\n2]}"),
            ("application/octet-stream", &[0xff; 1000]),
            ("text/plain", b""),
        ] {
            let frame = frame(content_type, payload);
            assert!(frame.starts_with("id: 0193a0e8-0000-7000-8000-000000000001\nevent: message\ndata: {"));
            assert!(frame.ends_with("}\n\n"));
            assert_eq!(frame.matches('\n').count(), 4, "{frame}");
            assert!(!frame.contains('\r'), "{frame}");
            let data: serde_json::Value =
                serde_json::from_str(frame.lines().nth(2).unwrap().strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data.as_object().unwrap().len(), 7, "{data}");
        }
    }

    #[test]
    fn a_gap_to_nothing_says_null() {
        let gap = Gap { oldest_available: None, requested_after: MessageId::MIN };
        let frame = String::from_utf8(gap_frame(&gap).to_vec()).unwrap();
        assert_eq!(
            frame,
            "event: gap\ndata: {\"oldest_available_id\":null,\"requested_after\":\"00000000-0000-0000-0000-000000000000\"}\n\n"
        );
    }
}
