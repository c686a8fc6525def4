//! Request extractors that turn HTTP into domain values or a clean
//! `AppError`: a handler that compiles has its token and its ids parsed, and
//! no axum rejection ever reaches a client as plain text.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::http::error::ApiError;
use chantra_core::domain::{ChannelId, GrantId, PublishToken};
use chantra_core::error::AppError;

/// Largest JSON body of the small management endpoints (create, grants).
pub const JSON_BODY_LIMIT: usize = 16 * 1024;

pub const PUBLISH_TOKEN_HEADER: &str = "x-publish-token";

/// Most of a refused body the server still reads (and discards) before
/// answering, and for how long: see `drain_refused_body`.
const DRAIN_MAX_BYTES: u64 = 8 * 1024 * 1024;
const DRAIN_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// `{channel_id}` from the path, parsed: a malformed id is 400 before anything else runs.
pub struct ChannelPath(pub ChannelId);

/// `{channel_id}` and `{grant_id}` from the path, parsed.
pub struct GrantPath(pub ChannelId, pub GrantId);

async fn path_params<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<HashMap<String, String>, AppError> {
    Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map(|Path(params)| params)
        .map_err(|rejection: PathRejection| AppError::bad_request("invalid_path", rejection.body_text()))
}

fn param<'a>(params: &'a HashMap<String, String>, name: &str) -> Result<&'a str, AppError> {
    params.get(name).map(String::as_str).ok_or_else(|| {
        tracing::error!(name, "route is missing a path parameter its extractor needs");
        AppError::Internal
    })
}

impl<S: Send + Sync> FromRequestParts<S> for ChannelPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = path_params(parts, state).await?;
        Ok(ChannelPath(ChannelId::parse(param(&params, "channel_id")?)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for GrantPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = path_params(parts, state).await?;
        let channel = ChannelId::parse(param(&params, "channel_id")?)?;
        let grant = GrantId::parse(param(&params, "grant_id")?)?;
        Ok(GrantPath(channel, grant))
    }
}

/// The publish token from `X-Publish-Token` or `Authorization: Bearer chp_…`.
/// Its shape is checked here; whether it opens this channel is the service's call.
pub struct PublishAuth(pub PublishToken);

impl<S: Send + Sync> FromRequestParts<S> for PublishAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let raw = token_from_headers(&parts.headers, PUBLISH_TOKEN_HEADER)?
            .ok_or(AppError::MissingToken("X-Publish-Token"))?;
        Ok(PublishAuth(PublishToken::parse(raw)?))
    }
}

/// A token from `header`, else from `Authorization: Bearer …`.
pub fn token_from_headers<'a>(headers: &'a HeaderMap, header_name: &str) -> Result<Option<&'a str>, AppError> {
    if let Some(value) = headers.get(header_name) {
        return value.to_str().map(Some).map_err(|_| AppError::InvalidToken);
    }
    match headers.get(header::AUTHORIZATION) {
        None => Ok(None),
        Some(value) => {
            let value = value.to_str().map_err(|_| AppError::InvalidToken)?;
            let (scheme, token) = value.split_once(' ').ok_or(AppError::InvalidToken)?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(AppError::InvalidToken);
            }
            Ok(Some(token.trim()))
        }
    }
}

/// An optional JSON body: empty means `T::default()`; otherwise it must be
/// JSON (415 for another declared type) that fits `T` (400 with serde's
/// explanation, e.g. an unknown field or variant).
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let declared = req.headers().get(header::CONTENT_TYPE).cloned();
        // A Content-Length over the limit is refused at once, not after the
        // client has been waited for until the request timeout.
        let length = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(length) = length.filter(|n| *n > JSON_BODY_LIMIT as u64) {
            let (parts, body) = req.into_parts();
            drain_refused_body(&parts.headers, length, body).await;
            return Err(AppError::PayloadTooLarge { limit: JSON_BODY_LIMIT }.into());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge { limit: JSON_BODY_LIMIT }
            } else {
                AppError::bad_request("invalid_body", rejection.body_text())
            }
        })?;
        // No body at all, or a JSON `null`, means "absent"; whitespace alone is not JSON.
        if bytes.is_empty() || serde_json::from_slice::<()>(&bytes).is_ok() {
            return Ok(OptionalJson(T::default()));
        }
        if let Some(declared) = declared
            && !is_json(declared.to_str().unwrap_or_default())
        {
            return Err(AppError::UnsupportedMediaType("send the body as application/json".into()).into());
        }
        require_object(&bytes)?;
        serde_json::from_slice(&bytes).map(OptionalJson).map_err(|e| {
            ApiError(AppError::bad_request(
                "invalid_json",
                format!("the body is not valid JSON for this endpoint: {e}"),
            ))
        })
    }
}

