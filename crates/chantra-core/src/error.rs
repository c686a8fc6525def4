//! One error type for the whole service layer. Each variant has a stable
//! snake_case code, an HTTP status number and a message a person can act
//! on; the binary's HTTP edge renders it as `{"error":{"code","message"}}`,
//! MCP as a tool error with the same code and message. Backend failures are
//! logged here with their cause and reach clients only as a generic 503/500.
//!
//! The status is a plain number so this crate needs no HTTP library: the
//! edge turns it into a response (chantra's `http::error`).

use crate::db;
use crate::domain::{ParseIdError, TokenError, ValidationError};
use crate::payload::StoreError;

/// Retry-After of a refusal for want of a stream or connection slot.
const SLOT_RETRY_SECS: u64 = 5;
/// Retry-After of a client over its MCP session cap (a slot frees when a
/// session is deleted or idles out).
const SESSION_RETRY_SECS: u64 = 30;

/// Retry-After of a rate-limited request: the limiter's wait, whole
/// seconds, never 0 (a header of 0 invites an immediate retry).
fn rate_limit_retry_secs(wait: u64) -> u64 {
    wait.max(1)
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("this endpoint needs a token in the {0} header")]
    MissingToken(&'static str),
    #[error("the token is not valid for this channel")]
    InvalidToken,
    #[error("the read grant has been revoked")]
    GrantRevoked,
    #[error("the read grant has expired")]
    GrantExpired,
    #[error("no channel with this id")]
    ChannelNotFound,
    #[error("no read grant with this id on this channel")]
    GrantNotFound,
    #[error("no such route; see /openapi.json")]
    RouteNotFound,
    #[error("this method is not allowed on this route")]
    MethodNotAllowed,
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("the payload is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request URI is longer than {limit} bytes")]
    UriTooLong { limit: usize },
    // The message and Retry-After say the same number (at least 1 s).
    #[error("too many requests; retry after {} s", rate_limit_retry_secs(*.retry_after_secs))]
    RateLimited { retry_after_secs: u64 },
    #[error("the database is unavailable; retry shortly")]
    DatabaseUnavailable,
    #[error("the payload store is unavailable; retry shortly")]
    StorageUnavailable,
    #[error("the request took too long; retry shortly")]
    Timeout,
    #[error("too many open streams from this client (limit {limit}); close one, or retry after {} s", SLOT_RETRY_SECS)]
    TooManyStreams { limit: usize },
    #[error("this server has no room for more streams; retry shortly or elsewhere")]
    ServerBusy,
    #[error(
        "too many MCP sessions from this client (limit {limit}); close one (HTTP DELETE), or retry after {} s when one idles out",
        SESSION_RETRY_SECS
    )]
    TooManySessionsFromClient { limit: usize },
    #[error("this server has no room for more MCP sessions (limit {limit}); retry shortly or elsewhere")]
    TooManySessions { limit: usize },
    #[error("{0}")]
    InvalidCursor(String),
    #[error("the channels role is unavailable; retry shortly")]
    ChannelsUnavailable,
    #[error("the internal API token is missing or wrong")]
    InvalidInternalToken,
    #[error("internal error")]
    Internal,
}

