//! GET /v1/{public|private}/{id} (and `…/{id}/json`): a channel read, in
//! the form the reader asks for —
//!
//! - Server-Sent Events (`text/event-stream`), the default;
//! - NDJSON (`application/x-ndjson`): `Accept: application/x-ndjson`, or
//!   the `/json` path;
//! - a poll (`application/json`, [`super::poll`]): `?poll=1`, or
//!   `Accept: application/json` when it does not prefer an event stream.
//!
//! All three take the same cursor (Last-Event-ID, `?last_event_id=`,
//! `?since=`) and credentials, and are the one reader protocol of
//! `Service::open_stream`, framed differently.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use futures::StreamExt as _;

use chantra_core::domain::{MessageId, ReadToken, Visibility};
use chantra_core::error::AppError;
use chantra_core::service::{Cursor, StreamSettings};

use super::lines::JsonLines;
use super::poll;
use super::sse::{EventStream, Frames, framed_stream};
use crate::http::error::ApiError;
use crate::http::extract::{ChannelPath, query_param, token_from_headers};
use crate::http::rate_limit::ClientIpKey;
use crate::http::stream_conn::{LeanConnection, LeanFrames, MinReadRate};
use crate::state::AppState;

pub const READ_TOKEN_HEADER: &str = "x-read-token";

/// The form of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    EventStream,
    JsonLines,
    Poll,
}

/// What the request asked for: `?poll=1` wins, then the `/json` path, then
/// the `Accept` media type with the highest quality among
/// `text/event-stream`, `application/x-ndjson` and `application/json` (a tie
/// goes to that order; wildcards and other types say nothing: SSE).
pub fn form(lines_path: bool, headers: &HeaderMap, query: Option<&str>) -> Form {
    if query_param(query, "poll").is_some_and(|v| matches!(v.as_str(), "1" | "true")) {
        return Form::Poll;
    }
    if lines_path {
        return Form::JsonLines;
    }
    let mut best: Option<(Form, f32)> = None;
    for accept in headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()) {
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let form = match parts.next().unwrap_or_default().trim().to_ascii_lowercase().as_str() {
                "text/event-stream" => Form::EventStream,
                "application/x-ndjson" => Form::JsonLines,
                "application/json" => Form::Poll,
                _ => continue,
            };
            let quality = parts
                .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let rank = |f: Form| match f {
                Form::EventStream => 0,
                Form::JsonLines => 1,
                Form::Poll => 2,
            };
            if quality > 0.0 && best.is_none_or(|(b, q)| quality > q || (quality == q && rank(form) < rank(b))) {
                best = Some((form, quality));
            }
        }
    }
    best.map_or(Form::EventStream, |(form, _)| form)
}

pub async fn public(
    state: State<AppState>,
    path: ChannelPath,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: RawQuery,
    lean: Option<Extension<LeanConnection>>,
) -> Result<Response, ApiError> {
    open(Visibility::Public, false, state, path, peer, headers, query, lean.is_some()).await
}

pub async fn private(
    state: State<AppState>,
    path: ChannelPath,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: RawQuery,
    lean: Option<Extension<LeanConnection>>,
) -> Result<Response, ApiError> {
    open(Visibility::Private, false, state, path, peer, headers, query, lean.is_some()).await
}

/// `/v1/public/{id}/json`: NDJSON (or a poll with `?poll=1`).
pub async fn public_lines(
    state: State<AppState>,
    path: ChannelPath,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: RawQuery,
    lean: Option<Extension<LeanConnection>>,
) -> Result<Response, ApiError> {
    open(Visibility::Public, true, state, path, peer, headers, query, lean.is_some()).await
}

/// `/v1/private/{id}/json`: NDJSON (or a poll with `?poll=1`).
pub async fn private_lines(
    state: State<AppState>,
    path: ChannelPath,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: RawQuery,
    lean: Option<Extension<LeanConnection>>,
) -> Result<Response, ApiError> {
    open(Visibility::Private, true, state, path, peer, headers, query, lean.is_some()).await
}

