//! The channels role: a channel URL is a Server-Sent Events stream
//! (`/v1/{public|private}/{id}`, also under `/channel` so the URLs the API
//! returns work with and without the edge proxy) that also answers a poll
//! or NDJSON (`read.rs`; `…/{id}/json` is NDJSON), plus the internal read
//! API that an mcp role deployed apart uses.

mod internal;
pub mod lines;
pub mod message;
pub mod openapi;
pub mod poll;
pub mod read;
pub mod sse;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::{MethodRouter, get};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::state::AppState;

/// One event-stream route: its path template (axum syntax, `{name}` is one
/// non-empty segment) and its handler.
pub struct StreamRoute {
    pub template: &'static str,
    handler: fn() -> MethodRouter<AppState>,
}

/// The event-stream routes, declared once: [`router`] serves them, each also
/// under every prefix of [`STREAM_MOUNTS`], and the lean connection path
/// (`http::stream_conn`) takes exactly the requests [`is_stream_path`] finds
/// here. A route added or changed here is changed for both.
pub const STREAM_ROUTES: [StreamRoute; 4] = [
    StreamRoute { template: "/v1/public/{channel_id}", handler: || get(read::public) },
    StreamRoute { template: "/v1/private/{channel_id}", handler: || get(read::private) },
    StreamRoute { template: "/v1/public/{channel_id}/json", handler: || get(read::public_lines) },
    StreamRoute { template: "/v1/private/{channel_id}/json", handler: || get(read::private_lines) },
];

/// Where [`STREAM_ROUTES`] are mounted besides the root: the channel URLs the
/// API returns go through the edge proxy's `/channel`.
pub const STREAM_MOUNTS: [&str; 1] = ["/channel"];

pub fn router() -> Router<AppState> {
    // The document describing the read routes, beside them (and under /channel too).
    let docs = STREAM_MOUNTS.iter().fold(Router::new().route("/openapi.json", get(openapi::serve)), |router, mount| {
        router.route(&format!("{mount}/openapi.json"), get(openapi::serve))
    });
    stream_router(|route| (route.handler)()).merge(docs)
}

/// A router of [`STREAM_ROUTES`] at the root and under [`STREAM_MOUNTS`],
/// with the handler `handler` gives each route (tests give their own, to
/// check [`is_stream_path`] against axum's routing).
pub fn stream_router<S: Clone + Send + Sync + 'static>(handler: impl Fn(&StreamRoute) -> MethodRouter<S>) -> Router<S> {
    let streams =
        STREAM_ROUTES.iter().fold(Router::new(), |router, route| router.route(route.template, handler(route)));
    STREAM_MOUNTS.iter().fold(streams.clone(), |router, mount| router.nest(mount, streams.clone()))
}

/// Whether a request path (`Uri::path`, what axum routes on: no query, not
/// percent-decoded) is one of [`STREAM_ROUTES`], at the root or under one of
/// [`STREAM_MOUNTS`]: such requests take the lean connection path
/// (`http::stream_conn`).
pub fn is_stream_path(path: &str) -> bool {
    let unmounted = STREAM_MOUNTS.iter().filter_map(|mount| path.strip_prefix(mount));
    std::iter::once(path)
        .chain(unmounted)
        .any(|path| STREAM_ROUTES.iter().any(|route| matches_template(route.template, path)))
}

/// `path` against a template: literal segments equal, a `{param}` segment
/// any non-empty segment (as axum's router, matchit, matches them).
fn matches_template(template: &str, path: &str) -> bool {
    let (mut template, mut path) = (template.split('/'), path.split('/'));
    loop {
        match (template.next(), path.next()) {
            (None, None) => return true,
            (Some(t), Some(p)) if t.starts_with('{') && t.ends_with('}') => {
                if p.is_empty() {
                    return false;
                }
            }
            (Some(t), Some(p)) if t == p => {}
            _ => return false,
        }
    }
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
        for path in [
            "/v1/public/x",
            "/v1/private/x",
            "/channel/v1/public/x",
            "/channel/v1/private/%78",
            "/v1/public/x/json",
            "/channel/v1/private/x/json",
        ] {
            assert!(is_stream_path(path), "{path}");
        }
        for path in [
            "/healthz",
            "/v1/publicx",
            "/v1/public/",
            "/v1/public/x/",
            "/v1/public/x/y",
            "/v1/public/x/json/",
            "/v1/public//json",
            "/v1/%70ublic/x",
            "/internal/v1/channels/x/messages",
            "/channel/healthz",
            "/channel",
            "/channelv1/public/x",
            "//v1/public/x",
            "/channel/channel/v1/public/x",
            "v1/public/x",
        ] {
            assert!(!is_stream_path(path), "{path}");
        }
    }
}
