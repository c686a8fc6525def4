//! The service's errors as HTTP responses: `{"error":{"code","message"}}`
//! with the error's status and, where a retry helps, `Retry-After`. The
//! service layer (chantra-core) knows codes and status numbers only; this
//! is the one place they become a response.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chantra_core::domain::{ParseIdError, TokenError, ValidationError};
use chantra_core::error::AppError;
use serde::Serialize;

/// An [`AppError`] on its way out of a handler or extractor.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        Self(err)
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        Self(err.into())
    }
}

impl From<ParseIdError> for ApiError {
    fn from(err: ParseIdError) -> Self {
        Self(err.into())
    }
}

impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> Self {
        Self(err.into())
    }
}

/// The JSON error shape of every role.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable, snake_case.
    #[schema(example = "channel_not_found")]
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let err = self.0;
        let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody { error: ErrorDetail { code: err.code().to_owned(), message: err.to_string() } };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = err.retry_after_secs() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The response for `err` (for middleware that answers without a handler).
pub fn respond(err: AppError) -> Response {
    ApiError(err).into_response()
}
