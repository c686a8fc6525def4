//! POST /v1/channels/{id}/publish.
//!
//! The Content-Type alone decides what the body is:
//! - [`ENVELOPE_TYPE`] (`application/vnd.chantra.envelope+json`): the
//!   envelope `{"payload":"<base64>","ttl_seconds":N,"content_type":"…"}`;
//! - anything else is the payload itself, stored with that content type
//!   (TTL from `?ttl=`) — so `curl -d '{"temp":21.5}' -H 'content-type:
//!   application/json'` publishes that document, and `curl --data-binary
//!   @file` a file. A JSON type (`application/json`, `application/*+json`)
//!   must carry valid JSON (else 400 `invalid_json`), so readers can rely
//!   on it; no Content-Type is application/octet-stream; curl's `-d` form
//!   type is text/plain; charset=utf-8.
//!
//! The payload limit is enforced while the body streams in: an oversized
//! body is refused after at most limit bytes (immediately, when
//! Content-Length already says so).

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use serde::Deserialize;
use utoipa::ToSchema;

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{
    ChannelPath, PublishAuth, check_json, is_json, query_param, read_limited, require_object, whole_number,
};
use crate::state::AppState;
use chantra_core::domain::{ContentType, IdempotencyKey, Ttl, decode_base64};
use chantra_core::error::AppError;
use chantra_core::service::PublishInput;
use chantra_core::service::views::PublishedMessage;

/// Room for the envelope's other fields around the base64 payload.
const ENVELOPE_SLACK: usize = 16 * 1024;

/// The media type of the base64 envelope: the only way to send one.
pub const ENVELOPE_TYPE: &str = "application/vnd.chantra.envelope+json";

/// curl's `-d` sends this type; for a raw publish the bytes are text.
const FORM_TYPE: &str = "application/x-www-form-urlencoded";
const TEXT_TYPE: &str = "text/plain; charset=utf-8";

/// The envelope form of a publish (Content-Type: application/vnd.chantra.envelope+json).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The payload, base64 (standard or URL-safe alphabet, padding optional); not empty.
    #[schema(min_length = 1, format = Byte)]
    pub payload: String,
    /// Seconds until the message expires: 1 to 172800 (48 h, the default).
    #[schema(minimum = 1, maximum = 172800)]
    #[serde(default, deserialize_with = "whole_number")]
    pub ttl_seconds: Option<i64>,
    /// MIME type handed to readers (default application/octet-stream): printable ASCII with a `/`.
    #[schema(pattern = "^[ -~]*/[ -~]*$", max_length = 255)]
    pub content_type: Option<String>,
}

/// A raw publish body: any bytes, at least one.
pub struct RawPayload;

impl utoipa::PartialSchema for RawPayload {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .min_length(Some(1))
            .into()
    }
}

impl ToSchema for RawPayload {}

/// A JSON payload, published as the document itself.
pub struct JsonPayload;

impl utoipa::PartialSchema for JsonPayload {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType};
        ObjectBuilder::new()
            .schema_type(SchemaType::AnyValue)
            .description(Some("Any JSON document, delivered to readers as that document"))
            .into()
    }
}

impl ToSchema for JsonPayload {}

/// A raw text publish body: at least one character.
pub struct RawText;

impl utoipa::PartialSchema for RawText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).into()
    }
}

impl ToSchema for RawText {}

