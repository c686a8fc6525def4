//! Reading: who may read a channel, and its messages after a cursor — for
//! SSE replay, for catching up after lag, and for the internal read API.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt as _, TryStreamExt as _};

use super::stream::Revocation;
use super::views::{MessageEvent, MessagePage};
use super::{Service, visibility_of};
use crate::db::{self, entity::message};
use crate::domain::{ChannelId, GrantId, MessageId, ReadToken, Visibility};
use crate::error::AppError;
use crate::fanout::{HubEvent, LiveMessage};
use crate::payload::StoreError;

/// Payloads fetched concurrently while building a page.
const FETCH_CONCURRENCY: usize = 8;
/// Largest page of the internal read API.
pub const MAX_PAGE: u64 = 500;

/// A reader let in: which channel, and through which grant (private channels).
#[derive(Debug, Clone)]
pub struct Reader {
    pub channel: ChannelId,
    pub grant: Option<GrantId>,
    pub grant_expires_at: Option<DateTime<Utc>>,
}

/// What a recheck found about a reader already let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderState {
    Allowed,
    Revoked(Revocation),
    ChannelGone,
}

/// Where a resuming reader's replay starts, and the gap to announce first.
#[derive(Debug, Clone)]
pub struct ReplayStart {
    pub after: MessageId,
    pub gap: Option<Gap>,
    /// The channel's newest message id (expired or not), read with the plan.
    pub newest: Option<MessageId>,
}

/// Messages after a reader's cursor that it will not get (expired, purged,
/// or beyond the replay cap): announced before the replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The oldest message still kept after the cursor, where the replay
    /// starts (`None`: nothing is left, the replay is empty).
    pub oldest_available: Option<MessageId>,
    /// The cursor the reader asked to resume after.
    pub requested_after: MessageId,
}

impl Service {
    /// Lets a reader in: the channel must exist with this visibility, and a
    /// private channel needs a live grant's token (one indexed lookup).
    /// `expected` is the visibility the reader asked for (the URL path); a
    /// mismatch is 404. `None` accepts whatever the channel is.
    pub async fn authorize_reader(
        &self,
        id: ChannelId,
        expected: Option<Visibility>,
        token: Option<&ReadToken>,
    ) -> Result<Reader, AppError> {
        // Shared with the readers of this channel asking at the same moment (a reconnect storm).
        let channel = self.shared_reads.channels.get(id, || db::channels::find(&self.db, id)).await?;
        let channel = channel.ok_or(AppError::ChannelNotFound)?;
        let visibility = visibility_of(&channel)?;
        if expected.is_some_and(|expected| expected != visibility) {
            return Err(AppError::ChannelNotFound);
        }
        if visibility == Visibility::Public {
            return Ok(Reader { channel: id, grant: None, grant_expires_at: None });
        }
        let token = token.ok_or(AppError::MissingToken("X-Read-Token"))?;
        let hash = self.hasher.hash_read(token);
        let grant = db::grants::find_by_token_hash(&self.db, &hash).await?.ok_or(AppError::InvalidToken)?;
        if grant.channel_id != id || !hash.matches(&grant.token_hash) {
            return Err(AppError::InvalidToken);
        }
        self.check_grant_state(&grant)?;
        Ok(Reader { channel: id, grant: Some(grant.id), grant_expires_at: grant.expires_at })
    }

    /// Whether a reader may still read (asked after deletions or revocations
    /// may have been missed): its grant is live, and with `check_channel`
    /// its channel still exists. A public reader costs no query without it.
    /// An error means the database could not tell (ask again later).
    pub async fn recheck_reader(&self, reader: &Reader, check_channel: bool) -> Result<ReaderState, AppError> {
        let Some(grant) = reader.grant else {
            if check_channel && !self.channel_exists(reader.channel).await? {
                return Ok(ReaderState::ChannelGone);
            }
            return Ok(ReaderState::Allowed);
        };
        Ok(match db::grants::find(&self.db, reader.channel, grant).await? {
            Some(row) => match self.check_grant_state(&row) {
                Ok(()) => ReaderState::Allowed,
                Err(AppError::GrantExpired) => ReaderState::Revoked(Revocation::Expired),
                Err(_) => ReaderState::Revoked(Revocation::Revoked),
            },
            // Grants go with their channel: tell a deletion from a revocation.
            None if !self.channel_exists(reader.channel).await? => ReaderState::ChannelGone,
            None => ReaderState::Revoked(Revocation::Revoked),
        })
    }

    fn check_grant_state(&self, grant: &db::entity::read_grant::Model) -> Result<(), AppError> {
        if grant.revoked_at.is_some() {
            return Err(AppError::GrantRevoked);
        }
        if grant.expires_at.is_some_and(|at| at <= self.clock.now()) {
            return Err(AppError::GrantExpired);
        }
        Ok(())
    }

