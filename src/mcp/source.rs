//! Where read_channel_messages gets messages: in-process when this process
//! also runs the channels role (`--role all`) or no channels role URL is
//! configured, otherwise the channels role's internal API
//! (CHANNELS_INTERNAL_URL + INTERNAL_API_TOKEN).
//!
//! A page is bounded in bytes (PAGE_MAX_BYTES) by the service that builds
//! it; the internal API's answer is read with a byte cap on top, so a
//! channels role configured with a larger budget (or none) cannot make this
//! process buffer an arbitrarily large body.

use std::time::Duration;

use chantra_core::db::entity::message;
use chantra_core::domain::{ChannelId, MessageId, ReadToken};
use chantra_core::error::AppError;
use chantra_core::service::Service;
use chantra_core::service::views::MessagePage;

/// Room per message for everything but its payload (ids, content type,
/// timestamps, JSON punctuation) in an internal API page.
const ENVELOPE_PER_MESSAGE: usize = 1024;
/// Room for the page's own fields.
const PAGE_SLACK: usize = 64 * 1024;
/// The largest error body read from the channels role.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The largest internal API page body accepted: the page budget plus one
/// payload at the limit (a page always carries at least one message, however
/// large), in base64, plus each message's envelope.
pub fn max_remote_page_bytes(page_max_bytes: usize, max_payload_bytes: usize) -> usize {
    page_max_bytes.saturating_add(max_payload_bytes).div_ceil(3).saturating_mul(4)
        + chantra_core::service::MAX_PAGE as usize * ENVELOPE_PER_MESSAGE
        + PAGE_SLACK
}

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStart {
    /// After a cursor; `None`: from the oldest kept message.
    After(Option<MessageId>),
    /// The newest `limit` messages (oldest first within the page).
    Latest,
}

#[derive(Clone)]
pub enum MessageSource {
    InProcess,
    Internal { client: reqwest::Client, base_url: String, token: String, max_body: usize },
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
    /// Absent from a channels role older than the page budget.
    #[serde(default)]
    pub truncated: bool,
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
    /// Reads through the internal API at `base_url`, refusing page bodies over `max_body` bytes.
    pub fn internal(base_url: &str, token: &str, max_body: usize) -> Self {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap_or_default();
        MessageSource::Internal {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            max_body,
        }
    }

    pub async fn read(
        &self,
        service: &Service,
        channel: ChannelId,
        token: Option<&ReadToken>,
        start: PageStart,
        limit: u64,
    ) -> Result<RemotePage, AppError> {
        match self {
            MessageSource::InProcess => {
                let after = match start {
                    PageStart::After(after) => after,
                    PageStart::Latest => service.latest_cursor(channel, token, limit).await?,
                };
                Ok(from_local(service.read_page(channel, token, after, limit).await?))
            }
            MessageSource::Internal { client, base_url, token: internal, max_body } => {
                let mut request = client
                    .get(format!("{base_url}/internal/v1/channels/{channel}/messages"))
                    .header("x-internal-token", internal)
                    .query(&[("limit", limit.to_string())]);
                match start {
                    PageStart::After(Some(after)) => request = request.query(&[("after", after.to_string())]),
                    PageStart::After(None) => {}
                    PageStart::Latest => request = request.query(&[("from", "latest")]),
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
                    let Some(body) = read_bounded(response, *max_body).await? else {
                        tracing::error!(
                            max_body,
                            "a page from the channels role exceeds the cap: is its PAGE_MAX_BYTES larger than this role's?"
                        );
                        return Err(AppError::bad_request(
                            "page_too_large",
                            format!("this page is larger than {max_body} bytes; read again with a smaller limit"),
                        ));
                    };
                    return serde_json::from_slice::<RemotePage>(&body).map_err(|err| {
                        tracing::error!(error = %err, "unreadable page from the channels role");
                        AppError::Internal
                    });
                }
                let body = read_bounded(response, MAX_ERROR_BODY).await?.ok_or(AppError::Internal)?;
                let body: ErrorBody = serde_json::from_slice(&body).map_err(|_| AppError::Internal)?;
                Err(remote_error(status.as_u16(), body.error))
            }
        }
    }
}

/// The response body, read chunk by chunk; `None` as soon as it would pass
/// `cap` bytes (nothing more is read or kept).
async fn read_bounded(mut response: reqwest::Response, cap: usize) -> Result<Option<Vec<u8>>, AppError> {
    let declared = response.content_length().unwrap_or(0);
    if declared > cap as u64 {
        return Ok(None);
    }
    let mut body = Vec::with_capacity(declared as usize);
    loop {
        let chunk = response.chunk().await.map_err(|err| {
            tracing::warn!(error = %err, "reading a page from the channels role failed");
            AppError::ChannelsUnavailable
        })?;
        let Some(chunk) = chunk else { return Ok(Some(body)) };
        if body.len() + chunk.len() > cap {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
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

/// A message from the live stream (or its replay) in the shape a page carries.
pub fn stream_message(row: &message::Model, payload: &[u8]) -> RemoteMessage {
    use base64::Engine as _;
    RemoteMessage {
        id: row.id.to_string(),
        channel_id: row.channel_id.to_string(),
        payload: base64::engine::general_purpose::STANDARD.encode(payload),
        content_type: row.content_type.clone(),
        created_at: row.created_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        expires_at: row.expires_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
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
        truncated: page.truncated,
    }
}
