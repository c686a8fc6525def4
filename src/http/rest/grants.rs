//! Read grants of private channels: create, list and revoke.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ChannelPath, GrantPath, OptionalJson, PublishAuth, query_param};
use crate::state::AppState;
use chantra_core::domain::{GrantId, Label};
use chantra_core::error::AppError;
use chantra_core::service::views::{CreatedGrant, GrantPage, GrantView};
use chantra_core::service::{GRANTS_IN_VIEW, MAX_GRANT_PAGE};

/// Body of a grant creation; may be omitted entirely.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGrantRequest {
    /// A name for the reader, e.g. "dashboard" (at most 200 characters, no control characters).
    #[schema(max_length = 200, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub label: Option<String>,
    /// Lifetime of the grant in seconds (1 to 31536000); none means until revoked.
    #[schema(minimum = 1, maximum = 31536000)]
    #[serde(default, deserialize_with = "crate::http::extract::whole_number")]
    pub expires_in_seconds: Option<i64>,
}

/// Create a read grant on a private channel; its token is shown only here.
#[utoipa::path(
    post, path = "/v1/channels/{channel_id}/read-grants", tag = "read grants", operation_id = "create_read_grant",
    params(
        ("channel_id" = String, Path, format = Uuid, description = "Channel id (UUID)"),
        ("X-Publish-Token" = String, Header, description = "The channel's publish token"),
    ),
    request_body(content = Option<CreateGrantRequest>, content_type = "application/json"),
    responses(
        (status = 201, description = "Grant created", body = CreatedGrant),
        (status = 400, description = "Malformed id or body", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
        (status = 409, description = "The channel is public (`channel_is_public`), or already holds MAX_GRANTS_PER_CHANNEL grants, revoked and expired ones included until they are purged (`too_many_grants`)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Backend unavailable", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    ChannelPath(id): ChannelPath,
    PublishAuth(token): PublishAuth,
    OptionalJson(body): OptionalJson<CreateGrantRequest>,
) -> Result<(StatusCode, Json<CreatedGrant>), ApiError> {
    let label = body.label.as_deref().map(Label::parse).transpose()?;
    let created = state.service.create_grant(id, &token, label, body.expires_in_seconds).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// List a channel's read grants, oldest first, a page at a time (never their tokens).
///
/// Revoked and expired grants are listed until the sweeper purges them
/// (GRANT_PURGE_GRACE_SECS after they end). Follow `next_cursor` while `has_more`.
#[utoipa::path(
    get, path = "/v1/channels/{channel_id}/read-grants", tag = "read grants", operation_id = "list_read_grants",
    params(
        ("channel_id" = String, Path, format = Uuid, description = "Channel id (UUID)"),
        ("X-Publish-Token" = String, Header, description = "The channel's publish token"),
        ("after" = Option<String>, Query, format = Uuid, description = "Grants after this grant id (a page's `next_cursor`); none: from the oldest"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 500, description = "Grants per page (1 to 500, default 100)"),
    ),
    responses(
        (status = 200, description = "A page of grants", body = GrantPage),
        (status = 400, description = "Malformed id, cursor or limit", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Backend unavailable", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    ChannelPath(id): ChannelPath,
    PublishAuth(token): PublishAuth,
    RawQuery(query): RawQuery,
) -> Result<Json<GrantPage>, ApiError> {
    let after = query_param(query.as_deref(), "after")
        .map(|raw| {
            GrantId::parse(&raw).map_err(|_| {
                AppError::InvalidCursor(format!("after must be a grant id (a page's next_cursor), got `{raw}`"))
            })
        })
        .transpose()?;
    let limit = match query_param(query.as_deref(), "limit") {
        None => GRANTS_IN_VIEW,
        Some(raw) => raw.parse::<u64>().ok().filter(|n| (1..=MAX_GRANT_PAGE).contains(n)).ok_or_else(|| {
            AppError::bad_request(
                "invalid_limit",
                format!("limit must be a whole number from 1 to {MAX_GRANT_PAGE}, got `{raw}`"),
            )
        })?,
    };
    Ok(Json(state.service.list_grants(id, &token, after, limit).await?))
}

/// Revoke a read grant; streams opened with it are closed. Idempotent.
#[utoipa::path(
    post, path = "/v1/channels/{channel_id}/read-grants/{grant_id}/revoke", tag = "read grants", operation_id = "revoke_read_grant",
    params(
        ("channel_id" = String, Path, format = Uuid, description = "Channel id (UUID)"),
        ("grant_id" = String, Path, format = Uuid, description = "Grant id (UUID)"),
        ("X-Publish-Token" = String, Header, description = "The channel's publish token"),
    ),
    responses(
        (status = 200, description = "The grant, now revoked", body = GrantView),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such channel or grant", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Backend unavailable", body = ErrorBody),
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    GrantPath(id, grant): GrantPath,
    PublishAuth(token): PublishAuth,
) -> Result<Json<GrantView>, ApiError> {
    Ok(Json(state.service.revoke_grant(id, &token, grant).await?))
}
