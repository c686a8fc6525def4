//! GET /v1/{public|private}/{id}: a channel as a Server-Sent Events stream —
//! the handlers, then the frames: how the service's stream events
//! ([`StreamEvent`]) become bytes on the wire. A live message is encoded once
//! per process and its frame shared by every subscriber
//! ([`LiveMessage::encoded`]). A message's data is compact JSON, which never
//! contains a raw newline, so each event has exactly one `data:` line.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use futures::Stream;
use serde::Serialize;

use chantra_core::domain::{MessageId, ReadToken, Visibility};
use chantra_core::error::AppError;
use chantra_core::fanout::LiveMessage;
use chantra_core::service::views::MessageEvent;
use chantra_core::service::{Cursor, StreamSettings};
use chantra_core::service::{Gap, ReaderStream, StreamEvent, message_event};

use crate::http::error::ApiError;
use crate::http::extract::{ChannelPath, query_param, token_from_headers};
use crate::http::rate_limit::ClientIpKey;
use crate::http::stream_conn::MinReadRate;
use crate::state::AppState;

pub const READ_TOKEN_HEADER: &str = "x-read-token";

pub async fn public(
    state: State<AppState>,
    path: ChannelPath,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: RawQuery,
) -> Result<Response, ApiError> {
    open(Visibility::Public, state, path, peer, headers, query).await
}

pub async fn private(
    state: State<AppState>,
    path: ChannelPath,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: RawQuery,
) -> Result<Response, ApiError> {
    open(Visibility::Private, state, path, peer, headers, query).await
}

fn parse_cursor(headers: &HeaderMap, query: Option<&str>) -> Result<Cursor, AppError> {
    let header = headers.get(header::HeaderName::from_static("last-event-id")).map(|v| v.to_str().unwrap_or("\u{0}"));
    let id = header.map(str::to_owned).or_else(|| query_param(query, "last_event_id"));
    if let Some(id) = id.as_deref().map(str::trim).filter(|id| !id.is_empty()) {
        let parsed = MessageId::parse(id).map_err(|e| AppError::InvalidCursor(format!("Last-Event-ID: {e}")))?;
        return Ok(Cursor::After(parsed));
    }
    if let Some(since) = query_param(query, "since") {
        let seconds: u64 = since.trim().parse().map_err(|_| {
            AppError::InvalidCursor("since must be a Unix time in whole seconds, e.g. since=1764000000".into())
        })?;
        let millis = seconds
            .checked_mul(1000)
            .filter(|m| *m < 1 << 48)
            .ok_or_else(|| AppError::InvalidCursor("since is too far in the future".into()))?;
        // A time resumes like an id (its floor): the same cap and gap rules.
        return Ok(Cursor::After(MessageId::floor_at(millis)));
    }
    Ok(Cursor::Now)
}

/// The read token from X-Read-Token, Authorization: Bearer, or ?token=
/// (browsers' EventSource cannot send headers; request logs never include
/// query strings).
fn read_token(headers: &HeaderMap, query: Option<&str>) -> Result<Option<ReadToken>, AppError> {
    let raw = match token_from_headers(headers, READ_TOKEN_HEADER)? {
        Some(raw) => Some(raw.to_owned()),
        None => query_param(query, "token"),
    };
    raw.map(|raw| ReadToken::parse(&raw).map_err(AppError::from)).transpose()
}

async fn open(
    visibility: Visibility,
    State(state): State<AppState>,
    ChannelPath(channel): ChannelPath,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let cursor = parse_cursor(&headers, query.as_deref())?;
    // A public channel ignores credentials: a stray header must not refuse it.
    let token = match visibility {
        Visibility::Private => read_token(&headers, query.as_deref())?,
        Visibility::Public => None,
    };
    let client = ClientIpKey::new(&state.http.trusted_proxies).client_ip(peer.ip(), &headers);
    let slot = state.streams.acquire(client)?;
    let sse = &state.http.sse;
    let settings = StreamSettings { keepalive: sse.keepalive, replay_max: sse.replay_max };
    let stream = state
        .service
        .open_stream(channel, Some(visibility), token.as_ref(), cursor, settings, state.shutdown.clone())
        .await?;
    let body = Body::from_stream(event_stream(stream, sse.retry_ms, slot));

    let mut response = Response::new(body);
    // The lean connection path cuts a reader slower than this (so it resumes).
    response.extensions_mut().insert(MinReadRate(sse.min_read_rate));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(header: Option<&str>, query: Option<&str>) -> Result<Cursor, AppError> {
        let mut headers = HeaderMap::new();
        if let Some(h) = header {
            headers.insert("last-event-id", h.parse().unwrap());
        }
        parse_cursor(&headers, query)
    }

    #[test]
    fn cursors() {
        let id = MessageId::new();
        assert_eq!(cursor(None, None).unwrap(), Cursor::Now);
        assert_eq!(cursor(Some(&id.to_string()), None).unwrap(), Cursor::After(id));
        assert_eq!(cursor(None, Some(&format!("last_event_id={id}"))).unwrap(), Cursor::After(id));
        // The header wins over the query (a reconnecting EventSource sends both).
        let other = MessageId::new();
        assert_eq!(
            cursor(Some(&other.to_string()), Some(&format!("last_event_id={id}"))).unwrap(),
            Cursor::After(other)
        );
        assert_eq!(cursor(None, Some("since=10")).unwrap(), Cursor::After(MessageId::floor_at(10_000)));
        assert_eq!(cursor(Some(" "), None).unwrap(), Cursor::Now);
        for (h, q) in [
            (Some("nope"), None),
            (None, Some("last_event_id=123")),
            (None, Some("since=-1")),
            (None, Some("since=abc")),
            (None, Some("since=99999999999999999")),
        ] {
            assert!(matches!(cursor(h, q), Err(AppError::InvalidCursor(_))), "{h:?} {q:?}");
        }
    }
}

