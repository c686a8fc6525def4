//! POST /v1/channels, GET and DELETE /v1/channels/{id}.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ChannelPath, OptionalJson, PublishAuth};
use crate::state::AppState;
use chantra_core::domain::Visibility;
use chantra_core::service::views::{ChannelView, CreatedChannel};

/// Body of a channel creation; may be omitted entirely.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannelRequest {
    /// `public` (anyone with the URL reads) or `private` (read grants needed). Default public.
    #[serde(default)]
    pub visibility: Visibility,
}

/// Create a channel. Returns its URL and tokens, which are shown only here.
#[utoipa::path(
    post, path = "/v1/channels", tag = "channels", operation_id = "create_channel",
    request_body(content = Option<CreateChannelRequest>, content_type = "application/json"),
    responses(
        (status = 201, description = "Channel created", body = CreatedChannel),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Backend unavailable", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    OptionalJson(body): OptionalJson<CreateChannelRequest>,
) -> Result<(StatusCode, Json<CreatedChannel>), ApiError> {
    let created = state.service.create_channel(body.visibility).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Channel metadata: URL, activity, idle-deletion date and the first 100
/// read grants with their total (`GET …/read-grants` pages through all).
#[utoipa::path(
    get, path = "/v1/channels/{channel_id}", tag = "channels", operation_id = "get_channel",
    params(
        ("channel_id" = String, Path, format = Uuid, description = "Channel id (UUID)"),
        ("X-Publish-Token" = String, Header, description = "The channel's publish token (or `Authorization: Bearer chp_…`)"),
    ),
    responses(
        (status = 200, description = "Channel metadata", body = ChannelView),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Backend unavailable", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    ChannelPath(id): ChannelPath,
    PublishAuth(token): PublishAuth,
) -> Result<Json<ChannelView>, ApiError> {
    Ok(Json(state.service.get_channel(id, &token).await?))
}

/// Delete a channel with its messages, grants and payloads; live readers are closed.
#[utoipa::path(
    delete, path = "/v1/channels/{channel_id}", tag = "channels", operation_id = "delete_channel",
    params(
        ("channel_id" = String, Path, format = Uuid, description = "Channel id (UUID)"),
        ("X-Publish-Token" = String, Header, description = "The channel's publish token"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such channel", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Backend unavailable", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    ChannelPath(id): ChannelPath,
    PublishAuth(token): PublishAuth,
) -> Result<StatusCode, ApiError> {
    state.service.delete_channel(id, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}
