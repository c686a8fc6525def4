//! SSE frames (src/http/channels/sse.rs) read back by an independent SSE parser,
//! `eventsource-stream`, which follows the WHATWG event-stream rules (CR, LF
//! and CRLF end lines; `data:` lines join with LF; one space after the colon
//! is dropped; a blank line dispatches).
//!
//! A message's `data` is a compact JSON object whose payload is the JSON
//! document itself (minified), a JSON string, or standard base64, as its
//! `encoding` says — so payloads of any bytes (line breaks of every kind,
//! blank lines, NUL, invalid UTF-8, any Unicode, pretty-printed JSON) and
//! content types with line breaks cannot break the framing. The properties
//! check exactly that: every frame is one event whose `id`, `event` and JSON
//! `data` are what the encoder was given, the payload decodes to the
//! original bytes (the same JSON value, for `json`), and a whole stream of
//! frames cut into arbitrary chunks (even inside a UTF-8 character) parses
//! to the same events in the same order.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chantra::http::channels::sse as frame;
use chantra_core::db::entity::message;
use chantra_core::domain::{ChannelId, MessageId};
use chrono::{DateTime, Utc};
use eventsource_stream::{Event, Eventsource as _};
use futures::StreamExt as _;
use proptest::prelude::*;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::cases;

/// Parses `chunks` as one event stream, as a client receiving them in that order would.
fn parse(chunks: Vec<Vec<u8>>) -> Result<Vec<Event>, String> {
    let stream = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::convert::Infallible>)).eventsource();
    futures::executor::block_on(stream.collect::<Vec<_>>())
        .into_iter()
        .map(|item| item.map_err(|e| e.to_string()))
        .collect()
}

fn parse_one(frame: &[u8]) -> Result<Vec<Event>, String> {
    parse(vec![frame.to_vec()])
}

/// Payload bytes biased towards what breaks line-based framing, and JSON
/// documents laid out over several lines.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![3 => pieces(), 1 => json_document()]
}

fn json_document() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        Just(json!(null)),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        Just(json!("line\nbreak \u{2028} \"quoted\" \\ end")),
    ];
    let value = leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    });
    (value, any::<bool>()).prop_map(|(value, pretty)| {
        if pretty { serde_json::to_vec_pretty(&value).unwrap() } else { serde_json::to_vec(&value).unwrap() }
    })
}

fn pieces() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"data: x\n\nid: y\n\n".to_vec()),
        Just(b"\0".to_vec()),
        Just(b": comment\n".to_vec()),
        Just("\u{feff}\u{2028}\u{85}é😀".as_bytes().to_vec()),
        any::<String>().prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..16),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

/// Content types as stored: REST checks them, but the frame must not depend on it.
fn content_type() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,10}/[a-z0-9.+-]{1,10}(; charset=utf-8)?",
        any::<String>(),
        Just("text/plain\r\n\r\nid: 1".into()),
        Just("application/json".into()),
        Just("application/vnd.x+json; charset=utf-8".into()),
        Just("text/plain; charset=utf-8".into()),
        Just("image/svg+xml".into()),
    ]
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    // Years 1 to 9999: what RFC 3339 can write.
    (-62_135_596_800i64..=253_402_300_799, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).expect("in range"))
}

prop_compose! {
    fn stored_message()(
        id in any::<u128>(),
        channel in any::<u128>(),
        payload in payload(),
        content_type in content_type(),
        created_at in time(),
        expires_at in time(),
    ) -> (message::Model, Vec<u8>) {
        let row = message::Model {
            id: MessageId::from_uuid(Uuid::from_u128(id)),
            channel_id: ChannelId::from_uuid(Uuid::from_u128(channel)),
            payload_object_key: String::new(),
            payload_size: payload.len() as i64,
            content_type,
            created_at,
            expires_at,
            idempotency_key: None,
            payload_inline: false,
        };
        (row, payload)
    }
}