/// Publish a message: the body is the payload (JSON, text, any bytes), or the base64 envelope under its own media type.
#[utoipa::path(
    post, path = "/v1/channels/{channel_id}/publish", tag = "messages", operation_id = "publish_message",
    params(
        ("channel_id" = String, Path, format = Uuid, description = "Channel id (UUID)"),
        ("X-Publish-Token" = String, Header, description = "The channel's publish token"),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Retries with the same key and the same request (payload, content type, TTL) return the first message instead of a duplicate; the same key with a different request is 409 `idempotency_conflict`. A key is remembered as long as its message exists (its TTL). 1-255 visible ASCII characters"),
        ("ttl" = Option<i64>, Query, minimum = 1, maximum = 172800, description = "TTL in seconds for a raw body (1 to 172800, default 172800)"),
    ),
    request_body(
        description = "The payload itself, stored with its Content-Type (a JSON type must be valid JSON; no type is application/octet-stream; application/x-www-form-urlencoded, curl's -d, is stored as text/plain; charset=utf-8), or the base64 envelope as application/vnd.chantra.envelope+json",
        content(
            (PublishRequest = "application/vnd.chantra.envelope+json"),
            (JsonPayload = "application/json"),
            (RawPayload = "application/octet-stream"),
            (RawText = "text/plain"),
        )
    ),
    responses(
        (status = 201, description = "Message stored (or replayed for a repeated Idempotency-Key)", body = PublishedMessage),
        (status = 400, description = "Malformed id, body (`invalid_json`: a JSON type that is not valid JSON), TTL, content type, key or query parameter", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
        (status = 409, description = "The Idempotency-Key was used for a different request (`idempotency_conflict`)", body = ErrorBody),
        (status = 413, description = "Payload over the limit", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Backend unavailable or timed out; nothing was stored", body = ErrorBody),
    )
)]
pub async fn publish(
    State(state): State<AppState>,
    ChannelPath(id): ChannelPath,
    PublishAuth(token): PublishAuth,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let max_payload = state.http.max_payload_bytes;
    // Not ASCII is not a MIME type: refused as the envelope's content_type would be.
    let declared = match headers.get(header::CONTENT_TYPE).map(|v| v.to_str()) {
        None => None,
        Some(Ok(value)) => Some(value.to_owned()),
        Some(Err(_)) => {
            return Err(AppError::bad_request(
                "invalid_content_type",
                "the Content-Type header must be a MIME type such as text/plain, in printable ASCII",
            )
            .into());
        }
    };
    let envelope = declared.as_deref().is_some_and(is_envelope);
    let body_limit = if envelope { base64_len(max_payload) + ENVELOPE_SLACK } else { max_payload };
    let bytes = read_limited(&headers, body, body_limit, max_payload).await?;

    let query_ttl = query_param(query.as_deref(), "ttl").map(|v| Ttl::parse(&v)).transpose()?;
    let input =
        if envelope { parse_envelope(&bytes, query_ttl)? } else { parse_raw(declared.as_deref(), &bytes, query_ttl)? };
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(IdempotencyKey::parse(v.to_str().unwrap_or_default())?),
    };

    let published = state.service.publish(id, &token, PublishInput { idempotency_key, ..input }).await?;
    let mut response = (StatusCode::CREATED, Json(published.message)).into_response();
    if published.replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn parse_envelope(bytes: &[u8], query_ttl: Option<Ttl>) -> Result<PublishInput, AppError> {
    require_object(bytes)?;
    let request: PublishRequest = serde_json::from_slice(bytes).map_err(|e| {
        AppError::bad_request(
            "invalid_json",
            format!("the body is not a valid publish request ({e}); expected {{\"payload\":\"<base64>\"}}"),
        )
    })?;
    let payload = decode_base64(&request.payload, "payload")?;
    let ttl = match request.ttl_seconds {
        Some(seconds) => Ttl::from_seconds(seconds)?,
        None => query_ttl.unwrap_or_default(),
    };
    // The envelope carries bytes as they are, whatever its content_type says
    // (its schema allows any base64): a JSON type whose bytes do not parse
    // reaches readers as text or base64, never as a JSON document.
    let content_type = request.content_type.as_deref().map(ContentType::parse).transpose()?.unwrap_or_default();
    Ok(PublishInput { payload: Bytes::from(payload), content_type, ttl, idempotency_key: None })
}

/// A body that is the payload itself, of the declared type. The payload is
/// copied out of the body: hyper hands the body over as a slice of the
/// connection's read buffer (8 KiB or more, shared with the requests read
/// after it), and a message kept in the hub's live ring would pin that whole
/// buffer — up to thousands of times the payload's own size, which is all
/// the ring's bound counts.
fn parse_raw(declared: Option<&str>, body: &Bytes, query_ttl: Option<Ttl>) -> Result<PublishInput, AppError> {
    let content_type = match declared.map(str::trim) {
        None | Some("") => ContentType::default(),
        Some(t) if t.eq_ignore_ascii_case(FORM_TYPE) => ContentType::parse(TEXT_TYPE)?,
        Some(t) => ContentType::parse(t)?,
    };
    require_valid_json(&content_type, body)?;
    let payload = Bytes::copy_from_slice(body);
    Ok(PublishInput { payload, content_type, ttl: query_ttl.unwrap_or_default(), idempotency_key: None })
}

/// Whether a Content-Type is the envelope's (parameters ignored).
fn is_envelope(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case(ENVELOPE_TYPE)
}

/// A payload stored as JSON is valid JSON: readers get it as the document
/// itself. Checked without building it (nothing is converted, so any
/// number is accepted as written).
fn require_valid_json(content_type: &ContentType, payload: &[u8]) -> Result<(), AppError> {
    if !is_json(content_type.as_str()) {
        return Ok(());
    }
    check_json(payload).map_err(|e| {
        AppError::bad_request(
            "invalid_json",
            format!(
                "the body is declared {} but is not valid JSON ({e}); send it as text/plain to publish it as it is, \
                 or as {ENVELOPE_TYPE} for the base64 envelope",
                content_type.as_str()
            ),
        )
    })
}