    /// Plans the replay of a reader resuming after `cursor` (a message id,
    /// or the floor of a `since` time): a gap event when more than `cap`
    /// messages follow it (then only the newest `cap` are replayed), or when
    /// a message after it existed and cannot be delivered — expired but not
    /// yet purged, or purged (the channel's `purged_through` is past the
    /// cursor). A cursor older than the channel, with nothing lost, is no gap.
    pub async fn plan_replay(&self, channel: ChannelId, cursor: MessageId, cap: u64) -> Result<ReplayStart, AppError> {
        // Read now, not when the reader was let in: the sweeper raises the
        // mark before it deletes, so a purge in between is never missed.
        // Shared with readers resuming from the same cursor at the same moment.
        let state = self
            .shared_reads
            .resumes
            .get((channel, cursor, cap), || {
                db::messages::resume_state(&self.db, channel, cursor, self.clock.now(), cap)
            })
            .await?
            .ok_or(AppError::ChannelNotFound)?;
        let now = self.clock.now();
        let newest = state.newest;
        if state.past_cap.is_some()
            && let Some(first) = db::messages::nth_newest(&self.db, channel, cap.saturating_sub(1), now).await?
        {
            let gap = Gap { oldest_available: Some(first.id), requested_after: cursor };
            return Ok(ReplayStart { after: first.id.just_before(), gap: Some(gap), newest });
        }
        let lost = state.purged_through.is_some_and(|through| through > cursor) || state.expired_after;
        if !lost {
            return Ok(ReplayStart { after: cursor, gap: None, newest });
        }
        let first = db::messages::page_after(&self.db, channel, Some(cursor), now, 1).await?.pop();
        let gap = Gap { oldest_available: first.map(|first| first.id), requested_after: cursor };
        Ok(ReplayStart { after: cursor, gap: Some(gap), newest })
    }

    /// The events of `rows` whose payloads can be loaded whole, in order.
    async fn load_events(&self, rows: Vec<message::Model>) -> Result<Vec<(message::Model, MessageEvent)>, AppError> {
        let loaded: Vec<Option<(message::Model, MessageEvent)>> = futures::stream::iter(rows)
            .map(|row| async move {
                let payload = self.load_payload(&row).await?;
                Ok::<_, AppError>(payload.map(|payload| {
                    let event = message_event(&row, &payload);
                    (row, event)
                }))
            })
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(loaded.into_iter().flatten().collect())
    }

    /// A message's payload, checked whole: `None` (logged) when its object
    /// is missing or its length is not the row's `payload_size` — a torn or
    /// truncated object is treated as missing, never delivered as data. An
    /// unreachable store is an error (the caller retries).
    async fn load_payload(&self, row: &message::Model) -> Result<Option<Bytes>, AppError> {
        match self.stored_payload(row).await? {
            Some(payload) if i64::try_from(payload.len()).ok() == Some(row.payload_size) => Ok(Some(payload)),
            Some(payload) => {
                tracing::warn!(
                    message = %row.id,
                    stored = payload.len(),
                    expected = row.payload_size,
                    "payload object is not whole; skipping the message"
                );
                Ok(None)
            }
            None => {
                tracing::warn!(message = %row.id, "payload object missing; skipping the message");
                Ok(None)
            }
        }
    }

    /// A message's payload as stored (`None`: missing): for a payload kept
    /// in the database (`payload_inline`), from the cache in front of the
    /// store, else from its row; otherwise from the store (through that
    /// cache). An unreachable store or database is an error.
    pub(super) async fn stored_payload(&self, row: &message::Model) -> Result<Option<Bytes>, AppError> {
        if !row.payload_inline {
            return match self.store.get(&row.payload_object_key).await {
                Ok(payload) => Ok(Some(payload)),
                Err(StoreError::NotFound) => Ok(None),
                Err(err) => Err(err.into()),
            };
        }
        if let Some(payload) = self.store.recall(&row.payload_object_key) {
            return Ok(Some(payload));
        }
        let Some(payload) = db::messages::inline_payload(&self.db, row.id).await? else { return Ok(None) };
        let payload = Bytes::from(payload);
        self.store.remember(&row.payload_object_key, &payload);
        Ok(Some(payload))
    }

    /// Up to `limit` unexpired messages after `after`, rows only (no
    /// payloads): what a replay walks through, loading one payload at a time.
    pub async fn replay_rows(
        &self,
        channel: ChannelId,
        after: MessageId,
        limit: u64,
    ) -> Result<Vec<message::Model>, AppError> {
        // Shared with readers replaying from the same place at the same moment.
        let page = || db::messages::page_after(&self.db, channel, Some(after), self.clock.now(), limit);
        Ok(self.shared_reads.pages.get((channel, after, limit), page).await?)
    }