/// The reader's cursor: Last-Event-ID, else `?last_event_id=`, else
/// `?since=` (Unix seconds); `None` when none is given.
pub fn parse_cursor(headers: &HeaderMap, query: Option<&str>) -> Result<Option<MessageId>, AppError> {
    let header = headers.get(header::HeaderName::from_static("last-event-id")).map(|v| v.to_str().unwrap_or("\u{0}"));
    let id = header.map(str::to_owned).or_else(|| query_param(query, "last_event_id"));
    if let Some(id) = id.as_deref().map(str::trim).filter(|id| !id.is_empty()) {
        let parsed = MessageId::parse(id).map_err(|e| AppError::InvalidCursor(format!("Last-Event-ID: {e}")))?;
        return Ok(Some(parsed));
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
        return Ok(Some(MessageId::floor_at(millis)));
    }
    Ok(None)
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

#[allow(clippy::too_many_arguments)]
async fn open(
    visibility: Visibility,
    lines_path: bool,
    State(state): State<AppState>,
    ChannelPath(channel): ChannelPath,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    lean: bool,
) -> Result<Response, ApiError> {
    let query = query.as_deref();
    let form = form(lines_path, &headers, query);
    let cursor = parse_cursor(&headers, query)?;
    let limit = match form {
        Form::Poll => Some(poll::limit(query, state.http.sse.replay_max)?),
        _ => None,
    };
    // A public channel ignores credentials: a stray header must not refuse it.
    let token = match visibility {
        Visibility::Private => read_token(&headers, query)?,
        Visibility::Public => None,
    };
    let client = ClientIpKey::new(&state.http.trusted_proxies).client_ip(peer.ip(), &headers);
    let slot = state.streams.acquire(client)?;
    let sse = &state.http.sse;
    let settings = StreamSettings { keepalive: sse.keepalive, replay_max: sse.replay_max };
    let cursor = match (cursor, form) {
        (Some(after), _) => Cursor::After(after),
        // A poll with no cursor starts at the oldest message kept; a stream, from now.
        (None, Form::Poll) => Cursor::Oldest,
        (None, _) => Cursor::Now,
    };
    // No stop token: the server's shutdown ends the stream by closing the hub.
    let stream = state.service.open_stream(channel, Some(visibility), token.as_ref(), cursor, settings, None).await?;

    let ((body, lean_frames), content_type) = match form {
        Form::Poll => {
            let page = poll::collect(
                stream,
                cursor,
                limit.unwrap_or(1),
                state.service.page_max_bytes(),
                state.http.request_timeout,
            )
            .await;
            drop(slot);
            let mut response = Response::new(Body::from(page?));
            set_headers(&mut response, "application/json");
            return Ok(response);
        }
        Form::EventStream => {
            (streaming(stream, EventStream { retry_ms: sse.retry_ms }, slot, lean), "text/event-stream")
        }
        Form::JsonLines => (streaming(stream, JsonLines, slot, lean), "application/x-ndjson"),
    };
    let mut response = Response::new(body);
    if let Some(frames) = lean_frames {
        response.extensions_mut().insert(frames);
    }
    // The lean connection path cuts a reader slower than this (so it resumes).
    response.extensions_mut().insert(MinReadRate(sse.min_read_rate));
    set_headers(&mut response, content_type);
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The response body of a stream — or, on the lean connection path, an
/// empty body and the frames for that path to write itself.
fn streaming<F: Frames, G: Send + 'static>(
    stream: chantra_core::service::ReaderStream,
    frames: F,
    guard: G,
    lean: bool,
) -> (Body, Option<LeanFrames>) {
    let frames = framed_stream(stream, frames, guard);
    if lean {
        (Body::empty(), Some(LeanFrames::new(Box::pin(frames))))
    } else {
        (Body::from_stream(frames.map(Ok::<_, Infallible>)), None)
    }
}

fn set_headers(response: &mut Response, content_type: &'static str) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // The form follows Accept: a cache must not answer one with another.
    headers.insert(header::VARY, HeaderValue::from_static("accept"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(header: Option<&str>, query: Option<&str>) -> Result<Option<MessageId>, AppError> {
        let mut headers = HeaderMap::new();
        if let Some(h) = header {
            headers.insert("last-event-id", h.parse().unwrap());
        }
        parse_cursor(&headers, query)
    }

    #[test]
    fn cursors() {
        let id = MessageId::new();
        assert_eq!(cursor(None, None).unwrap(), None);
        assert_eq!(cursor(Some(&id.to_string()), None).unwrap(), Some(id));
        assert_eq!(cursor(None, Some(&format!("last_event_id={id}"))).unwrap(), Some(id));
        // The header wins over the query (a reconnecting EventSource sends both).
        let other = MessageId::new();
        assert_eq!(cursor(Some(&other.to_string()), Some(&format!("last_event_id={id}"))).unwrap(), Some(other));
        assert_eq!(cursor(None, Some("since=10")).unwrap(), Some(MessageId::floor_at(10_000)));
        assert_eq!(cursor(Some(" "), None).unwrap(), None);
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

    #[test]
    fn forms() {
        let form_of = |accept: Option<&str>, lines: bool, query: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(a) = accept {
                headers.insert(header::ACCEPT, a.parse().unwrap());
            }
            form(lines, &headers, query)
        };
        assert_eq!(form_of(None, false, None), Form::EventStream);
        assert_eq!(form_of(Some("*/*"), false, None), Form::EventStream);
        assert_eq!(form_of(Some("text/event-stream"), false, None), Form::EventStream);
        assert_eq!(form_of(Some("application/json"), false, None), Form::Poll);
        assert_eq!(form_of(Some("Application/JSON; charset=utf-8"), false, None), Form::Poll);
        // MCP-style clients accept both: the stream wins a tie.
        assert_eq!(form_of(Some("application/json, text/event-stream"), false, None), Form::EventStream);
        assert_eq!(form_of(Some("text/event-stream;q=0.5, application/json"), false, None), Form::Poll);
        assert_eq!(form_of(Some("application/json;q=0"), false, None), Form::EventStream);
        assert_eq!(form_of(Some("application/x-ndjson"), false, None), Form::JsonLines);
        assert_eq!(form_of(Some("application/x-ndjson, application/json"), false, None), Form::JsonLines);
        assert_eq!(form_of(None, true, None), Form::JsonLines);
        assert_eq!(form_of(Some("text/event-stream"), true, None), Form::JsonLines);
        assert_eq!(form_of(None, false, Some("poll=1")), Form::Poll);
        assert_eq!(form_of(Some("text/event-stream"), true, Some("poll=true")), Form::Poll);
        assert_eq!(form_of(None, false, Some("poll=0")), Form::EventStream);
    }
}