fn base64_len(bytes: usize) -> usize {
    bytes.div_ceil(3) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_accepts_both_alphabets() {
        let input = parse_envelope(br#"{"payload":"aGk-Pz8_"}"#, None).unwrap();
        assert_eq!(&input.payload[..], b"hi>??\x3f".as_slice());
        let input =
            parse_envelope(br#"{"payload":"aGk+Pz8/","ttl_seconds":60,"content_type":"text/plain"}"#, None).unwrap();
        assert_eq!(input.ttl.seconds(), 60);
        assert_eq!(input.content_type.as_str(), "text/plain");
        // JSON Schema's integers include whole-number floats.
        let input = parse_envelope(br#"{"payload":"aGk=","ttl_seconds":60.0}"#, None).unwrap();
        assert_eq!(input.ttl.seconds(), 60);
        let input = parse_envelope(br#"{"payload":"aGk=","ttl_seconds":null}"#, None).unwrap();
        assert_eq!(input.ttl.seconds(), 172_800);
    }

    #[test]
    fn a_raw_payload_owns_its_bytes() {
        // What hyper hands over: a few bytes of a larger shared buffer.
        let buffer = Bytes::from(vec![b'x'; 16 * 1024]);
        let body = buffer.slice(100..110);
        let input = parse_raw(Some("text/plain"), &body, None).unwrap();
        assert_eq!(&input.payload[..], &body[..]);
        // Not a view of the buffer: keeping the payload does not keep the 16 KiB.
        assert!(input.payload.is_unique(), "the payload pins the body's buffer");
        drop((body, input));
        assert!(buffer.is_unique());
    }

    #[test]
    fn envelope_errors_are_client_errors() {
        for (body, code) in [
            (&br#"{"payload":"!!!"}"#[..], "invalid_payload"),
            (br#"{"payload":"aGk=","ttl_seconds":0}"#, "invalid_ttl"),
            (br#"{"payload":"aGk=","ttl_seconds":172801}"#, "invalid_ttl"),
            (br#"{"payload":"aGk=","extra":1}"#, "invalid_json"),
            (br#"{"payload":"aGk=","ttl_seconds":60.5}"#, "invalid_json"),
            (br#"{"payload":"aGk=","ttl_seconds":"60"}"#, "invalid_json"),
            (b"not json", "invalid_json"),
        ] {
            assert_eq!(parse_envelope(body, None).unwrap_err().code(), code);
        }
    }

    #[test]
    fn only_the_envelope_type_is_the_envelope() {
        assert!(is_envelope(ENVELOPE_TYPE));
        assert!(is_envelope("Application/Vnd.Chantra.Envelope+JSON; charset=utf-8"));
        for other in ["application/json", "application/ld+json", "text/plain", ""] {
            assert!(!is_envelope(other), "{other}");
        }
    }

    #[test]
    fn json_payloads_must_parse() {
        let json = ContentType::parse("application/json; charset=utf-8").unwrap();
        assert!(require_valid_json(&json, br#" {"temp": 21.5, "big": 1e400} "#).is_ok());
        assert_eq!(require_valid_json(&json, b"{\"temp\":").unwrap_err().code(), "invalid_json");
        assert_eq!(require_valid_json(&json, b"").unwrap_err().code(), "invalid_json");
        // serde_json skips the bytes of strings unchecked; JSON is UTF-8.
        assert_eq!(require_valid_json(&json, b"[\"\xff\"]").unwrap_err().code(), "invalid_json");
        let text = ContentType::parse("text/plain").unwrap();
        assert!(require_valid_json(&text, b"{\"temp\":").is_ok());
        assert_eq!(
            parse_envelope(br#"{"payload":"e30=","content_type":"application/json"}"#, None).unwrap().payload.as_ref(),
            b"{}"
        );
        // The envelope is not checked: its schema allows any base64 (schemathesis found the 400).
        assert_eq!(
            parse_envelope(br#"{"payload":"ew==","content_type":"application/json"}"#, None).unwrap().payload.as_ref(),
            b"{"
        );
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param(Some("a=1&ttl=60"), "ttl").as_deref(), Some("60"));
        assert_eq!(query_param(None, "ttl"), None);
        assert_eq!(base64_len(1024 * 1024), 1_398_104);
    }
}