    /// The payload of one replayed message, loaded now; `None` if it
    /// expired meanwhile or its payload is gone or not whole.
    pub async fn replay_payload(&self, row: &message::Model) -> Result<Option<Bytes>, AppError> {
        if row.expires_at <= self.clock.now() {
            return Ok(None);
        }
        self.load_payload(row).await
    }

    /// One committed message as the hub carries it ([`Service::hub_event`]);
    /// `None` if it is gone.
    pub async fn message_for_broadcast(&self, channel: ChannelId, id: MessageId) -> Result<Option<HubEvent>, AppError> {
        let Some(row) = db::messages::find(&self.db, channel, id).await? else { return Ok(None) };
        self.hub_event(&row).await
    }

    /// A committed message as the hub carries it: with its payload, or only
    /// its id when it is too large for the live ring — then its payload is
    /// not loaded here at all; each reader loads it within the replay memory
    /// budget. `None` if it expired or its payload is gone or not whole.
    pub async fn hub_event(&self, row: &message::Model) -> Result<Option<HubEvent>, AppError> {
        if row.expires_at <= self.clock.now() {
            return Ok(None);
        }
        if !self.fanout.hub().carries_frame(row.payload_size) {
            return Ok(Some(HubEvent::Stored { id: row.id, expires_at: row.expires_at }));
        }
        Ok(self.load_payload(row).await?.map(|payload| HubEvent::Message(LiveMessage::new(row.clone(), payload))))
    }

    /// The newest message id of a channel, if any: where a live-only reader starts.
    pub async fn newest_message_id(&self, channel: ChannelId) -> Result<Option<MessageId>, AppError> {
        Ok(db::messages::newest_id(&self.db, channel).await?)
    }

    /// Whether the channel still exists.
    pub async fn channel_exists(&self, channel: ChannelId) -> Result<bool, AppError> {
        Ok(db::channels::find(&self.db, channel).await?.is_some())
    }

    /// A page for the internal read API (and MCP's read_channel_messages).
    pub async fn read_page(
        &self,
        id: ChannelId,
        token: Option<&ReadToken>,
        after: Option<MessageId>,
        limit: u64,
    ) -> Result<MessagePage, AppError> {
        self.authorize_reader(id, None, token).await?;
        let limit = limit.clamp(1, MAX_PAGE) as usize;
        // One extra row says whether more follow. Rows carry sizes, not
        // payloads: the page is cut to the byte budget before anything is loaded.
        let rows = db::messages::page_after(&self.db, id, after, self.clock.now(), limit as u64 + 1).await?;
        let fits = fitting(&rows[..rows.len().min(limit)], self.settings.page_max_bytes);
        let truncated = fits < rows.len().min(limit);
        let has_more = rows.len() > fits;
        let mut rows = rows;
        rows.truncate(fits);
        let last = rows.last().map(|row| row.id);
        let messages = self.load_events(rows).await?.into_iter().map(|(_, event)| event).collect();
        let next_cursor = last.map(|id| id.to_string()).or_else(|| after.map(|a| a.to_string()));
        Ok(MessagePage { messages, next_cursor, has_more, truncated })
    }
}

impl Service {
    /// The cursor a page of the newest `n` messages starts after: the id of
    /// the (n+1)-th newest unexpired message, or `None` (from the oldest)
    /// when the channel keeps no more than `n`. Checks the reader first.
    pub async fn latest_cursor(
        &self,
        id: ChannelId,
        token: Option<&ReadToken>,
        n: u64,
    ) -> Result<Option<MessageId>, AppError> {
        self.authorize_reader(id, None, token).await?;
        let n = n.clamp(1, MAX_PAGE);
        Ok(db::messages::nth_newest(&self.db, id, n, self.clock.now()).await?.map(|row| row.id))
    }
}

/// How many of `rows`, from the first, fit `budget` payload bytes; at least
/// one (a single message is bounded by MAX_PAYLOAD_BYTES).
fn fitting(rows: &[message::Model], budget: u64) -> usize {
    let mut used = 0u64;
    for (n, row) in rows.iter().enumerate() {
        used = used.saturating_add(u64::try_from(row.payload_size).unwrap_or(0));
        if n > 0 && used > budget {
            return n;
        }
    }
    rows.len()
}

/// The reader-facing form of a stored message.
pub fn message_event(row: &message::Model, payload: &[u8]) -> MessageEvent {
    MessageEvent {
        id: row.id.to_string(),
        channel_id: row.channel_id.to_string(),
        payload: STANDARD.encode(payload),
        content_type: row.content_type.clone(),
        created_at: row.created_at,
        expires_at: row.expires_at,
    }
}
