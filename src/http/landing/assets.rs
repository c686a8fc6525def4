//! Static assets, compiled into the binary and served with cache headers.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Assets change only with a new binary; an hour keeps deploys visible quickly.
const CACHE_CONTROL: &str = "public, max-age=3600";

const ASSETS: [(&str, &str, &[u8]); 3] = [
    ("style.css", "text/css; charset=utf-8", include_bytes!("../../../static/style.css")),
    ("playground.js", "text/javascript; charset=utf-8", include_bytes!("../../../static/playground.js")),
    ("favicon.svg", "image/svg+xml", include_bytes!("../../../static/favicon.svg")),
];

pub async fn serve(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL)),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
