//! The rest role: channel management and publishing under /v1, and the
//! OpenAPI document that describes it at /openapi.json.

mod channels;
mod grants;
mod openapi;
mod publish;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use openapi::ApiDoc;

use super::extract::{JSON_BODY_LIMIT, reject_unknown_query};
use crate::state::AppState;

const PUBLISH: &str = "/v1/channels/{channel_id}/publish";
const READ_GRANTS: &str = "/v1/channels/{channel_id}/read-grants";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/channels", post(channels::create))
        .route("/v1/channels/{channel_id}", get(channels::get).delete(channels::delete))
        .route(PUBLISH, post(publish::publish))
        .route(READ_GRANTS, get(grants::list).post(grants::create))
        .route("/v1/channels/{channel_id}/read-grants/{grant_id}/revoke", post(grants::revoke))
        .route("/openapi.json", get(openapi::serve))
        // After routing, so the route (not the raw path) decides what is accepted.
        .route_layer(middleware::from_fn(known_query_only))
        // Publish streams its own body with the payload limit; this bounds the rest.
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
}

/// The query parameters each route reads; any other is 400 before the handler runs.
fn accepted_query(method: &Method, route: &str) -> &'static [&'static str] {
    match route {
        PUBLISH => &["ttl"],
        READ_GRANTS if *method == Method::GET => &["after", "limit"],
        _ => &[],
    }
}

async fn known_query_only(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>();
    let accepted = route.map_or(&[][..], |route| accepted_query(req.method(), route.as_str()));
    if let Err(err) = reject_unknown_query(req.uri().query(), accepted) {
        return crate::http::error::respond(err);
    }
    next.run(req).await
}

/// Browsers (the landing playground, anyone's page) may call the API: it
/// uses header tokens, never cookies, so any origin is safe to allow.
pub(crate) fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static(super::extract::PUBLISH_TOKEN_HEADER),
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([header::RETRY_AFTER, HeaderName::from_static("idempotent-replayed")])
}
