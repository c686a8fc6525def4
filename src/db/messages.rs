//! Queries on `messages`.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use sea_orm::prelude::*;

use super::entity::message;
use crate::domain::{ChannelId, IdempotencyKey};

pub async fn insert(db: &impl ConnectionTrait, model: message::Model) -> Result<(), DbErr> {
    message::Entity::insert(message::ActiveModel::from(model))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// The unexpired message a previous publish with this key created, if any.
pub async fn find_by_idempotency_key(
    db: &impl ConnectionTrait,
    channel: ChannelId,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
) -> Result<Option<message::Model>, DbErr> {
    message::Entity::find()
        .filter(message::Column::ChannelId.eq(channel.as_uuid()))
        .filter(message::Column::IdempotencyKey.eq(key.as_str()))
        .filter(message::Column::ExpiresAt.gt(now))
        .one(db)
        .await
}

/// Removes an expired message still holding an idempotency key, so the key
/// can be used again (the sweeper would remove it later anyway).
pub async fn delete_expired_with_key(
    db: &impl ConnectionTrait,
    channel: ChannelId,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
) -> Result<Vec<message::Model>, DbErr> {
    let stale = message::Entity::find()
        .filter(message::Column::ChannelId.eq(channel.as_uuid()))
        .filter(message::Column::IdempotencyKey.eq(key.as_str()))
        .filter(message::Column::ExpiresAt.lte(now))
        .all(db)
        .await?;
    for row in &stale {
        message::Entity::delete_by_id(row.id).exec(db).await?;
    }
    Ok(stale)
}

pub async fn count_live(
    db: &impl ConnectionTrait,
    channel: ChannelId,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    message::Entity::find()
        .filter(message::Column::ChannelId.eq(channel.as_uuid()))
        .filter(message::Column::ExpiresAt.gt(now))
        .count(db)
        .await
}