// --- Frames -----------------------------------------------------------------

/// The body of an SSE response: a `retry:` hint, then the reader's events
/// as frames. `guard` (e.g. the client's stream slot) is released when the
/// body ends.
pub fn event_stream<G: Send + 'static>(
    stream: ReaderStream,
    retry_ms: u64,
    guard: G,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let channel = stream.reader().channel.to_string();
    let first = futures::stream::once(std::future::ready(Ok(retry(retry_ms))));
    let events = futures::stream::unfold((stream, guard), move |(mut stream, guard)| {
        let channel = channel.clone();
        async move {
            let event = stream.next().await?;
            Some((Ok(encode(event, &channel)), (stream, guard)))
        }
    });
    futures::StreamExt::chain(first, events)
}

/// One event's frame.
pub fn encode(event: StreamEvent, channel_id: &str) -> Bytes {
    match event {
        StreamEvent::Live(live) => live.encoded(live_message),
        StreamEvent::Replayed { row, payload } => message_with_payload(&message_event(&row, &[]), &payload),
        StreamEvent::Gap(gap) => gap_frame(&gap),
        StreamEvent::KeepAlive => Bytes::from_static(KEEPALIVE),
        StreamEvent::Deleted => deleted(channel_id),
        StreamEvent::Revoked(why) => revoked(why.as_str()),
    }
}

fn live_message(live: &LiveMessage) -> Bytes {
    message_with_payload(&message_event(&live.row, &[]), &live.payload)
}

pub const KEEPALIVE: &[u8] = b": keep-alive\n\n";

pub fn retry(millis: u64) -> Bytes {
    Bytes::from(format!("retry: {millis}\n\n"))
}

pub fn message(event: &MessageEvent) -> Bytes {
    // MessageEvent is strings and numbers only: serialising cannot fail.
    let data = serde_json::to_string(event).unwrap_or_default();
    Bytes::from(format!("id: {}\nevent: message\ndata: {data}\n\n", event.id))
}

/// The frame of a message whose `payload` field is left empty in `meta`,
/// with `payload` base64-encoded straight into the frame: a replay holds the
/// payload and its frame, never the intermediate base64 and JSON strings too.
/// Byte for byte what [`message`] gives for the full event.
pub fn message_with_payload(meta: &MessageEvent, payload: &[u8]) -> Bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    const EMPTY_PAYLOAD: &str = "\"payload\":\"\"";
    let data = serde_json::to_string(meta).unwrap_or_default();
    // Ids and the field names before it cannot contain this text, so the first match is the field.
    let Some(at) = data.find(EMPTY_PAYLOAD).map(|at| at + EMPTY_PAYLOAD.len() - 1) else {
        return message(&MessageEvent { payload: STANDARD.encode(payload), ..meta.clone() });
    };
    let head = format!("id: {}\nevent: message\ndata: ", meta.id);
    let encoded = base64::encoded_len(payload.len(), true).unwrap_or_default();
    let mut out = Vec::with_capacity(head.len() + data.len() + encoded + 2);
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&data.as_bytes()[..at]);
    let start = out.len();
    out.resize(start + encoded, 0);
    let written = STANDARD.encode_slice(payload, &mut out[start..]).unwrap_or_default();
    out.truncate(start + written);
    out.extend_from_slice(&data.as_bytes()[at..]);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[derive(Serialize)]
struct GapData<'a> {
    /// The oldest message still kept after the cursor; the replay starts
    /// there (`null`: none is left, the replay is empty).
    oldest_available_id: Option<&'a str>,
    /// The cursor the reader asked to resume after.
    requested_after: &'a str,
}

/// Said before a replay when messages after the reader's cursor are gone;
/// `oldest_available_id: null` when nothing is left to replay.
pub fn gap_frame(gap: &Gap) -> Bytes {
    let oldest = gap.oldest_available.map(|id| id.to_string());
    let requested = gap.requested_after.to_string();
    let data = GapData { oldest_available_id: oldest.as_deref(), requested_after: &requested };
    let data = serde_json::to_string(&data).unwrap_or_default();
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
mod frame_tests {
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

    #[test]
    fn message_with_payload_is_the_same_frame() {
        for payload in [&b""[..], b"x", b"line\nbreak", &[0xff; 1000]] {
            let meta = MessageEvent {
                id: "0193a0e8-0000-7000-8000-000000000001".into(),
                channel_id: "0193a0e8-0000-7000-8000-000000000002".into(),
                payload: String::new(),
                content_type: "text/plain; charset=\"utf-8\"".into(),
                created_at: chrono::DateTime::from_timestamp(0, 5_000).unwrap(),
                expires_at: chrono::DateTime::from_timestamp(60, 0).unwrap(),
            };
            use base64::Engine as _;
            let full =
                MessageEvent { payload: base64::engine::general_purpose::STANDARD.encode(payload), ..meta.clone() };
            assert_eq!(message_with_payload(&meta, payload), message(&full));
        }
    }

    #[test]
    fn a_gap_to_nothing_says_null() {
        let gap = Gap { oldest_available: None, requested_after: chantra_core::domain::MessageId::MIN };
        let frame = String::from_utf8(gap_frame(&gap).to_vec()).unwrap();
        assert_eq!(
            frame,
            "event: gap\ndata: {\"oldest_available_id\":null,\"requested_after\":\"00000000-0000-0000-0000-000000000000\"}\n\n"
        );
    }
}
