//! Publishing. The payload goes to the store first and the row second, so a
//! row never points at a missing object; if the row cannot be written the
//! object is deleted again. Readers only ever see rows.
//!
//! The message id is assigned inside the write transaction (commit.rs, which
//! batches concurrent publishes), after the channel row is locked, and is
//! above every id the channel already has: a channel's ids therefore grow in
//! commit order, which is the order live readers receive them in and the
//! order a resume replays them in.

use bytes::Bytes;

use super::Service;
use super::commit::CommitError;
use super::views::PublishedMessage;
use crate::db::{self, Failure, entity::message};
use crate::domain::{ChannelId, ContentType, IdempotencyKey, MessageId, PublishToken, Ttl};
use crate::error::AppError;
use crate::payload;

/// A message to publish, already parsed from the request.
#[derive(Debug, Clone)]
pub struct PublishInput {
    pub payload: Bytes,
    pub content_type: ContentType,
    pub ttl: Ttl,
    pub idempotency_key: Option<IdempotencyKey>,
}

/// The outcome of a publish: the message, and whether it already existed
/// (a retry carrying the same Idempotency-Key).
#[derive(Debug, Clone)]
pub struct Published {
    pub message: PublishedMessage,
    pub replayed: bool,
}

impl Service {
    pub async fn publish(
        &self,
        id: ChannelId,
        token: &PublishToken,
        input: PublishInput,
    ) -> Result<Published, AppError> {
        self.authorize_publish(id, token).await?;
        if input.payload.len() > self.settings.max_payload_bytes {
            return Err(AppError::PayloadTooLarge { limit: self.settings.max_payload_bytes });
        }
        if input.payload.is_empty() {
            return Err(AppError::bad_request("empty_payload", "the payload is empty; publish at least one byte"));
        }

        let now = self.clock.now();
        if let Some(key) = &input.idempotency_key {
            if let Some(existing) = db::messages::find_by_idempotency_key(&self.db, id, key, now).await? {
                return self.replay(existing, &input).await;
            }
            // An expired message still holding the key would trip the unique index.
            for stale in db::messages::delete_expired_with_key(&self.db, id, key, now).await? {
                let _ = self.store.delete(&stale.payload_object_key).await;
            }
        }

        // The object's name is its own id: the message id is only known in the transaction.
        let object_key = payload::object_key(id, MessageId::new());
        if let Err(err) = self.store.put(&object_key, input.payload.clone(), input.content_type.as_str()).await {
            // A channel deleted meanwhile takes its objects' folder with it: that is a 404, not an outage.
            if matches!(db::channels::find(&self.db, id).await, Ok(None)) {
                return Err(AppError::ChannelNotFound);
            }
            return Err(err.into());
        }

        let row = message::Model {
            id: MessageId::MIN,
            channel_id: id,
            payload_object_key: object_key.clone(),
            payload_size: input.payload.len() as i64,
            content_type: input.content_type.as_str().to_owned(),
            created_at: now,
            expires_at: now + input.ttl.as_duration(),
            idempotency_key: input.idempotency_key.as_ref().map(|k| k.as_str().to_owned()),
        };
        // Written by the group-commit task (commit.rs), together with whatever
        // else is being published right now.
        let committed = self.commits().commit(id, row, input.payload.clone()).await;
        let failure = match committed {
            Ok(row) => {
                crate::metrics::get().publishes.increment(1);
                tracing::debug!(channel = %id, message = %row.id, size = row.payload_size, "message published");
                return Ok(Published { message: view(&row), replayed: false });
            }
            Err(failure) => failure,
        };
        if let Err(cleanup) = self.store.delete(&object_key).await {
            tracing::warn!(error = %cleanup, key = %object_key, "could not delete the object of a failed publish; the sweeper will");
        }
        let err = match failure {
            CommitError::ChannelGone => return Err(AppError::ChannelNotFound),
            CommitError::Db(err) => err,
        };
        match (db::classify(&err), &input.idempotency_key) {
            // Two publishes with one key raced; the other one won.
            (Failure::UniqueViolation, Some(key)) => {
                match db::messages::find_by_idempotency_key(&self.db, id, key, now).await? {
                    Some(existing) => self.replay(existing, &input).await,
                    None => Err(AppError::Conflict {
                        code: "idempotency_conflict",
                        message: "a concurrent publish with this Idempotency-Key failed; retry".into(),
                    }),
                }
            }
            // The channel was deleted while we were writing.
            (Failure::ForeignKeyViolation, _) => Err(AppError::ChannelNotFound),
            _ => Err(err.into()),
        }
    }
}

impl Service {
    /// The answer to a publish whose Idempotency-Key already made `existing`:
    /// a replay of it if this is the same request (payload bytes, content
    /// type and TTL), else 409 — a retry must not silently drop a different
    /// message. The payload is compared with the stored object, read only
    /// when size, type and TTL already match (the rare retry path).
    async fn replay(&self, existing: message::Model, input: &PublishInput) -> Result<Published, AppError> {
        let same_shape = existing.payload_size == input.payload.len() as i64
            && existing.content_type == input.content_type.as_str()
            && chrono::TimeDelta::from_std(input.ttl.as_duration()).ok()
                == Some(existing.expires_at - existing.created_at);
        if !same_shape || self.store.get(&existing.payload_object_key).await? != input.payload {
            return Err(AppError::Conflict {
                code: "idempotency_conflict",
                message: format!(
                    "this Idempotency-Key was already used on this channel for a different request (payload, \
                     content type or TTL); it is remembered until that message expires at {}; use a new key \
                     for a new message",
                    existing.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            });
        }
        Ok(Published { message: view(&existing), replayed: true })
    }
}

fn view(row: &message::Model) -> PublishedMessage {
    PublishedMessage {
        message_id: row.id.to_string(),
        channel_id: row.channel_id.to_string(),
        content_type: row.content_type.clone(),
        payload_size: row.payload_size.max(0) as u64,
        created_at: row.created_at,
        expires_at: row.expires_at,
    }
}
