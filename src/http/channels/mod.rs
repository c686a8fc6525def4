//! The channels role: a channel URL is a Server-Sent Events stream
//! (`/v1/{public|private}/{id}`, also under `/channel` so the URLs the API
//! returns work with and without the edge proxy), plus the internal read API
//! that an mcp role deployed apart uses.

pub mod frame;
mod internal;
mod limits;
mod sse;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::get;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use limits::StreamSlots;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    let streams = Router::new()
        .route("/v1/public/{channel_id}", get(sse::public))
        .route("/v1/private/{channel_id}", get(sse::private));
    Router::new().merge(streams.clone()).nest("/channel", streams)
}

/// Whether a request target (path and query) names an event stream of
/// [`router`]: such requests take the lean connection path (`http::stream_conn`).
pub fn is_stream_path(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or_default();
    let path = path.strip_prefix("/channel").unwrap_or(path);
    path.starts_with("/v1/public/") || path.starts_with("/v1/private/")
}

/// The internal read API (mounted by `http::router` outside the per-client rate limit).
pub fn internal_router() -> Router<AppState> {
    Router::new().route("/internal/v1/channels/{channel_id}/messages", get(internal::messages))
}

/// Browsers' EventSource may read from the allowed origins. Tokens travel in
/// headers or the query string, never cookies.
pub(crate) fn cors(origins: Option<&[String]>) -> CorsLayer {
    let allow = match origins {
        None => AllowOrigin::any(),
        Some(list) => AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok())),
    };
    CorsLayer::new().allow_origin(allow).allow_methods([Method::GET]).allow_headers([
        header::AUTHORIZATION,
        HeaderName::from_static("last-event-id"),
        HeaderName::from_static("x-read-token"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_paths_are_the_stream_routes() {
        for target in ["/v1/public/x", "/v1/private/x?token=t", "/channel/v1/public/x", "/channel/v1/private/x?since=1"]
        {
            assert!(is_stream_path(target), "{target}");
        }
        for target in
            ["/healthz", "/v1/publicx", "/internal/v1/channels/x/messages", "/channel/healthz", "/x?/v1/public/"]
        {
            assert!(!is_stream_path(target), "{target}");
        }
    }
}
