//! Where read_channel_messages gets messages: in-process when this process
//! also runs the channels role (`--role all`) or no channels role URL is
//! configured, otherwise the channels role's internal API
//! (CHANNELS_INTERNAL_URL + INTERNAL_API_TOKEN).

use std::time::Duration;

use crate::domain::{ChannelId, MessageId, ReadToken};
use crate::error::AppError;
use crate::service::Service;
use crate::service::views::MessagePage;

#[derive(Clone)]
pub enum MessageSource {
    InProcess,
    Internal { client: reqwest::Client, base_url: String, token: String },
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(serde::Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// A page as the internal API returns it (the same shape as `MessagePage`).
#[derive(serde::Deserialize)]
pub struct RemotePage {
    pub messages: Vec<RemoteMessage>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

#[derive(serde::Deserialize)]
pub struct RemoteMessage {
    pub id: String,
    pub channel_id: String,
    pub payload: String,
    pub content_type: String,
    pub created_at: String,
    pub expires_at: String,
}

impl MessageSource {
    pub fn internal(base_url: &str, token: &str) -> Self {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap_or_default();
        MessageSource::Internal { client, base_url: base_url.trim_end_matches('/').to_owned(), token: token.to_owned() }
    }

    pub async fn read(
        &self,
        service: &Service,
        channel: ChannelId,
        token: Option<&ReadToken>,
        after: Option<MessageId>,
        limit: u64,
    ) -> Result<RemotePage, AppError> {
        match self {
            MessageSource::InProcess => Ok(from_local(service.read_page(channel, token, after, limit).await?)),
            MessageSource::Internal { client, base_url, token: internal } => {
                let mut request = client
                    .get(format!("{base_url}/internal/v1/channels/{channel}/messages"))
                    .header("x-internal-token", internal)
                    .query(&[("limit", limit.to_string())]);
                if let Some(after) = after {
                    request = request.query(&[("after", after.to_string())]);
                }
                if let Some(read_token) = token {
                    request = request.header("x-read-token", read_token.expose());
                }
                let response = request.send().await.map_err(|err| {
                    tracing::warn!(error = %err, "channels role unreachable");
                    AppError::ChannelsUnavailable
                })?;
                let status = response.status();
                if status.is_success() {
                    return response.json::<RemotePage>().await.map_err(|err| {
                        tracing::error!(error = %err, "unreadable page from the channels role");
                        AppError::Internal
                    });
                }
                let body: ErrorBody = response.json().await.map_err(|_| AppError::Internal)?;
                Err(remote_error(status.as_u16(), body.error))
            }
        }
    }
}

/// Re-creates the channels role's error so the agent sees the same code.
fn remote_error(status: u16, detail: ErrorDetail) -> AppError {
    match detail.code.as_str() {
        "channel_not_found" => AppError::ChannelNotFound,
        "invalid_token" if status == 401 => AppError::InvalidToken,
        "missing_token" => AppError::MissingToken("read_token"),
        "grant_revoked" => AppError::GrantRevoked,
        "grant_expired" => AppError::GrantExpired,
        "invalid_internal_token" => {
            tracing::error!(
                "the channels role refused INTERNAL_API_TOKEN: the roles are configured with different tokens"
            );
            AppError::ChannelsUnavailable
        }
        "database_unavailable" => AppError::DatabaseUnavailable,
        "storage_unavailable" => AppError::StorageUnavailable,
        "invalid_cursor" => AppError::InvalidCursor(detail.message),
        _ if (400..500).contains(&status) => AppError::bad_request("invalid_request", detail.message),
        _ => {
            tracing::error!(status, code = %detail.code, "channels role failed a read");
            AppError::Internal
        }
    }
}

fn from_local(page: MessagePage) -> RemotePage {
    RemotePage {
        messages: page
            .messages
            .into_iter()
            .map(|m| RemoteMessage {
                id: m.id,
                channel_id: m.channel_id,
                payload: m.payload,
                content_type: m.content_type,
                created_at: m.created_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                expires_at: m.expires_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            })
            .collect(),
        next_cursor: page.next_cursor,
        has_more: page.has_more,
    }
}
