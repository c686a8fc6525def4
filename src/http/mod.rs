//! HTTP: one axum router per role, all sharing the same middleware — request
//! tracing without query strings (tokens may travel there), per-client rate
//! limiting, JSON 404/405 — and `/healthz` + `/readyz`.

pub mod channels;
pub mod error;
pub mod extract;
pub mod health;
pub mod landing;
pub mod rate_limit;
pub mod rest;
pub mod serve;
pub mod settings;
pub mod stream_conn;
pub mod streams;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::routing::get;
use tower_http::trace::TraceLayer;

use crate::role::Role;
use crate::state::AppState;
use chantra_core::error::AppError;

pub use settings::{HttpSettings, SseSettings};

/// The longest request URI (path + query) answered; 414 `uri_too_long` above.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The complete router of one role; `rate_limit` holds the role's
/// per-client buckets (`None`: RATE_LIMIT is off).
pub fn router(role: Role, state: AppState, rate_limit: Option<&rate_limit::ClientLimiter>) -> Router {
    let role_routes = match role {
        Role::Rest => rest::router(),
        Role::Channels => channels::router(),
        Role::Mcp => crate::mcp::router(&state),
        Role::Landing => landing::router(&state),
    };
    let mut role_routes = role_routes.route("/healthz", get(health::healthz)).route("/readyz", get(health::readyz));
    // The landing role answers unknown paths with its own HTML page; the APIs with JSON.
    if role != Role::Landing {
        role_routes = role_routes.fallback(|| async { crate::http::error::ApiError(AppError::RouteNotFound) });
    }
    let mut router = role_routes
        .method_not_allowed_fallback(|| async { crate::http::error::ApiError(AppError::MethodNotAllowed) })
        .with_state(state.clone());
    let timeout = state.http.request_timeout;
    router = router.layer(middleware::from_fn(move |req: Request, next: Next| async move {
        // Bounds the time to the response head; a stream's body may then run
        // on. A publish already handed to the writer waits for its commit
        // instead: a 503 must mean that nothing was stored.
        match chantra_core::service::within_unless_committing(timeout, next.run(req)).await {
            Some(response) => response,
            None => crate::http::error::respond(AppError::Timeout),
        }
    }));
    router = router.layer(middleware::from_fn(|req: Request, next: Next| async move {
        // Checked before anything parses the URI further (the head itself is capped by serve.rs).
        if req.uri().path_and_query().map_or(0, |pq| pq.as_str().len()) > MAX_URI_BYTES {
            return crate::http::error::respond(AppError::UriTooLong { limit: MAX_URI_BYTES });
        }
        next.run(req).await
    }));
    if let Some(limiter) = rate_limit {
        router = router.layer(limiter.layer());
    }
    // The internal read API is added after the per-client limit: all its
    // calls come from the mcp role's one address, on behalf of every agent,
    // and it is closed to anyone without INTERNAL_API_TOKEN anyway.
    if role == Role::Channels {
        router = router.merge(channels::internal_router().with_state(state.clone()));
    }
    // Scrapers poll often from one address; like /healthz they are not clients to limit.
    if state.http.metrics {
        router = router.route("/metrics", get(|| async { crate::metrics::render() }));
    }
    // CORS wraps the whole role router, outside the JSON 405 fallback (a
    // layer inside a role router is lost on the method-not-allowed fallback
    // that answers OPTIONS) and outside rate limiting (so a browser can read a 429).
    router = match role {
        Role::Rest => router.layer(rest::cors()),
        Role::Channels => router.layer(channels::cors(state.http.cors_allowed_origins.as_deref())),
        _ => router,
    };
    let role_name = role.name();
    router = router.layer(middleware::from_fn(move |req: Request, next: Next| async move {
        let started = std::time::Instant::now();
        let response = next.run(req).await;
        crate::metrics::record_request(role_name, response.status().as_u16(), started.elapsed());
        response
    }));
    router.layer(
        TraceLayer::new_for_http()
            .make_span_with(move |req: &Request| {
                // The path only: query strings can carry read tokens (`?token=`).
                tracing::info_span!("request", role = role.name(), method = %req.method(), path = %req.uri().path())
            })
            // A 503 (busy, backend down) is an answer, not a server fault: backend
            // failures are logged once with their cause where they happen (chantra-core error.rs),
            // and a full server must not write a log line per refused client.
            .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG)),
    )
}