/// What a reader must get back from one message frame.
fn check_message(event: &Event, row: &message::Model, payload: &[u8]) -> Result<(), TestCaseError> {
    prop_assert_eq!(&event.event, "message");
    prop_assert_eq!(&event.id, &row.id.as_uuid().hyphenated().to_string());
    prop_assert_eq!(event.retry, None);
    let data: Value = serde_json::from_str(&event.data).map_err(|e| TestCaseError::fail(format!("data: {e}")))?;
    prop_assert_eq!(data.as_object().map(|o| o.len()), Some(7), "{}", data);
    prop_assert_eq!(&data["id"], &json!(row.id.as_uuid().hyphenated().to_string()));
    prop_assert_eq!(&data["channel_id"], &json!(row.channel_id.as_uuid().hyphenated().to_string()));
    prop_assert_eq!(&data["content_type"], &json!(row.content_type));
    match data["encoding"].as_str() {
        Some("json") => {
            let sent: Value = serde_json::from_slice(payload).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&data["payload"], &sent);
        }
        Some("text") => prop_assert_eq!(data["payload"].as_str().map(str::as_bytes), Some(payload)),
        Some("base64") => {
            let decoded = STANDARD
                .decode(data["payload"].as_str().unwrap_or("!"))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(decoded.as_slice(), payload);
        }
        other => prop_assert!(false, "encoding {:?}", other),
    }
    for (field, expected) in [("created_at", row.created_at), ("expires_at", row.expires_at)] {
        let text = data[field].as_str().unwrap_or_default();
        let parsed =
            DateTime::parse_from_rfc3339(text).map_err(|e| TestCaseError::fail(format!("{field} {text}: {e}")))?;
        prop_assert_eq!(parsed, expected, "{}", field);
    }
    Ok(())
}

