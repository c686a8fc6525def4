//! GET /internal/v1/channels/{id}/messages?after=&limit=&from= — a page of
//! messages with payloads, for an mcp role deployed apart. It needs
//! INTERNAL_API_TOKEN (compared in constant time) and, for a private channel,
//! a read token; without a configured internal token it does not exist (404).
//! The edge proxy never routes /internal/*.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use subtle::ConstantTimeEq as _;

use super::read::READ_TOKEN_HEADER;
use crate::http::error::ApiError;
use crate::http::extract::{ChannelPath, query_param, token_from_headers};
use crate::state::AppState;
use chantra_core::domain::{MessageId, ReadToken};
use chantra_core::error::AppError;
use chantra_core::service::MAX_PAGE;
use chantra_core::service::views::MessagePage;

pub const INTERNAL_TOKEN_HEADER: &str = "x-internal-token";
const DEFAULT_LIMIT: u64 = 50;

pub async fn messages(
    State(state): State<AppState>,
    ChannelPath(channel): ChannelPath,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<MessagePage>, ApiError> {
    let Some(expected) = state.http.internal_api_token.as_ref().map(|t| t.expose()) else {
        return Err(AppError::RouteNotFound.into());
    };
    let given = headers.get(INTERNAL_TOKEN_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    if !bool::from(given.ct_eq(expected.as_bytes())) {
        return Err(AppError::InvalidInternalToken.into());
    }
    let after = query_param(query.as_deref(), "after")
        .filter(|a| !a.is_empty())
        .map(|a| MessageId::parse(&a).map_err(|e| AppError::InvalidCursor(format!("after: {e}"))))
        .transpose()?;
    let limit = match query_param(query.as_deref(), "limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => raw.parse::<u64>().ok().filter(|l| (1..=MAX_PAGE).contains(l)).ok_or_else(|| {
            AppError::bad_request("invalid_limit", format!("limit must be a whole number from 1 to {MAX_PAGE}"))
        })?,
    };
    let token = token_from_headers(&headers, READ_TOKEN_HEADER)?.map(ReadToken::parse).transpose()?;
    // from=latest: the newest `limit` messages (the default, from=oldest, pages from `after`).
    let after = match query_param(query.as_deref(), "from").as_deref() {
        None | Some("oldest") => after,
        Some("latest") if after.is_none() => state.service.latest_cursor(channel, token.as_ref(), limit).await?,
        Some("latest") => return Err(AppError::InvalidCursor("give either after or from=latest".into()).into()),
        Some(_) => return Err(AppError::bad_request("invalid_from", "from must be oldest or latest").into()),
    };
    Ok(Json(state.service.read_page(channel, token.as_ref(), after, limit).await?))
}