/// Reads and discards the rest of a body the server has refused, so the
/// answer reaches a client that sends its whole body before reading: closing
/// with unread data makes the kernel reset the connection, and the client
/// then loses the answer already sent (Python's http.client: BrokenPipeError).
/// Bounded: `remaining` (what Content-Length still announces, or an unknown
/// length) must fit `DRAIN_MAX_BYTES`, and the whole wait `DRAIN_MAX_TIME`;
/// past either the connection is closed as before. A client that asked
/// `Expect: 100-continue` has sent nothing yet, and is answered at once.
pub async fn drain_refused_body(headers: &HeaderMap, remaining: u64, body: axum::body::Body) {
    use http_body_util::BodyExt as _;
    let expects_continue = headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue || remaining > DRAIN_MAX_BYTES {
        return;
    }
    let mut body = body;
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
        let mut read = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len() as u64);
            if read > DRAIN_MAX_BYTES {
                return;
            }
        }
    })
    .await;
}

/// Request bodies are JSON objects. serde would also fill a struct from an
/// array in field order, which would quietly make field order part of the API.
pub fn require_object(json: &[u8]) -> Result<(), AppError> {
    if json.trim_ascii_start().first() == Some(&b'{') {
        Ok(())
    } else {
        Err(AppError::bad_request("invalid_json", "the body must be a JSON object"))
    }
}

/// The first value of a query-string parameter, percent-decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Refuses a query string naming a parameter not in `accepted` (400
/// `unknown_query_parameter`), as unknown JSON fields are refused: a
/// misspelt option must not quietly fall back to its default.
pub fn reject_unknown_query(query: Option<&str>, accepted: &[&str]) -> Result<(), AppError> {
    let Some(query) = query else { return Ok(()) };
    let Some((name, _)) = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| !accepted.contains(&k.as_ref()))
    else {
        return Ok(());
    };
    let accepts = if accepted.is_empty() {
        "none (options go in the JSON body or headers)".to_owned()
    } else {
        accepted.join(", ")
    };
    Err(AppError::bad_request(
        "unknown_query_parameter",
        format!("unknown query parameter `{name}`; this route accepts: {accepts}"),
    ))
}

/// Whether a Content-Type value is JSON (`application/json`, `…+json`, with parameters).
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Whether `bytes` is one JSON document: UTF-8 (RFC 8259 §8.1) that
/// parses. Checked without building it, so any number is accepted as
/// written. serde_json alone does not check the bytes of strings it skips
/// (`"\xff"` parses from a slice), and such a document copied into a frame
/// would make the frame invalid UTF-8.
pub fn check_json(bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    serde_json::from_str::<serde::de::IgnoredAny>(text).map(drop).map_err(|e| e.to_string())
}

/// An optional integer field that also takes a JSON number with no fraction
/// (`60.0`): JSON Schema's `integer` includes those, and clients' JSON
/// encoders sometimes write whole numbers that way. `60.5` is refused.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    use serde::Deserialize as _;
    use serde::de::Error as _;
    match Option::<serde_json::Number>::deserialize(deserializer)? {
        None => Ok(None),
        Some(number) => match (number.as_i64(), number.as_f64()) {
            (Some(n), _) => Ok(Some(n)),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
            _ => Err(D::Error::custom(format!("expected a whole number, got {number}"))),
        },
    }
}

/// Reads at most `limit` bytes; more is 413 naming the payload limit, sent
/// once the rest of the body is drained (bounded) so the client reads it.
pub async fn read_limited(
    headers: &HeaderMap,
    body: axum::body::Body,
    limit: usize,
    max_payload: usize,
) -> Result<Bytes, AppError> {
    let too_large = AppError::PayloadTooLarge { limit: max_payload };
    let declared_len =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared_len.filter(|len| *len > limit as u64) {
        drain_refused_body(headers, len, body).await;
        return Err(too_large);
    }
    let mut body = body;
    use http_body_util::BodyExt as _;
    match http_body_util::Limited::new(&mut body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            // Chunked: how much follows is unknown; the drain's own bounds apply.
            drain_refused_body(headers, 0, body).await;
            Err(too_large)
        }
        Err(err) => Err(AppError::bad_request("invalid_body", format!("could not read the request body: {err}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
    }

    #[test]
    fn unknown_query_parameters() {
        assert!(reject_unknown_query(None, &[]).is_ok());
        assert!(reject_unknown_query(Some(""), &[]).is_ok());
        assert!(reject_unknown_query(Some("ttl=5"), &["ttl"]).is_ok());
        let err = reject_unknown_query(Some("ttl=5&ttl%5Fseconds=5"), &["ttl"]).unwrap_err();
        assert_eq!(err.code(), "unknown_query_parameter");
        assert_eq!(err.to_string(), "unknown query parameter `ttl_seconds`; this route accepts: ttl");
        let err = reject_unknown_query(Some("visibility=private"), &[]).unwrap_err();
        assert!(err.to_string().contains("`visibility`"), "{err}");
    }

    #[test]
    fn bearer_tokens() {
        let mut headers = HeaderMap::new();
        assert_eq!(token_from_headers(&headers, "x-t").unwrap(), None);
        headers.insert(header::AUTHORIZATION, "Bearer chp_abc".parse().unwrap());
        assert_eq!(token_from_headers(&headers, "x-t").unwrap(), Some("chp_abc"));
        headers.insert(header::AUTHORIZATION, "Basic Zm9v".parse().unwrap());
        assert!(token_from_headers(&headers, "x-t").is_err());
        headers.insert("x-t", "chp_direct".parse().unwrap());
        assert_eq!(token_from_headers(&headers, "x-t").unwrap(), Some("chp_direct"));
    }
}