impl AppError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        AppError::BadRequest { code, message: message.into() }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest { code, .. } | AppError::Conflict { code, .. } => code,
            AppError::MissingToken(_) => "missing_token",
            AppError::InvalidToken => "invalid_token",
            AppError::GrantRevoked => "grant_revoked",
            AppError::GrantExpired => "grant_expired",
            AppError::ChannelNotFound => "channel_not_found",
            AppError::GrantNotFound => "grant_not_found",
            AppError::RouteNotFound => "not_found",
            AppError::MethodNotAllowed => "method_not_allowed",
            AppError::PayloadTooLarge { .. } => "payload_too_large",
            AppError::UnsupportedMediaType(_) => "unsupported_media_type",
            AppError::UriTooLong { .. } => "uri_too_long",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::DatabaseUnavailable => "database_unavailable",
            AppError::StorageUnavailable => "storage_unavailable",
            AppError::Timeout => "timeout",
            AppError::TooManyStreams { .. } => "too_many_streams",
            AppError::ServerBusy => "server_busy",
            AppError::TooManySessionsFromClient { .. } | AppError::TooManySessions { .. } => "too_many_sessions",
            AppError::InvalidCursor(_) => "invalid_cursor",
            AppError::ChannelsUnavailable => "channels_unavailable",
            AppError::InvalidInternalToken => "invalid_internal_token",
            AppError::Internal => "internal_error",
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            AppError::BadRequest { .. } | AppError::InvalidCursor(_) => 400,
            AppError::MissingToken(_)
            | AppError::InvalidToken
            | AppError::GrantRevoked
            | AppError::GrantExpired
            | AppError::InvalidInternalToken => 401,
            AppError::ChannelNotFound | AppError::GrantNotFound | AppError::RouteNotFound => 404,
            AppError::MethodNotAllowed => 405,
            AppError::Conflict { .. } => 409,
            AppError::PayloadTooLarge { .. } => 413,
            AppError::UnsupportedMediaType(_) => 415,
            AppError::UriTooLong { .. } => 414,
            AppError::RateLimited { .. }
            | AppError::TooManyStreams { .. }
            | AppError::TooManySessionsFromClient { .. } => 429,
            AppError::DatabaseUnavailable
            | AppError::StorageUnavailable
            | AppError::Timeout
            | AppError::ServerBusy
            | AppError::TooManySessions { .. }
            | AppError::ChannelsUnavailable => 503,
            AppError::Internal => 500,
        }
    }

    /// Seconds a client should wait before retrying (`Retry-After`), if any.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            AppError::RateLimited { retry_after_secs } => Some(rate_limit_retry_secs(*retry_after_secs)),
            AppError::DatabaseUnavailable
            | AppError::StorageUnavailable
            | AppError::Timeout
            | AppError::ChannelsUnavailable => Some(2),
            AppError::TooManyStreams { .. } | AppError::ServerBusy | AppError::TooManySessions { .. } => {
                Some(SLOT_RETRY_SECS)
            }
            // A slot frees when a session is deleted or idles out.
            AppError::TooManySessionsFromClient { .. } => Some(SESSION_RETRY_SECS),
            _ => None,
        }
    }
}

impl From<ValidationError> for AppError {
    fn from(err: ValidationError) -> Self {
        AppError::BadRequest { code: err.code, message: err.message }
    }
}

impl From<ParseIdError> for AppError {
    fn from(err: ParseIdError) -> Self {
        AppError::bad_request("invalid_id", err.to_string())
    }
}

impl From<TokenError> for AppError {
    fn from(_: TokenError) -> Self {
        AppError::InvalidToken
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(err: sea_orm::DbErr) -> Self {
        match db::classify(&err) {
            db::Failure::Unavailable => {
                tracing::warn!(error = %err, "database unavailable");
                AppError::DatabaseUnavailable
            }
            failure => {
                tracing::error!(error = %err, ?failure, "unexpected database error");
                AppError::Internal
            }
        }
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        tracing::warn!(error = %err, "payload store error");
        AppError::StorageUnavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 429's message names the wait its Retry-After header gives.
    #[test]
    fn too_many_requests_say_the_retry_after_seconds() {
        for err in [
            AppError::RateLimited { retry_after_secs: 0 },
            AppError::RateLimited { retry_after_secs: 7 },
            AppError::TooManyStreams { limit: 3 },
            AppError::TooManySessionsFromClient { limit: 3 },
        ] {
            assert_eq!(err.status(), 429);
            let secs = err.retry_after_secs().expect("a 429 has Retry-After");
            assert!(secs >= 1);
            assert!(err.to_string().contains(&format!("retry after {secs} s")), "{err}");
        }
    }
}
