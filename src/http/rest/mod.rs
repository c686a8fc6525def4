//! The rest role: channel management and publishing under /v1, and the
//! OpenAPI document that describes it at /openapi.json.

mod channels;
mod grants;
mod openapi;
mod publish;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method, header};
use axum::routing::{get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use openapi::ApiDoc;

use super::extract::JSON_BODY_LIMIT;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/channels", post(channels::create))
        .route("/v1/channels/{channel_id}", get(channels::get).delete(channels::delete))
        .route("/v1/channels/{channel_id}/publish", post(publish::publish))
        .route("/v1/channels/{channel_id}/read-grants", post(grants::create))
        .route("/v1/channels/{channel_id}/read-grants/{grant_id}/revoke", post(grants::revoke))
        .route("/openapi.json", get(openapi::serve))
        // Publish streams its own body with the payload limit; this bounds the rest.
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
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