/// Cuts `bytes` at the given fractions of its length (duplicates and order do not matter).
fn cut(bytes: &[u8], at: &[f64]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = at.iter().map(|f| (f * bytes.len() as f64) as usize).collect();
    points.extend([0, bytes.len()]);
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| bytes[w[0]..w[1]].to_vec()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn a_message_frame_is_one_event_with_the_exact_message((row, payload) in stored_message()) {
        let bytes = frame::message(&row, &payload);
        let text = std::str::from_utf8(&bytes).expect("frames are UTF-8");
        // Three field lines and the blank line: no raw CR, no other line break.
        prop_assert!(text.ends_with("\n\n") && !text.contains('\r'), "{:?}", text);
        prop_assert_eq!(text.matches('\n').count(), 4, "{:?}", text);
        let events = parse_one(&bytes).map_err(TestCaseError::fail)?;
        prop_assert_eq!(events.len(), 1, "{:?}", events);
        check_message(&events[0], &row, &payload)?;
    }

    #[test]
    fn a_frame_is_never_larger_than_its_payload_as_base64(
        (mut row, _) in stored_message(),
        payload in prop_oneof![payload(), json_document(), proptest::collection::vec(0u8..0x20, 0..4096)],
    ) {
        // The hub's ring admits a live message, and a replay reserves its
        // budget, by the payload's base64 size plus this allowance
        // (FRAME_OVERHEAD in chantra-core's service/stream.rs): text that
        // escapes to more than that (control characters, six bytes each)
        // must go as base64, or a frame could be 4.5 times what was reserved.
        row.payload_size = payload.len() as i64;
        let allowance = 320 + serde_json::to_string(&row.content_type).unwrap().len();
        let bound = base64::encoded_len(payload.len(), true).unwrap() + allowance;
        let sse = frame::message(&row, &payload);
        let line = chantra::http::channels::lines::message(&row, &payload);
        prop_assert!(sse.len() <= bound, "SSE frame {} bytes > {bound}", sse.len());
        prop_assert!(line.len() <= bound, "NDJSON line {} bytes > {bound}", line.len());
        check_message(&parse_one(&sse).map_err(TestCaseError::fail)?[0], &row, &payload)?;
    }

    #[test]
    fn a_stream_of_frames_survives_any_chunking(
        messages in proptest::collection::vec(stored_message(), 1..6),
        cuts in proptest::collection::vec(0.0f64..1.0, 0..24),
        retry_ms in any::<u32>(),
        ending in 0..3u8,
    ) {
        let mut stream = frame::retry(u64::from(retry_ms)).to_vec();
        for (row, payload) in &messages {
            stream.extend_from_slice(&frame::message(row, payload));
            stream.extend_from_slice(frame::KEEPALIVE);
        }
        let channel = messages[0].0.channel_id.as_uuid().hyphenated().to_string();
        let (end_name, end_frame) = match ending {
            0 => ("deleted", frame::deleted(&channel)),
            1 => ("revoked", frame::revoked("revoked")),
            _ => ("revoked", frame::revoked("expired")),
        };
        stream.extend_from_slice(&end_frame);

        let whole = parse_one(&stream).map_err(TestCaseError::fail)?;
        let chunked = parse(cut(&stream, &cuts)).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&whole, &chunked);
        // retry and keep-alives dispatch nothing; each message and the ending do.
        prop_assert_eq!(chunked.len(), messages.len() + 1);
        for (event, (row, payload)) in chunked.iter().zip(&messages) {
            check_message(event, row, payload)?;
        }
        let last = chunked.last().unwrap();
        prop_assert_eq!(&last.event, end_name);
        // The ending carries no id of its own: a reconnect resumes after the last message.
        prop_assert_eq!(&last.id, &messages.last().unwrap().0.id.as_uuid().hyphenated().to_string());
        let data: Value = serde_json::from_str(&last.data).map_err(|e| TestCaseError::fail(e.to_string()))?;
        match ending {
            0 => prop_assert_eq!(data, json!({"channel_id": channel})),
            1 => prop_assert_eq!(data, json!({"reason": "revoked"})),
            _ => prop_assert_eq!(data, json!({"reason": "expired"})),
        }
    }

    #[test]
    fn retry_frames_carry_the_number(millis in any::<u64>()) {
        let bytes = frame::retry(millis);
        prop_assert_eq!(std::str::from_utf8(&bytes).unwrap(), format!("retry: {millis}\n\n"));
        // A retry alone dispatches no event (it has no data).
        prop_assert_eq!(parse_one(&bytes).map_err(TestCaseError::fail)?, vec![]);
    }

    #[test]
    fn gap_frames_carry_both_cursors(oldest in proptest::option::of(any::<u128>()), after in any::<u128>()) {
        let gap = chantra_core::service::Gap {
            oldest_available: oldest.map(|o| MessageId::from_uuid(Uuid::from_u128(o))),
            requested_after: MessageId::from_uuid(Uuid::from_u128(after)),
        };
        let bytes = frame::gap_frame(&gap);
        let (oldest, after) = (oldest.map(|o| uuid::Uuid::from_u128(o).to_string()), uuid::Uuid::from_u128(after).to_string());
        let events = parse_one(&bytes).map_err(TestCaseError::fail)?;
        prop_assert_eq!(events.len(), 1);
        prop_assert_eq!(&events[0].event, "gap");
        prop_assert_eq!(&events[0].id, "");
        let data: Value = serde_json::from_str(&events[0].data).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(data, json!({"oldest_available_id": oldest, "requested_after": after}));
    }

    #[test]
    fn endings_carry_any_text(text in prop_oneof![any::<String>(), "[\"\\\\\n\r{}]{1,6}"]) {
        for (name, bytes, field) in [("deleted", frame::deleted(&text), "channel_id"), ("revoked", frame::revoked(&text), "reason")] {
            let events = parse_one(&bytes).map_err(TestCaseError::fail)?;
            prop_assert_eq!(events.len(), 1, "{:?}", bytes);
            prop_assert_eq!(&events[0].event, name);
            let data: Value = serde_json::from_str(&events[0].data).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
            prop_assert_eq!(data, json!({ field: text }));
        }
    }
}
