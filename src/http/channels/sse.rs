//! GET /v1/{public|private}/{id}: a channel as a Server-Sent Events stream.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;

use chantra_core::domain::{MessageId, ReadToken, Visibility};
use chantra_core::error::AppError;
use chantra_core::service::{Cursor, StreamSettings};

use crate::http::channels::frame;
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
    let body = Body::from_stream(frame::event_stream(stream, sse.retry_ms, slot));

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
